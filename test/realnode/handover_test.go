//go:build realnode

package realnode

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-io/valkey-go"

	"github.com/valkey-webhook/valkey-webhook/cluster"
	"github.com/valkey-webhook/valkey-webhook/controller"
)

// preStopLog is what the valkey container's preStop hook writes to the
// container's log (defaults/handover.go).
const preStopLog = "valkey-webhook preStop: "

var _ = Describe("planned disruptions of a running cluster: rolls, drains, deletions", Ordered, func() {
	c := &valkeyCluster{ns: "handover", name: "cache", pods: 6, keys: 3000}

	BeforeAll(func(ctx SpecContext) {
		createNamespace(ctx, c.ns)
		// Half the example's memory limit (which is also the request): the node
		// runs the other specs' clusters too, and this one grows to eight pods.
		manifest := strings.Replace(minimalExample(c.ns), "memory: 1Gi", "memory: 512Mi", 1)
		Expect(manifest).To(ContainSubstring("memory: 512Mi"))
		mustRun(ctx, manifest, "apply", "-f", "-")
		c.readPassword(ctx)
		c.expectHealthy(ctx)
		c.expectEvent(ctx, controller.ReasonClusterFormed)
		c.writeKeys(ctx)
	})

	It("rolls a config change with every master handing over to a replica in sync before its pod stops, and no write lost", func(ctx SpecContext) {
		logs := followValkeyLogs(ctx, c)
		w := startWriter(ctx, c, "roll")

		By("a change of valkey.conf: the pods roll one at a time")
		mustRun(ctx, "", "-n", c.ns, "annotate", "statefulset", c.name, "valkey-webhook.io/valkey.maxmemoryPolicy=allkeys-lru")
		mustRun(ctx, "", "-n", c.ns, "rollout", "status", "statefulset/"+c.name, "--timeout=8m")
		c.expectHealthy(ctx)
		written, stall, failures := w.stop()
		AddReportEntry("the writer during the roll", fmt.Sprintf("%d keys written, longest write %s, %d failed attempts", len(written), stall, failures))

		By("each old pod's log: a master handed over and saw the switch, a replica stopped at once")
		handedOver := 0
		var timeline []string
		for pod, log := range logs.wait() {
			for _, l := range strings.Split(log, "\n") {
				if strings.Contains(l, preStopLog) {
					timeline = append(timeline, pod+" "+l)
				}
			}
		}
		slices.SortFunc(timeline, func(a, b string) int { return strings.Compare(strings.Fields(a)[1], strings.Fields(b)[1]) })
		AddReportEntry("the preStop hooks, by time", strings.Join(timeline, "\n"))
		for pod, log := range logs.wait() {
			lines := preStopLines(log)
			Expect(lines).NotTo(BeEmpty(), "%s's preStop hook logged what it did:\n%s", pod, log)
			last := lines[len(lines)-1]
			Expect(last).To(Or(HavePrefix("hand-over done: "), Equal("role slave: stopping at once")), "%s:\n%s", pod, log)
			if strings.HasPrefix(last, "hand-over done: ") {
				handedOver++
			}
		}
		Expect(handedOver).To(BeNumerically(">=", 3), "each of the three masters handed over at least once")

		By("every master now took its slots by a hand-over (CLUSTER FAILOVER sends MFSTART), none by a failure detection")
		for _, addr := range c.addresses(ctx) {
			role, err := c.role(ctx, addr)
			Expect(err).NotTo(HaveOccurred())
			if role != "master" {
				continue
			}
			info := c.clusterInfo(ctx, addr)
			Expect(info).To(HaveKey("cluster_stats_messages_mfstart_sent"), "the master at %s took over by CLUSTER FAILOVER", addr)
		}

		By("every key the writer wrote, and every key written before, is read back")
		c.readKeys(ctx)
		c.readBack(ctx, written)
	})

	It("keeps new replicas unready until their initial sync is done, and the PDB meanwhile evicts neither a healthy pod nor an unready one", func(ctx SpecContext) {
		By("the masters send their data slowly (rdb-key-save-delay, per key), so that a full sync takes about 30 s, past the probe's failure threshold")
		masters := c.slowSync(ctx, 30*time.Second)
		DeferCleanup(func(ctx SpecContext) { c.setOn(ctx, masters, "rdb-key-save-delay", "0") })

		mustRun(ctx, "", "-n", c.ns, "scale", "statefulset", c.name, "--replicas=8")
		By("cache-6 and cache-7 join as replicas and turn unready while they sync; with both unready, evicting cache-0 (ready) and cache-6 (unready) is refused")
		newPods := []string{"cache-6", "cache-7"}
		seen := map[string]bool{}
		evictionsTried := false
		evict := func(name string) error {
			return k8s.SubResource("eviction").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, Name: name}},
				&policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, Name: name}})
		}
		Eventually(func(g Gomega) {
			unreadyNow, done := 0, 0
			for _, name := range newPods {
				pod := &corev1.Pod{}
				g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: c.ns, Name: name}, pod)).To(Succeed())
				g.Expect(pod.Status.PodIP).NotTo(BeEmpty())
				info := c.replicationInfo(ctx, pod.Status.PodIP)
				syncing := info["role"] == "slave" && (info["master_link_status"] != "up" || info["master_sync_in_progress"] != "0")
				ready := podReady(pod)
				if !ready && syncing {
					seen[name] = true
					unreadyNow++
				}
				if seen[name] && ready {
					Expect(syncing).To(BeFalse(), "%s is Ready again only once synced: %v", name, info)
					done++
				}
			}
			if unreadyNow == len(newPods) && !evictionsTried {
				evictionsTried = true
				err := evict("cache-0")
				Expect(apierrors.IsTooManyRequests(err)).To(BeTrue(), "eviction of cache-0 (ready) refused with 429 while two pods are unready, got %v", err)
				err = evict("cache-6")
				Expect(apierrors.IsTooManyRequests(err)).To(BeTrue(), "eviction of cache-6 (unready) refused with 429 while another pod is unready too (IfHealthyBudget), got %v", err)
			}
			g.Expect(done).To(Equal(len(newPods)), "cache-6 and cache-7 seen unready while syncing, then Ready: %v", seen)
		}).WithContext(ctx).WithTimeout(settle).WithPolling(200 * time.Millisecond).Should(Succeed())
		Expect(evictionsTried).To(BeTrue(), "both new pods were seen unready at the same time")
		c.setOn(ctx, masters, "rdb-key-save-delay", "0")

		By("back to six pods: cache-6 and cache-7 hold no slots, the scale guard admits it and the nodes forget them")
		mustRun(ctx, "", "-n", c.ns, "scale", "statefulset", c.name, "--replicas=6")
		c.expectEvent(ctx, controller.ReasonNodesForgotten)
		c.expectHealthy(ctx)
	})

	It("hands a master over with valkey-webhook's own Deployment scaled to zero: the hook needs nothing outside the pod", func(ctx SpecContext) {
		keepWebhookLogs(ctx)
		mustRun(ctx, "", "-n", webhookNS, "scale", "deployment/valkey-webhook", "--replicas=0")
		DeferCleanup(func(ctx SpecContext) {
			mustRun(ctx, "", "-n", webhookNS, "scale", "deployment/valkey-webhook", "--replicas=2")
			mustRun(ctx, "", "-n", webhookNS, "rollout", "status", "deployment/valkey-webhook", "--timeout=5m")
		})
		Eventually(func(g Gomega) {
			d := &appsv1.Deployment{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: webhookNS, Name: "valkey-webhook"}, d)).To(Succeed())
			g.Expect(d.Status.Replicas).To(BeZero())
		}).WithContext(ctx).WithTimeout(settle).Should(Succeed())

		master, _ := c.aShard(ctx)
		logs := followValkeyLogs(ctx, c, master)
		mustRun(ctx, "", "-n", c.ns, "delete", "pod", master, "--wait=true", "--timeout=2m")
		log := logs.wait()[master]
		AddReportEntry("the master's preStop with no valkey-webhook running", strings.Join(preStopLines(log), "\n"))
		Expect(preStopLines(log)).To(ContainElement(HavePrefix("hand-over done: ")), log)
		c.expectHealthy(ctx)
	})

	It("stops a master whose replica is gone at once, without a hand-over, and loses no key", func(ctx SpecContext) {
		master, replica := c.aShard(ctx)
		logs := followValkeyLogs(ctx, c, master)

		By("the node is cordoned, so that a deleted pod stays Pending; " + replica + " is deleted, then " + master + " once it has no replica")
		pod := &corev1.Pod{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: c.ns, Name: master}, pod)).To(Succeed())
		masterIP := pod.Status.PodIP
		mustRun(ctx, "", "cordon", pod.Spec.NodeName)
		DeferCleanup(func(ctx SpecContext) { mustRun(ctx, "", "uncordon", pod.Spec.NodeName) })
		mustRun(ctx, "", "-n", c.ns, "delete", "pod", replica, "--wait=true", "--timeout=2m")
		Eventually(func() map[string]string { return c.replicationInfo(ctx, masterIP) }).WithContext(ctx).WithTimeout(settle).
			Should(HaveKeyWithValue("connected_slaves", "0"))
		start := time.Now()
		mustRun(ctx, "", "-n", c.ns, "delete", "pod", master, "--wait=true", "--timeout=2m")
		took := time.Since(start)
		mustRun(ctx, "", "uncordon", pod.Spec.NodeName)
		log := logs.wait()[master]
		AddReportEntry("the master's preStop without a replica", fmt.Sprintf("pod gone after %s\n%s", took.Round(time.Millisecond), strings.Join(preStopLines(log), "\n")))
		Expect(preStopLines(log)).To(ContainElement(HavePrefix("no replica in sync")), log)
		Expect(took).To(BeNumerically("<", 30*time.Second), "well within the default grace period of 30 s: the hook did not wait")

		By("both pods come back with their data; the cluster is whole again")
		c.expectHealthy(ctx)
		c.readKeys(ctx)
	})
})

