//go:build realnode

package realnode

import (
	"regexp"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"github.com/valkey-webhook/valkey-webhook/controller"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// loadedIn is valkey-server's log line at the end of loading its AOF.
var loadedIn = regexp.MustCompile(`DB loaded from append only file: ([0-9.]+) seconds`)

var _ = Describe("a node whose load outlasts the startup window", Ordered, func() {
	// Three masters without replicas: the restarted node loads its own data,
	// with no replica to take over or to sync from.
	c := &valkeyCluster{ns: "loading", name: "cache", pods: 3, keys: 20000}
	// The startup window, 1 s x 2 failures, against a load slowed to 1 ms a key
	// (valkey-server's key-load-delay, about 6.7 s for a master's third of the
	// keys), answered every KiB read as a large dataset is every 2 MiB.
	const periodSeconds, failureThreshold, keyLoadDelayMicros = 1, 2, 1000

	BeforeAll(func(ctx SpecContext) {
		mustRun(ctx, "", "create", "namespace", c.ns)
		DeferCleanup(func(ctx SpecContext) { mustRun(ctx, "", "delete", "namespace", c.ns, "--wait=false") })
		sts := &appsv1.StatefulSet{}
		Expect(yaml.UnmarshalStrict([]byte(minimalExample(c.ns)), sts)).To(Succeed())
		sts.Spec.Replicas = new(int32(c.pods))
		sts.Annotations = map[string]string{
			"valkey-webhook.io/cluster.replicasPerMaster":     "0",
			"valkey-webhook.io/startupProbe.periodSeconds":    strconv.Itoa(periodSeconds),
			"valkey-webhook.io/startupProbe.failureThreshold": strconv.Itoa(failureThreshold),
		}
		v := &sts.Spec.Template.Spec.Containers[0]
		v.Resources.Limits[corev1.ResourceMemory] = resource.MustParse("256Mi")
		v.Command = []string{"valkey-server"}
		v.Args = []string{defaults.ConfigFile, "--cluster-announce-ip", "$(POD_IP)",
			"--key-load-delay", strconv.Itoa(keyLoadDelayMicros), "--loading-process-events-interval-bytes", "1024"}
		Expect(k8s.Create(ctx, sts)).To(Succeed())
		c.readPassword(ctx)
		c.expectEvent(ctx, controller.ReasonClusterFormed)
		c.expectHealthy(ctx)
		c.writeKeys(ctx)
	})

	It("comes up without a restart, Ready once loaded, with every key", func(ctx SpecContext) {
		pod := c.name + "-0"
		cli := `REDISCLI_AUTH="$(cat /etc/valkey/auth/password)" valkey-cli -h 127.0.0.1 -p 6379 `
		By("rewriting " + pod + "'s AOF, so that its base holds all its keys")
		_, err := execIn(ctx, c.ns, pod, "valkey", cli+"bgrewriteaof")
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() (string, error) {
			return execIn(ctx, c.ns, pod, "valkey", cli+"info persistence | tr -d '\\r' | grep -x aof_rewrite_in_progress:0")
		}).WithContext(ctx).WithTimeout(settle).Should(ContainSubstring("aof_rewrite_in_progress:0"))

		By("deleting " + pod + ": the new pod loads the keys again, slowly")
		old := c.podsByName(ctx)[pod]
		mustRun(ctx, "", "-n", c.ns, "delete", "pod", pod, "--wait=false")
		var now corev1.Pod
		Eventually(func(g Gomega) {
			p, ok := c.podsByName(ctx)[pod]
			g.Expect(ok).To(BeTrue())
			g.Expect(p.UID).NotTo(Equal(old.UID))
			g.Expect(p.Status.Conditions).To(ContainElement(And(
				HaveField("Type", corev1.PodReady), HaveField("Status", corev1.ConditionTrue))))
			now = p
		}).WithContext(ctx).WithTimeout(settle).Should(Succeed())

		By("the load took longer than the startup window, and the kubelet restarted nothing")
		log := mustRun(ctx, "", "-n", c.ns, "logs", pod, "-c", "valkey")
		m := loadedIn.FindStringSubmatch(log)
		Expect(m).NotTo(BeNil(), "the log says how long the load took:\n%s", log)
		took, err := strconv.ParseFloat(m[1], 64)
		Expect(err).NotTo(HaveOccurred())
		window := time.Duration(periodSeconds*failureThreshold) * time.Second
		AddReportEntry("the load of the restarted pod", m[0]+"; startup window "+window.String())
		Expect(time.Duration(took*float64(time.Second))).To(BeNumerically(">", window), "the load was no longer than the startup window: nothing proven")
		for _, s := range now.Status.ContainerStatuses {
			Expect(s.RestartCount).To(BeZero(), "container %s restarted", s.Name)
		}
		Expect(strings.Count(log, "oO0OoO0OoO0Oo Valkey is starting")).To(Equal(1), "valkey-server started once in the new pod")

		c.expectHealthy(ctx)
		c.readKeys(ctx)
	})
})
