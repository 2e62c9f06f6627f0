package matrix

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/valkey-io/valkey-go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/cluster"
	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/controller"
	"github.com/valkey-webhook/valkey-webhook/defaults"
	"github.com/valkey-webhook/valkey-webhook/generator"
	"github.com/valkey-webhook/valkey-webhook/test/valkeyharness"
)

// mode is how the cluster runs. With tls, the TLS Secret is the team's own
// (tls.secretName), or with issuer the companion Certificate's, which the test
// issues as cert-manager would (run.issue).
type mode struct {
	name   string
	auth   bool
	tls    bool
	issuer bool
}

var modes = []mode{
	{name: "without auth"},
	{name: "with auth", auth: true},
	{name: "with TLS (client certificates required) and auth", auth: true, tls: true},
}

const (
	pods = 6
	// defaultKeys is how many keys a run writes and reads back, unless it says
	// otherwise (run.keys).
	defaultKeys = 1000
	// nodeTimeout is cluster-node-timeout (ms) of the test clusters: shorter
	// than the default, so that failover and heal fit the test's time.
	nodeTimeout = 2000
	// settle bounds each wait for the cluster to reach a state by itself: 4
	// minutes, since on a loaded machine the harness's processes and the
	// -race build run about half as fast as alone, and a forget after a
	// scale-down was seen to need more than 2 (docs/real-node.md).
	settle = 4 * time.Minute
)

var _ = Describe("a labeled StatefulSet", func() {
	for i, m := range modes {
		Context(m.name, Ordered, func() {
			var r *run
			BeforeAll(func(ctx SpecContext) {
				r = startRun(ctx, fmt.Sprintf("matrix-%d", i), m, 3)
			})

			It("forms its cluster by itself once its pods run", func(ctx SpecContext) {
				r.expectEvent(ctx, controller.ReasonClusterFormed)
				r.expectHealthy(ctx)
				r.writeKeys(ctx)
				r.readKeys(ctx)
			})

			It("keeps every key when a master is killed and its replica takes over", func(ctx SpecContext) {
				report := r.status(ctx)
				master, replica := masterWithReplica(report)
				masterPod, replicaPod := r.podAt(ctx, master.Address), r.podAt(ctx, replica.Address)
				By(fmt.Sprintf("killing %s (master %s), keeping it down for 3 node timeouts", masterPod, master.ID[:8]))
				Expect(r.kubelet.Kill(ctx, masterPod, 3*nodeTimeout*time.Millisecond)).To(Succeed())
				Eventually(func() (string, error) { return r.role(ctx, replica.Address) }).WithContext(ctx).WithTimeout(settle).
					Should(Equal("master"), "%s (the replica of %s) takes over", replicaPod, masterPod)
				r.readKeys(ctx)
				By(masterPod + " comes back and rejoins as a replica")
				r.expectHealthy(ctx)
				Expect(r.role(ctx, r.addressOf(ctx, masterPod))).To(Equal("slave"))
				r.readKeys(ctx)
			})

			It("heals by itself after a full restart on all-new pod IPs", func(ctx SpecContext) {
				old := r.podsByName(ctx)
				By("deleting every pod, holding the new ones until every old one is gone")
				r.kubelet.Hold()
				DeferCleanup(r.kubelet.Release)
				Expect(k8s.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(r.ns), client.MatchingLabels(r.sts.Spec.Selector.MatchLabels))).To(Succeed())
				Eventually(func(g Gomega) {
					now := r.podsByName(ctx)
					g.Expect(now).To(HaveLen(pods))
					for name, pod := range now {
						g.Expect(pod.UID).NotTo(Equal(old[name].UID), "%s re-created (its old process stopped first)", name)
					}
				}).WithContext(ctx).WithTimeout(settle).Should(Succeed())
				r.kubelet.Release()
				Eventually(func(g Gomega) {
					now := r.podsByName(ctx)
					g.Expect(now).To(HaveLen(pods))
					for name, pod := range now {
						g.Expect(pod.UID).NotTo(Equal(old[name].UID), "%s re-created", name)
						g.Expect(pod.Status.PodIP).NotTo(BeEmpty(), "%s has an IP", name)
						for _, before := range old {
							g.Expect(pod.Status.PodIP).NotTo(Equal(before.Status.PodIP), "%s is on a new IP", name)
						}
					}
				}).WithContext(ctx).WithTimeout(settle).Should(Succeed())
				r.expectEvent(ctx, controller.ReasonClusterHealed)
				r.expectHealthy(ctx)
				r.readKeys(ctx)
			})

			It("rolls a config change one pod at a time and keeps every key", func(ctx SpecContext) {
				old := r.podsByName(ctx)
				sts := &appsv1.StatefulSet{}
				Expect(k8s.Get(ctx, client.ObjectKeyFromObject(r.sts), sts)).To(Succeed())
				patch := client.MergeFrom(sts.DeepCopy())
				sts.Annotations[config.AnnotationPrefix+"valkey.maxmemoryPolicy"] = "allkeys-lru"
				Expect(k8s.Patch(ctx, sts, patch)).To(Succeed())
				Eventually(func(g Gomega) {
					g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(r.sts), sts)).To(Succeed())
					st := sts.Status
					g.Expect(st.ObservedGeneration).To(Equal(sts.Generation))
					g.Expect(st.UpdateRevision).To(Equal(st.CurrentRevision), "the roll is over")
					g.Expect(st.UpdatedReplicas).To(BeEquivalentTo(pods))
					g.Expect(st.ReadyReplicas).To(BeEquivalentTo(pods))
				}).WithContext(ctx).WithTimeout(3 * settle).Should(Succeed())
				for name, pod := range r.podsByName(ctx) {
					Expect(pod.UID).NotTo(Equal(old[name].UID), "%s was rolled", name)
					Expect(r.configGet(ctx, net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(valkeyharness.Port)), "maxmemory-policy")).
						To(Equal("allkeys-lru"), "%s runs the new valkey.conf", name)
				}
				r.expectHealthy(ctx)
				r.readKeys(ctx)
			})
		})
	}
})