// podReady reports the pod's Ready condition.
func podReady(pod *corev1.Pod) bool {
	for _, cond := range pod.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// preStopLines are the lines the preStop hook wrote to a container's log, without
// their prefix.
func preStopLines(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if _, rest, ok := strings.Cut(l, preStopLog); ok {
			out = append(out, strings.TrimSpace(rest))
		}
	}
	return out
}

// podLogs follows the valkey container's log of pods until each container stops.
type podLogs struct {
	wg   sync.WaitGroup
	mu   sync.Mutex
	logs map[string]string
}

// followValkeyLogs starts `kubectl logs -f` of the valkey container of the given
// pods (all of the cluster's when none is given) as they run now; each stream
// ends when its container stops.
func followValkeyLogs(ctx context.Context, c *valkeyCluster, pods ...string) *podLogs {
	GinkgoHelper()
	if len(pods) == 0 {
		for name := range c.podsByName(ctx) {
			pods = append(pods, name)
		}
	}
	l := &podLogs{logs: map[string]string{}}
	for _, pod := range pods {
		l.wg.Go(func() {
			out, _, _ := run(ctx, "", "-n", c.ns, "logs", "-f", pod, "-c", "valkey", "--since=1s", "--timestamps")
			l.mu.Lock()
			l.logs[pod] = out
			l.mu.Unlock()
		})
	}
	return l
}

