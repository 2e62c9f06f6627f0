//go:build realnode

package realnode

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/controller"
)

var _ = Describe("examples/minimal-statefulset.yaml applied with kubectl", Ordered, func() {
	c := &valkeyCluster{ns: "team-a", name: "cache", pods: 6, keys: 1000}

	BeforeAll(func(ctx SpecContext) {
		createNamespace(ctx, c.ns)
		mustRun(ctx, minimalExample(c.ns), "apply", "-f", "-")
		c.readPassword(ctx)
	})

	It("runs six pods Ready with both containers, forms its cluster with no other step, and keeps keys", func(ctx SpecContext) {
		c.expectHealthy(ctx)
		c.expectEvent(ctx, controller.ReasonClusterFormed)
		c.writeKeys(ctx)
		c.readKeys(ctx)

		By("kubectl describe shows the cluster's state: an Event for each change, the last into ok")
		Eventually(func() ([]string, error) { return c.events(ctx) }).WithContext(ctx).WithTimeout(settle).
			Should(ContainElement(MatchRegexp(`^%s: cluster [a-z_]+ -> ok: .*; 3 masters, 3 replicas, 16384 of 16384 slots served$`, controller.ReasonClusterOK)))

		By("the in-cluster webhook's /metrics count the StatefulSet's admission, the init and the cluster ok")
		Expect(webhookMetric(ctx, "valkey_webhook_admission_requests_total", `webhook="mutate"`, `operation="CREATE"`, `verdict="patched"`)).To(BeNumerically(">=", 1))
		Expect(webhookMetric(ctx, "valkey_webhook_lifecycle_actions_total", `action="init"`, `result="changed"`)).To(BeNumerically(">=", 1))
		Expect(webhookMetric(ctx, "valkey_webhook_lifecycle_action_duration_seconds_count", `action="init"`)).To(BeNumerically(">=", 1))
		Eventually(func() float64 {
			return webhookMetric(ctx, "valkey_webhook_clusters", `state="ok"`)
		}).WithContext(ctx).WithTimeout(settle).WithPolling(2 * time.Second).Should(BeNumerically(">=", 1))
	})

	It("runs each pod as the hardened template says, every probe run by the kubelet", func(ctx SpecContext) {
		pod := &corev1.Pod{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: c.ns, Name: "cache-0"}, pod)).To(Succeed())
		out, err := execIn(ctx, c.ns, "cache-0", "valkey", `
cat /proc/1/comm
grep -E '^(Uid|Gid|CapEff|NoNewPrivs|Seccomp):' /proc/1/status | tr -s '\t' ' '
touch /written-to-root 2>/dev/null && echo root-writable || echo root-read-only
stat -L -c '%a %u %g %n' /etc/valkey/auth/password /etc/valkey/auth/auth.conf /etc/valkey/valkey.conf
REDISCLI_AUTH="$(cat /etc/valkey/auth/password)" valkey-cli -h 127.0.0.1 config get cluster-announce-ip | tail -n 1`)
		Expect(err).NotTo(HaveOccurred())
		Expect(strings.Split(strings.TrimSpace(out), "\n")).To(Equal([]string{
			"valkey-server",
			"Uid: 999 999 999 999", "Gid: 999 999 999 999",
			"CapEff: 0000000000000000", "NoNewPrivs: 1", "Seccomp: 2",
			"root-read-only",
			"440 0 999 /etc/valkey/auth/password",
			"440 0 999 /etc/valkey/auth/auth.conf",
			"444 0 999 /etc/valkey/valkey.conf",
			pod.Status.PodIP,
		}), "valkey-server (PID 1): uid, gid, capabilities, no new privileges, RuntimeDefault seccomp; read-only root, Secret and ConfigMap modes (fsGroup 999), announced IP = pod IP %s", pod.Status.PodIP)

		By("the kubelet's own probe counters: startup, liveness and readiness each run and succeeded")
		for _, probe := range []string{"Startup", "Liveness", "Readiness"} {
			// The liveness probe first runs a period (10 s) after the startup probe passed.
			Eventually(func() int {
				metrics := mustRun(ctx, "", "get", "--raw", "/api/v1/nodes/valkey-node/proxy/metrics/probes")
				return probeSuccesses(metrics, "cache-0", string(pod.UID), "valkey", probe)
			}).WithContext(ctx).WithTimeout(time.Minute).WithPolling(2*time.Second).Should(BeNumerically(">", 0), "%s probe of cache-0 run and succeeded", probe)
		}
		By("the exporter stand-in sidecar answers on its port with the password from the Secret")
		out, err = execIn(ctx, c.ns, "cache-0", "valkey", "wget -qO- http://127.0.0.1:9121/metrics")
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(ContainSubstring("redis_up 1"))
		Expect(out).To(ContainSubstring("valkey_webhook_exporter_stand_in 1"))
	})

	It("is fenced by its companion NetworkPolicy, as kube-router enforces it", func(ctx SpecContext) {
		addrs := c.addresses(ctx)
		target, _, _ := net.SplitHostPort(addrs[0])
		createNamespace(ctx, "elsewhere")
		createNamespace(ctx, "monitoring")
		probes := map[string]string{"same": c.ns, "other": "elsewhere", "monitor": "monitoring"}
		for name, ns := range probes {
			startProbePod(ctx, ns, "probe-"+name)
		}
		// open: a TCP connection from the pod succeeds (busybox nc runs true once
		// connected; it exits 1 when refused, dropped or timed out).
		open := func(ns, pod, container, ip string, port int) func() bool {
			return func() bool {
				_, err := execIn(ctx, ns, pod, container, fmt.Sprintf("nc -w 2 %s %d -e true", ip, port))
				return err == nil
			}
		}
		By("every probe pod reaches CoreDNS, so a refused port is the policy, not a broken network")
		for name, ns := range probes {
			Eventually(open(ns, "probe-"+name, "probe", dnsIP, 53)).WithContext(ctx).WithTimeout(settle).Should(BeTrue(), "probe-%s reaches CoreDNS", name)
		}
		By("client port: open from the same namespace, refused from another")
		Eventually(open(c.ns, "probe-same", "probe", target, valkeyPort)).WithContext(ctx).WithTimeout(settle).Should(BeTrue())
		Eventually(open("elsewhere", "probe-other", "probe", target, valkeyPort)).WithContext(ctx).WithTimeout(settle).Should(BeFalse())
		By("bus port: open between the cluster's pods, refused from any other pod")
		Eventually(open(c.ns, "cache-1", "valkey", target, valkeyPort+10000)).WithContext(ctx).WithTimeout(settle).Should(BeTrue())
		Eventually(open(c.ns, "probe-same", "probe", target, valkeyPort+10000)).WithContext(ctx).WithTimeout(settle).Should(BeFalse())
		Eventually(open("monitoring", "probe-monitor", "probe", target, valkeyPort+10000)).WithContext(ctx).WithTimeout(settle).Should(BeFalse())
		By("exporter port: open from the monitoring namespace only")
		Eventually(open("monitoring", "probe-monitor", "probe", target, 9121)).WithContext(ctx).WithTimeout(settle).Should(BeTrue())
		Eventually(open(c.ns, "probe-same", "probe", target, 9121)).WithContext(ctx).WithTimeout(settle).Should(BeFalse())
		Eventually(open("elsewhere", "probe-other", "probe", target, 9121)).WithContext(ctx).WithTimeout(settle).Should(BeFalse())
		out, err := execIn(ctx, "monitoring", "probe-monitor", "probe", fmt.Sprintf("wget -qO- http://%s:9121/metrics", target))
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(ContainSubstring("redis_up 1"), "scraped from the monitoring namespace")
	})

	It("heals by itself after every pod is deleted at once, on new pod IPs, with every key", func(ctx SpecContext) {
		old := c.podsByName(ctx)
		mustRun(ctx, "", "-n", c.ns, "delete", "pods", "-l", "app=cache", "--wait=false")
		Eventually(func(g Gomega) {
			now := c.podsByName(ctx)
			g.Expect(now).To(HaveLen(c.pods))
			for name, p := range now {
				g.Expect(p.UID).NotTo(Equal(old[name].UID), "%s re-created", name)
				g.Expect(p.Status.PodIP).NotTo(BeEmpty(), "%s has an IP", name)
				for _, before := range old {
					g.Expect(p.Status.PodIP).NotTo(Equal(before.Status.PodIP), "%s is on a new IP", name)
				}
			}
		}).WithContext(ctx).WithTimeout(settle).Should(Succeed())
		c.expectEvent(ctx, controller.ReasonClusterHealed)
		c.expectHealthy(ctx)
		c.readKeys(ctx)
	})

	It("has a scale-down that would drop slots refused by the scale guard, and admitted after cluster drain", func(ctx SpecContext) {
		By("scaling up to 8: the controller joins cache-6 and cache-7 as replicas")
		mustRun(ctx, "", "-n", c.ns, "scale", "statefulset", c.name, "--replicas=8")
		c.pods = 8
		c.expectEvent(ctx, controller.ReasonClusterJoined)
		c.expectHealthy(ctx)

		By("cache-7 takes over its master's slots (CLUSTER FAILOVER)")
		addrs := c.addresses(ctx)
		cl := c.nodeClient(addrs[7])
		Expect(cl.Do(ctx, cl.B().ClusterFailover().Build()).Error()).To(Succeed())
		cl.Close()
		Eventually(func() (string, error) { return c.role(ctx, addrs[7]) }).WithContext(ctx).WithTimeout(settle).Should(Equal("master"))
		c.expectHealthy(ctx)

		By("8 -> 7 would remove cache-7, a master serving slots: refused")
		_, errOut, err := run(ctx, "", "-n", c.ns, "scale", "statefulset", c.name, "--replicas=7")
		Expect(err).To(HaveOccurred())
		Expect(errOut).To(ContainSubstring("would remove cache-7"))
		Expect(errOut).To(ContainSubstring("valkey-webhook cluster drain"))
		AddReportEntry("the scale guard's refusal, from the in-cluster webhook", errOut)

		By("cluster drain --ordinals 7 moves its slots and keys to the pods that stay")
		passwordFile := filepath.Join(GinkgoT().TempDir(), "password")
		Expect(os.WriteFile(passwordFile, []byte(c.password), 0o600)).To(Succeed())
		valkeyWebhook(ctx, "cluster", "drain", "--nodes", strings.Join(addrs, ","), "--ordinals", "7", "--password-file", passwordFile)
		Eventually(func() (string, error) { return c.role(ctx, addrs[7]) }).WithContext(ctx).WithTimeout(settle).Should(Equal("slave"))

		By("8 -> 7 admitted now; the nodes that stay forget cache-7")
		mustRun(ctx, "", "-n", c.ns, "scale", "statefulset", c.name, "--replicas=7")
		// cache-7's shard is gone: its slots went to the two other masters, and its
		// old master, its replica since the failover, followed them.
		c.pods, c.masters = 7, 2
		c.expectEvent(ctx, controller.ReasonNodesForgotten)
		c.expectHealthy(ctx)
		c.readKeys(ctx)
	})
})