// run is one mode's StatefulSet and what it needs.
type run struct {
	mode
	ns       string
	sts      *appsv1.StatefulSet
	kubelet  *valkeyharness.Kubelet
	password string
	tls      *tls.Config
	// files is the CA that signs the TLS Secret's certificates.
	files *valkeyharness.TLSFiles
	// keys is how many keys writeKeys and readKeys handle.
	keys int
}

// startRun creates the namespace, the TLS Secret (with TLS), the kubelet and the
// minimal labeled StatefulSet of the given masters, one replica each.
func startRun(ctx context.Context, ns string, m mode, masters int) *run {
	GinkgoHelper()
	r := &run{mode: m, ns: ns, keys: defaultKeys}
	Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())

	sts, err := generator.MinimalCluster(generator.ClusterOptions{Name: "cache", Namespace: ns, Masters: masters, ReplicasPerMaster: ptr.To(1)}, config.Default())
	Expect(err).NotTo(HaveOccurred())
	if sts.Annotations == nil {
		sts.Annotations = map[string]string{}
	}
	sts.Annotations[config.AnnotationPrefix+"cluster.nodeTimeout"] = strconv.Itoa(nodeTimeout)
	sts.Annotations[config.AnnotationPrefix+"auth.enabled"] = strconv.FormatBool(m.auth)
	if m.tls {
		files, err := valkeyharness.NewTLSFiles(GinkgoT().TempDir())
		Expect(err).NotTo(HaveOccurred())
		r.files = files
		headless := defaults.HeadlessServiceName(sts)
		if m.issuer {
			sts.Annotations[config.AnnotationPrefix+"tls.issuer"] = "ClusterIssuer/internal-ca"
		} else {
			data, err := files.SecretData("cache", []string{
				fmt.Sprintf("*.%s.%s.svc.cluster.local", headless, ns), "localhost",
			}, net.ParseIP("127.0.0.1"))
			Expect(err).NotTo(HaveOccurred())
			Expect(k8s.Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: "cache-tls", Namespace: ns},
				Type:       corev1.SecretTypeTLS,
				Data:       data,
			})).To(Succeed())
			sts.Annotations[config.AnnotationPrefix+"tls.secretName"] = "cache-tls"
		}
		sts.Annotations[config.AnnotationPrefix+"tls.authClients"] = "true"
		r.tls = files.ClientConfig()
		// Clients reach the pods by IP; the certificate names their DNS names.
		r.tls.ServerName = fmt.Sprintf("cache-0.%s.%s.svc.cluster.local", headless, ns)
	}

	kubelet, err := valkeyharness.StartKubelet(ctx, k8s, ns, GinkgoT().TempDir(), "a", "b", "c")
	Expect(err).NotTo(HaveOccurred())
	r.kubelet = kubelet
	DeferCleanup(kubelet.Close)
	DeferCleanup(func(ctx context.Context) {
		if CurrentSpecReport().Failed() || os.Getenv("LIFECYCLE_LOGS") != "" {
			AddReportEntry("valkey-server logs", kubelet.Logs())
			AddReportEntry("events of "+ns, eventsOf(ctx, ns))
		}
	})

	Expect(k8s.Create(ctx, sts)).To(Succeed())
	r.sts = sts
	if m.issuer {
		r.issue(ctx)
	}
	if m.auth {
		Eventually(func(g Gomega) {
			s := &corev1.Secret{}
			g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: sts.Name + "-auth"}, s)).To(Succeed())
			r.password = string(s.Data[defaults.PasswordKey])
		}).WithContext(ctx).WithTimeout(settle).Should(Succeed())
	}
	return r
}

