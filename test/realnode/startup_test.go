//go:build realnode

package realnode

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/valkey-io/valkey-go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/controller"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// aofLoaded is valkey-server's log line once it has loaded its data at start.
var aofLoaded = regexp.MustCompile(`DB loaded from append only file: ([0-9.]+) seconds`)

var _ = Describe("a pod whose data takes longer to load than its startup window", Ordered, func() {
	c := &valkeyCluster{ns: "slow-load", name: "big", pods: 6}
	// The startup window, shrunk by annotation to 2 s so that a load of a few
	// seconds outlasts it: periodSeconds x failureThreshold.
	const period, failures = 1, 2
	// members of one sorted set: about 450 MB, some 3-4 s to load on these machines.
	const members = 4_000_000

	BeforeAll(func(ctx SpecContext) {
		createNamespace(ctx, c.ns)
		manifest := strings.ReplaceAll(minimalExample(c.ns), "cache", c.name)
		manifest = strings.Replace(manifest, "  labels:\n    valkey-webhook.io/cluster: enabled\n", fmt.Sprintf(
			"  labels:\n    valkey-webhook.io/cluster: enabled\n  annotations:\n    valkey-webhook.io/startupProbe.periodSeconds: %q\n    valkey-webhook.io/startupProbe.failureThreshold: %q\n",
			strconv.Itoa(period), strconv.Itoa(failures)), 1)
		Expect(manifest).To(ContainSubstring("startupProbe.failureThreshold"))
		mustRun(ctx, manifest, "apply", "-f", "-")
		c.readPassword(ctx)
		c.expectHealthy(ctx)
		c.expectEvent(ctx, controller.ReasonClusterFormed)
	})

	It("comes up without a restart: the kubelet's startup and liveness probes take LOADING as alive, and every member is there after", func(ctx SpecContext) {
		By(fmt.Sprintf("one sorted set of %d members, replicated", members))
		cl, err := valkey.NewClient(c.clientOption(c.addresses(ctx)...))
		Expect(err).NotTo(HaveOccurred())
		defer cl.Close()
		// 1000 members a ZADD, 50 ZADDs a round trip: one pipeline of all 100 MB
		// lost its connection under the CI's load ("use of closed network
		// connection"). A ZADD of the same members and scores is idempotent, so a
		// round trip that fails is sent again.
		const batch, perTrip = 1000, 50
		for i := 0; i < members; i += batch * perTrip {
			Eventually(func() error {
				cmds := make(valkey.Commands, 0, perTrip)
				for k := i; k < min(i+batch*perTrip, members); k += batch {
					z := cl.B().Zadd().Key("big").ScoreMember()
					for j := k; j < k+batch; j++ {
						z = z.ScoreMember(float64(j), "m"+strconv.Itoa(j))
					}
					cmds = append(cmds, z.Build())
				}
				for _, res := range cl.DoMulti(ctx, cmds...) {
					if err := res.Error(); err != nil {
						return err
					}
				}
				return nil
			}).WithContext(ctx).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed(), "members %d to %d", i, i+batch*perTrip)
		}
		var replica string
		for _, addr := range c.addresses(ctx) {
			Eventually(func() (bool, error) { return c.replicated(ctx, addr) }).WithContext(ctx).WithTimeout(settle).Should(BeTrue())
			role, err := c.role(ctx, addr)
			Expect(err).NotTo(HaveOccurred())
			node := c.nodeClient(addr)
			size, err := node.Do(ctx, node.B().Dbsize().Build()).AsInt64()
			node.Close()
			Expect(err).NotTo(HaveOccurred())
			if role == "slave" && size == 1 {
				replica = addr
			}
		}
		Expect(replica).NotTo(BeEmpty(), "a replica holds the sorted set")
		var pod corev1.Pod
		for _, p := range c.podsByName(ctx) {
			if strings.HasPrefix(replica, p.Status.PodIP+":") {
				pod = p
			}
		}
		Expect(pod.Name).NotTo(BeEmpty())

		By("its append-only file on disk, then " + pod.Name + " deleted: the new pod loads it from the same volume")
		node := c.nodeClient(replica)
		Eventually(func() (string, error) {
			return node.Do(ctx, node.B().Info().Section("persistence").Build()).ToString()
		}).WithContext(ctx).WithTimeout(settle).Should(And(ContainSubstring("aof_rewrite_in_progress:0"), ContainSubstring("aof_last_write_status:ok")))
		node.Close()
		mustRun(ctx, "", "-n", c.ns, "delete", "pod", pod.Name)
		deletedAt := time.Now()
		c.expectHealthy(ctx)

		fresh := &corev1.Pod{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: c.ns, Name: pod.Name}, fresh)).To(Succeed())
		Expect(fresh.UID).NotTo(Equal(pod.UID), "the pod was re-created")
		for _, cs := range fresh.Status.ContainerStatuses {
			Expect(cs.RestartCount).To(BeZero(), "container %s of %s restarted: %s", cs.Name, pod.Name,
				kubectl(ctx, "-n", c.ns, "logs", pod.Name, "-c", cs.Name, "--previous"))
		}
		log := mustRun(ctx, "", "-n", c.ns, "logs", pod.Name, "-c", defaults.ValkeyContainer)
		m := aofLoaded.FindStringSubmatch(log)
		Expect(m).NotTo(BeNil(), "the new pod loaded its data from its append-only file:\n%s", log)
		took, err := strconv.ParseFloat(m[1], 64)
		Expect(err).NotTo(HaveOccurred())
		Expect(took).To(BeNumerically(">", float64(period*failures)),
			"the load took %.1f s, not longer than the %d s startup window: the test proves nothing; load more members", took, period*failures)
		AddReportEntry("the load", fmt.Sprintf("%s loaded %d members in %.1f s against a startup window of %d s; Ready %.0f s after its deletion, no restart",
			pod.Name, members, took, period*failures, time.Since(deletedAt).Seconds()))

		By("the kubelet never failed its startup or liveness probe: no such Event")
		Expect(probeFailures(ctx, c.ns, pod.Name, fresh.UID)).To(BeEmpty())

		By("every member is there, on the new pod (a replica: READONLY, then ZCARD)")
		node = c.nodeClient(net.JoinHostPort(fresh.Status.PodIP, strconv.Itoa(valkeyPort)))
		defer node.Close()
		Eventually(func() (int64, error) {
			res := node.DoMulti(ctx, node.B().Readonly().Build(), node.B().Zcard().Key("big").Build())
			if err := res[0].Error(); err != nil {
				return 0, err
			}
			return res[1].AsInt64()
		}).WithContext(ctx).WithTimeout(settle).Should(Equal(int64(members)))
	})
})

// probeFailures are the Events of the pod (by UID) saying its startup or
// liveness probe failed.
func probeFailures(ctx SpecContext, ns, pod string, uid types.UID) []string {
	GinkgoHelper()
	list := &corev1.EventList{}
	Expect(k8s.List(ctx, list, client.InNamespace(ns))).To(Succeed())
	var out []string
	for _, e := range list.Items {
		if e.InvolvedObject.Name == pod && e.InvolvedObject.UID == uid &&
			(strings.Contains(e.Message, "Startup probe failed") || strings.Contains(e.Message, "Liveness probe failed")) {
			out = append(out, e.Message)
		}
	}
	return out
}