// wait waits until every followed container has stopped and returns the logs by pod.
func (l *podLogs) wait() map[string]string {
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.logs
}

// writer writes keys through a cluster client from the host, one at a time, each
// retried every 10 ms until it succeeds, until stopped.
type writer struct {
	cancel context.CancelFunc
	done   chan struct{}

	written  map[string]string
	stall    time.Duration
	failures int
	// worst says when the longest write began and what its failed attempts
	// answered.
	worst string
}

// startWriter starts a writer of keys named prefix:N. It gives up on a key after
// settle, which fails the spec. Its seed is the client Service, as a client's is:
// valkey-go keeps its seed addresses for every slot-map refresh, and pod IPs that
// a roll takes away would make each refresh wait out dial timeouts.
func startWriter(ctx context.Context, c *valkeyCluster, prefix string) *writer {
	GinkgoHelper()
	svc := &corev1.Service{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: c.ns, Name: c.name}, svc)).To(Succeed())
	cl, err := valkey.NewClient(c.clientOption(net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(valkeyPort))))
	Expect(err).NotTo(HaveOccurred())
	wctx, cancel := context.WithCancel(ctx)
	w := &writer{cancel: cancel, done: make(chan struct{}), written: map[string]string{}}
	go func() {
		defer GinkgoRecover()
		defer close(w.done)
		defer cl.Close()
		for n := 0; wctx.Err() == nil; n++ {
			k, v := fmt.Sprintf("%s:%d", prefix, n), strconv.Itoa(n)
			first := time.Now()
			var errs []string
			for {
				attempt, cancelAttempt := context.WithTimeout(ctx, time.Second)
				err := cl.Do(attempt, cl.B().Set().Key(k).Value(v).Build()).Error()
				cancelAttempt()
				if err == nil {
					break
				}
				w.failures++
				errs = append(errs, fmt.Sprintf("%s %v", time.Since(first).Round(time.Millisecond), err))
				Expect(time.Since(first)).To(BeNumerically("<", settle), "SET %s keeps failing: %v", k, err)
				time.Sleep(10 * time.Millisecond)
			}
			if took := time.Since(first); took > w.stall {
				w.stall = took
				w.worst = fmt.Sprintf("began %s; failed attempts:\n%s", first.Format("15:04:05.000"), strings.Join(errs, "\n"))
			}
			w.written[k] = v
		}
	}()
	return w
}