// podsByName are the StatefulSet's pods.
func (r *run) podsByName(ctx context.Context) map[string]corev1.Pod {
	GinkgoHelper()
	list := &corev1.PodList{}
	Expect(k8s.List(ctx, list, client.InNamespace(r.ns), client.MatchingLabels(r.sts.Spec.Selector.MatchLabels))).To(Succeed())
	out := map[string]corev1.Pod{}
	for _, p := range list.Items {
		if p.DeletionTimestamp.IsZero() {
			out[p.Name] = p
		}
	}
	return out
}

// addresses are the pods' current host:port addresses, in ordinal order.
func (r *run) addresses(ctx context.Context) []string {
	GinkgoHelper()
	var out []string
	for i := range pods {
		out = append(out, r.addressOf(ctx, fmt.Sprintf("%s-%d", r.sts.Name, i)))
	}
	return out
}

func (r *run) addressOf(ctx context.Context, pod string) string {
	GinkgoHelper()
	p, ok := r.podsByName(ctx)[pod]
	Expect(ok).To(BeTrue(), "pod %s exists", pod)
	Expect(p.Status.PodIP).NotTo(BeEmpty(), "pod %s has an IP", pod)
	return net.JoinHostPort(p.Status.PodIP, strconv.Itoa(valkeyharness.Port))
}

// podAt is the name of the pod at a host:port address.
func (r *run) podAt(ctx context.Context, addr string) string {
	GinkgoHelper()
	for name, p := range r.podsByName(ctx) {
		if net.JoinHostPort(p.Status.PodIP, strconv.Itoa(valkeyharness.Port)) == addr {
			return name
		}
	}
	Fail("no pod at " + addr)
	return ""
}

func (r *run) clusterOptions() cluster.Options {
	return cluster.Options{Password: r.password, TLS: r.tls, Timeout: 20 * time.Second}
}

func (r *run) clientOption(addrs ...string) valkey.ClientOption {
	return valkey.ClientOption{
		InitAddress:  addrs,
		Password:     r.password,
		TLSConfig:    r.tls,
		DisableCache: true,
		Dialer:       net.Dialer{Timeout: 5 * time.Second},
		DialCtxFn:    valkeyharness.HostDialer(valkeyharness.APIPodIP(k8s, r.ns)),
	}
}