// probeSuccesses reads prober_probe_total{result="successful"} of one container's
// probe from the kubelet's /metrics/probes.
func probeSuccesses(metrics, pod, uid, container, probe string) int {
	re := regexp.MustCompile(`(?m)^prober_probe_total\{([^}]*)\} (\d+)`)
	for _, m := range re.FindAllStringSubmatch(metrics, -1) {
		labels := m[1]
		if strings.Contains(labels, `pod="`+pod+`"`) && strings.Contains(labels, `pod_uid="`+uid+`"`) &&
			strings.Contains(labels, `container="`+container+`"`) && strings.Contains(labels, `probe_type="`+probe+`"`) &&
			strings.Contains(labels, `result="successful"`) {
			n, _ := strconv.Atoi(m[2])
			return n
		}
	}
	return 0
}

// dnsIP is the kube-dns Service's ClusterIP (hack/node/lib.sh).
const dnsIP = "198.18.1.10"

// startProbePod runs a pod of the node's Valkey image (busybox nc and wget,
// valkey-cli) that sleeps, for checks from inside the pod network, and waits
// until it runs.
func startProbePod(ctx context.Context, ns, name string) {
	GinkgoHelper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"role": "probe"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "probe", Image: images["valkey"], Command: []string{"sleep", "3600"},
			}},
			TerminationGracePeriodSeconds: new(int64),
		},
	}
	Expect(k8s.Create(ctx, pod)).To(Succeed())
	Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(pod), pod)).To(Succeed())
		g.Expect(pod.Status.Phase).To(Equal(corev1.PodRunning))
	}).WithContext(ctx).WithTimeout(settle).Should(Succeed())
}