// stop stops the writer and returns what it wrote, its longest write and its
// failed attempts.
func (w *writer) stop() (map[string]string, time.Duration, int) {
	w.cancel()
	<-w.done
	AddReportEntry("the writer's longest write", w.worst)
	return w.written, w.stall, w.failures
}

// readBack reads every key of kv through a new cluster client and expects its value.
func (c *valkeyCluster) readBack(ctx context.Context, kv map[string]string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		cl, err := valkey.NewClient(c.clientOption(c.addresses(ctx)...))
		g.Expect(err).NotTo(HaveOccurred())
		defer cl.Close()
		keys := make([]string, 0, len(kv))
		cmds := make(valkey.Commands, 0, len(kv))
		for k := range kv {
			keys = append(keys, k)
			cmds = append(cmds, cl.B().Get().Key(k).Build())
		}
		var lost []string
		for i, res := range cl.DoMulti(ctx, cmds...) {
			if v, err := res.ToString(); err != nil || v != kv[keys[i]] {
				lost = append(lost, keys[i])
			}
		}
		g.Expect(lost).To(BeEmpty(), "keys not read back (of %d)", len(kv))
	}).WithContext(ctx).WithTimeout(settle).WithPolling(time.Second).Should(Succeed())
}

// clusterInfo is CLUSTER INFO of the node at addr.
func (c *valkeyCluster) clusterInfo(ctx context.Context, addr string) map[string]string {
	GinkgoHelper()
	cl := c.nodeClient(addr)
	defer cl.Close()
	s, err := cl.Do(ctx, cl.B().ClusterInfo().Build()).ToString()
	Expect(err).NotTo(HaveOccurred())
	return cluster.ParseInfo(s)
}

// replicationInfo is INFO replication of the node at ip; empty when it does not
// answer.
func (c *valkeyCluster) replicationInfo(ctx context.Context, ip string) map[string]string {
	o := c.clientOption(fmt.Sprintf("%s:%d", ip, valkeyPort))
	o.ForceSingleClient = true
	cl, err := valkey.NewClient(o)
	if err != nil {
		return map[string]string{}
	}
	defer cl.Close()
	s, err := cl.Do(ctx, cl.B().Info().Section("replication").Build()).ToString()
	if err != nil {
		return map[string]string{}
	}
	return cluster.ParseInfo(s)
}

// slowSync sets rdb-key-save-delay on every master so that sending its keys to a
// new replica takes about d, and returns the masters' addresses.
func (c *valkeyCluster) slowSync(ctx context.Context, d time.Duration) []string {
	GinkgoHelper()
	var masters []string
	for _, addr := range c.addresses(ctx) {
		role, err := c.role(ctx, addr)
		Expect(err).NotTo(HaveOccurred())
		if role != "master" {
			continue
		}
		masters = append(masters, addr)
		cl := c.nodeClient(addr)
		keys, err := cl.Do(ctx, cl.B().Dbsize().Build()).AsInt64()
		cl.Close()
		Expect(err).NotTo(HaveOccurred())
		c.setOn(ctx, []string{addr}, "rdb-key-save-delay", strconv.FormatInt(max(1, d.Microseconds()/max(keys, 1)), 10))
	}
	return masters
}

// setOn sets a config parameter on the nodes at addrs.
func (c *valkeyCluster) setOn(ctx context.Context, addrs []string, name, value string) {
	GinkgoHelper()
	for _, addr := range addrs {
		cl := c.nodeClient(addr)
		Expect(cl.Do(ctx, cl.B().ConfigSet().ParameterValue().ParameterValue(name, value).Build()).Error()).To(Succeed())
		cl.Close()
	}
}

// aShard is the pod names of a master and its replica.
func (c *valkeyCluster) aShard(ctx context.Context) (master, replica string) {
	GinkgoHelper()
	byIP := map[string]string{}
	for name, p := range c.podsByName(ctx) {
		byIP[p.Status.PodIP] = name
	}
	for _, addr := range c.addresses(ctx) {
		info := c.replicationInfo(ctx, strings.Split(addr, ":")[0])
		if info["role"] == "slave" {
			return byIP[info["master_host"]], byIP[strings.Split(addr, ":")[0]]
		}
	}
	Fail("no replica in the cluster")
	return "", ""
}