// status asks every pod, through the cluster package, how it sees the cluster.
func (r *run) status(ctx context.Context) cluster.Report { return r.statusOf(ctx, pods) }

// statusOf asks the first n pods, in ordinal order, how they see the cluster.
func (r *run) statusOf(ctx context.Context, n int) cluster.Report {
	GinkgoHelper()
	nodes := make([]cluster.Node, n)
	for i := range n {
		nodes[i] = cluster.Node{Address: r.addressOf(ctx, fmt.Sprintf("%s-%d", r.sts.Name, i))}
	}
	report, err := cluster.Status(ctx, nodes, r.clusterOptions())
	Expect(err).NotTo(HaveOccurred())
	return report
}

// expectHealthy waits until every pod is Ready (the readiness probe run by the
// kubelet), and every node reports the cluster ok: 3 masters with a replica
// each, all slots served.
func (r *run) expectHealthy(ctx context.Context) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		now := r.podsByName(ctx)
		g.Expect(now).To(HaveLen(pods))
		for name, p := range now {
			g.Expect(isReady(p)).To(BeTrue(), "%s is Ready", name)
		}
		report := r.status(ctx)
		g.Expect(report.State).To(Equal(cluster.StateOK), "cluster state: %+v", report)
		g.Expect(report.Masters).To(Equal(3))
		g.Expect(report.Replicas).To(Equal(3))
		g.Expect(report.SlotsCovered).To(Equal(cluster.SlotCount))
	}).WithContext(ctx).WithTimeout(settle).WithPolling(500 * time.Millisecond).Should(Succeed())
}

func isReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// expectEvent waits for an Event of the reason on the StatefulSet.
func (r *run) expectEvent(ctx context.Context, reason string) {
	GinkgoHelper()
	Eventually(func() ([]string, error) {
		list := &eventsv1.EventList{}
		if err := k8s.List(ctx, list, client.InNamespace(r.ns)); err != nil {
			return nil, err
		}
		var reasons []string
		for _, e := range list.Items {
			if e.Regarding.Kind == "StatefulSet" && e.Regarding.Name == r.sts.Name {
				reasons = append(reasons, e.Reason+": "+e.Note)
			}
		}
		slices.Sort(reasons)
		return reasons, nil
	}).WithContext(ctx).WithTimeout(settle).Should(ContainElement(HavePrefix(reason + ": ")))
}

// masterWithReplica picks the first master that has a replica.
func masterWithReplica(report cluster.Report) (master, replica cluster.NodeReport) {
	GinkgoHelper()
	for _, m := range report.Nodes {
		if m.Role != cluster.RoleMaster {
			continue
		}
		for _, n := range report.Nodes {
			if n.Role == cluster.RoleReplica && n.MasterID == m.ID {
				return m, n
			}
		}
	}
	Fail(fmt.Sprintf("no master with a replica: %+v", report))
	return
}

// role is ROLE's first field at one node: master or slave.
func (r *run) role(ctx context.Context, addr string) (string, error) {
	cl, err := r.nodeClient(addr)
	if err != nil {
		return "", err
	}
	defer cl.Close()
	role, err := cl.Do(ctx, cl.B().Role().Build()).ToArray()
	if err != nil {
		return "", err
	}
	return role[0].ToString()
}

func (r *run) configGet(ctx context.Context, addr, key string) string {
	GinkgoHelper()
	cl, err := r.nodeClient(addr)
	Expect(err).NotTo(HaveOccurred())
	defer cl.Close()
	kv, err := cl.Do(ctx, cl.B().ConfigGet().Parameter(key).Build()).AsStrMap()
	Expect(err).NotTo(HaveOccurred())
	return kv[key]
}

func (r *run) nodeClient(addr string) (valkey.Client, error) {
	o := r.clientOption(addr)
	o.ForceSingleClient = true
	return valkey.NewClient(o)
}

// writeKeys writes the keys through a valkey-go cluster client, then waits until
// every master's replica has acknowledged them.
func (r *run) writeKeys(ctx context.Context) {
	GinkgoHelper()
	addrs := r.addresses(ctx)
	cl, err := valkey.NewClient(r.clientOption(addrs...))
	Expect(err).NotTo(HaveOccurred())
	defer cl.Close()
	cmds := make(valkey.Commands, 0, r.keys)
	for i := range r.keys {
		cmds = append(cmds, cl.B().Set().Key(key(i)).Value(strconv.Itoa(i)).Build())
	}
	for i, res := range cl.DoMulti(ctx, cmds...) {
		Expect(res.Error()).NotTo(HaveOccurred(), "SET %s", key(i))
	}
	for _, addr := range addrs {
		role, err := r.role(ctx, addr)
		Expect(err).NotTo(HaveOccurred())
		if role != "master" {
			continue
		}
		Eventually(func() (bool, error) { return r.replicated(ctx, addr) }).WithContext(ctx).WithTimeout(settle).
			Should(BeTrue(), "the replica of %s has every write", addr)
	}
}

// replicated reports whether every replica of the master at addr has acked its
// whole replication stream (INFO replication: each slave's offset equals the
// master's).
func (r *run) replicated(ctx context.Context, addr string) (bool, error) {
	cl, err := r.nodeClient(addr)
	if err != nil {
		return false, err
	}
	defer cl.Close()
	info, err := cl.Do(ctx, cl.B().Info().Section("replication").Build()).ToString()
	if err != nil {
		return false, err
	}
	fields := cluster.ParseInfo(info)
	n, _ := strconv.Atoi(fields["connected_slaves"])
	if n == 0 {
		return false, nil
	}
	for i := range n {
		if !strings.Contains(fields[fmt.Sprintf("slave%d", i)], "offset="+fields["master_repl_offset"]+",") {
			return false, nil
		}
	}
	return true, nil
}

// readKeys reads every key back through a new cluster client; the cluster may
// still be settling, so each try reads them all again.
func (r *run) readKeys(ctx context.Context) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		var addrs []string
		for _, p := range r.podsByName(ctx) {
			if p.Status.PodIP != "" {
				addrs = append(addrs, net.JoinHostPort(p.Status.PodIP, strconv.Itoa(valkeyharness.Port)))
			}
		}
		cl, err := valkey.NewClient(r.clientOption(addrs...))
		g.Expect(err).NotTo(HaveOccurred())
		defer cl.Close()
		cmds := make(valkey.Commands, 0, r.keys)
		for i := range r.keys {
			cmds = append(cmds, cl.B().Get().Key(key(i)).Build())
		}
		missing := 0
		for i, res := range cl.DoMulti(ctx, cmds...) {
			v, err := res.ToString()
			if err != nil || v != strconv.Itoa(i) {
				missing++
			}
		}
		g.Expect(missing).To(BeZero(), "keys not read back (of %d)", r.keys)
	}).WithContext(ctx).WithTimeout(settle).WithPolling(time.Second).Should(Succeed())
}

func key(i int) string { return fmt.Sprintf("key:%d", i) }

// eventsOf lists the namespace's Events, oldest first, for a failed spec.
func eventsOf(ctx context.Context, ns string) string {
	list := &eventsv1.EventList{}
	if err := k8s.List(ctx, list, client.InNamespace(ns)); err != nil {
		return err.Error()
	}
	slices.SortFunc(list.Items, func(a, b eventsv1.Event) int { return a.CreationTimestamp.Compare(b.CreationTimestamp.Time) })
	var b strings.Builder
	for _, e := range list.Items {
		fmt.Fprintf(&b, "%s %s %s/%s %s: %s\n", e.CreationTimestamp.Format(time.RFC3339), e.Type, e.Regarding.Kind, e.Regarding.Name, e.Reason, e.Note)
	}
	return b.String()
}
