package matrix

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/valkey-io/valkey-go"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/cluster"
	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/controller"
	"github.com/valkey-webhook/valkey-webhook/defaults"
	"github.com/valkey-webhook/valkey-webhook/scaleguard"
	"github.com/valkey-webhook/valkey-webhook/test/valkeyharness"
	"github.com/valkey-webhook/valkey-webhook/webhook"
)

// The scale guard's cluster (issue 8): 8 pods, 4 masters with 1 replica each as
// formed, then arranged so that the masters are ordinals 0, 1, 2 and 6, and
// ordinal 7 is a second replica of ordinal 6 (ordinal 3 its first), so that
// removing it leaves its master a replica.
var (
	guardMasters  = []int{0, 1, 2, 6}
	guardReplicas = map[int]int{3: 6, 4: 0, 5: 1, 7: 6}
)

// budgetMargin is what a refused request may take beyond the scale guard's
// budget: the API server's round trips and the webhook call itself, on a shared
// machine. Budget and margin stay inside the webhooks' timeoutSeconds (5).
const budgetMargin = 1500 * time.Millisecond

var _ = Describe("the scale guard on a real cluster", Ordered, func() {
	var (
		r *run
		// removed is the node ID of cache-7, scaled away.
		removed string
	)
	BeforeAll(func(ctx SpecContext) {
		// 4 masters with 1 replica each (8 pods), with TLS (client certificates
		// required) and auth, so that the guard reaches the nodes as the
		// StatefulSet configures them.
		r = startRun(ctx, "scaleguard", modes[2], 4)
		Expect(*r.sts.Spec.Replicas).To(BeEquivalentTo(8))
	})

	It("forms 4 masters by itself; CLUSTER FAILOVER and REPLICATE move the masters to ordinals 0, 1, 2 and 6", func(ctx SpecContext) {
		r.expectEvent(ctx, controller.ReasonClusterFormed)
		r.expectShards(ctx, 8, 4)
		r.arrangeShards(ctx)
	}, SpecTimeout(6*time.Minute))

	It("admits 8 -> 7 through the scale subresource: ordinal 7 is a replica and its master keeps another", func(ctx SpecContext) {
		removed = r.statusOf(ctx, 8).Nodes[7].ID
		Expect(r.scale(ctx, 7)).To(Succeed())
		Eventually(func(g Gomega) {
			now := r.podsByName(ctx)
			g.Expect(now).To(HaveLen(7))
			g.Expect(now).NotTo(HaveKey("cache-7"))
		}).WithContext(ctx).WithTimeout(settle).Should(Succeed())
		r.expectShards(ctx, 7, 4)
	}, SpecTimeout(3*time.Minute))

	It("refuses 7 -> 6 through the scale subresource and through spec.replicas, naming cache-6, its node ID and its slots", func(ctx SpecContext) {
		six := r.statusOf(ctx, 7).Nodes[6]
		Expect(six.Role).To(Equal(cluster.RoleMaster))
		Expect(six.Slots).To(BeNumerically(">", 0))
		names := fmt.Sprintf("cache-6 (node %s, master), which serves %d slots (%s)", six.ID, six.Slots, six.SlotRanges)

		By("kubectl scale: the statefulsets/scale subresource")
		err := r.scale(ctx, 6)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want 422 Invalid, got %v", err)
		Expect(err.Error()).To(ContainSubstring(webhook.ScaleGuardScaleWebhookName))
		Expect(err.Error()).To(ContainSubstring(names))
		Expect(err.Error()).To(ContainSubstring("valkey-webhook cluster drain --nodes " + strings.Join(r.drainAddresses(7), ",") + " --ordinals 6 "))
		Expect(err.Error()).To(ContainSubstring("valkey-webhook.io/scaleGuard=off"))
		GinkgoWriter.Printf("kubectl scale --replicas=6 refused:\n%v\n", err)
		AddReportEntry("scale subresource denial", err.Error())

		By("an edit of spec.replicas")
		err = r.editReplicas(ctx, 6, nil)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want 422 Invalid, got %v", err)
		Expect(err.Error()).To(ContainSubstring(webhook.ScaleGuardWebhookName))
		Expect(err.Error()).To(ContainSubstring(names))
		GinkgoWriter.Printf("edit of spec.replicas to 6 refused:\n%v\n", err)

		sts := &appsv1.StatefulSet{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(r.sts), sts)).To(Succeed())
		Expect(*sts.Spec.Replicas).To(BeEquivalentTo(7), "nothing was scaled")
	}, SpecTimeout(2*time.Minute))

	It("admits the edit with the annotation scaleGuard off, and with a warning of the same text when warn (dry run)", func(ctx SpecContext) {
		Expect(r.editReplicas(ctx, 6, map[string]string{config.AnnotationPrefix + "scaleGuard": config.ScaleGuardOff}, client.DryRunAll)).To(Succeed())

		cp.Warnings.Take()
		Expect(r.editReplicas(ctx, 6, map[string]string{config.AnnotationPrefix + "scaleGuard": config.ScaleGuardWarn}, client.DryRunAll)).To(Succeed())
		warnings := cp.Warnings.Take()
		Expect(warnings).To(ContainElement(And(
			HavePrefix("spec.replicas: scaling cache down from 7 to 6 pods would remove cache-6 (node "),
			ContainSubstring("valkey-webhook cluster drain --nodes "),
			HaveSuffix("Admitted anyway: scaleGuard is warn."),
		)), "warnings: %q", warnings)
		GinkgoWriter.Printf("warn mode: %q\n", warnings)

		sts := &appsv1.StatefulSet{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(r.sts), sts)).To(Succeed())
		Expect(*sts.Spec.Replicas).To(BeEquivalentTo(7), "a dry run changes nothing")
	}, SpecTimeout(2*time.Minute))

	It("admits the same scale-down once cluster drain moved ordinal 6's slots away, and keeps every one of 10,000 keys", func(ctx SpecContext) {
		r.keys = 10000
		r.setKeys(ctx, 7)
		nodes := make([]cluster.Node, 7)
		for i := range nodes {
			nodes[i] = cluster.Node{Address: r.addressOf(ctx, fmt.Sprintf("cache-%d", i))}
		}
		// The nodes that stay knew cache-7, scaled away, as failed; cluster drain
		// refuses to run while a node knows one it was not given, so the
		// lifecycle controller forgets it first.
		r.expectEvent(ctx, controller.ReasonNodesForgotten)
		Eventually(func(g Gomega) {
			st, err := cluster.Status(ctx, nodes, r.clusterOptions())
			g.Expect(err).NotTo(HaveOccurred())
			for _, n := range st.Nodes {
				g.Expect(n.KnownNodes).To(Equal(7), "%s forgot cache-7 (%s)", n.Address, removed)
			}
		}).WithContext(ctx).WithTimeout(settle).Should(Succeed())
		opts := r.clusterOptions()
		opts.Timeout = 3 * time.Minute
		_, err := cluster.Drain(ctx, nodes, []string{nodes[6].Address}, opts)
		Expect(err).NotTo(HaveOccurred())
		Expect(r.statusOf(ctx, 7).Nodes[6].Slots).To(BeZero())

		Expect(r.scale(ctx, 6)).To(Succeed())
		Eventually(func(g Gomega) {
			now := r.podsByName(ctx)
			g.Expect(now).To(HaveLen(6))
			g.Expect(now).NotTo(HaveKey("cache-6"))
		}).WithContext(ctx).WithTimeout(settle).Should(Succeed())
		r.expectShards(ctx, 6, 3)
		r.readKeys(ctx)
	}, SpecTimeout(8*time.Minute))

	It("refuses within its budget when a node does not answer, naming the pod", func(ctx SpecContext) {
		// No replicas per master from here on, so that 5 pods pass the static
		// replica rule (3 masters x 1) and the scale reaches the live check. The
		// pod template does not depend on it: no pod rolls.
		sts := &appsv1.StatefulSet{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(r.sts), sts)).To(Succeed())
		patch := client.MergeFrom(sts.DeepCopy())
		sts.Annotations[config.AnnotationPrefix+"cluster.replicasPerMaster"] = "0"
		Expect(k8s.Patch(ctx, sts, patch)).To(Succeed())

		addr := r.addressOf(ctx, "cache-3")
		cl, err := r.nodeClient(addr)
		Expect(err).NotTo(HaveOccurred())
		// Every command of every client waits until the pause ends; the cluster bus
		// goes on, so nothing fails over meanwhile.
		Expect(cl.Do(ctx, cl.B().ClientPause().Timeout(40000).All().Build()).Error()).To(Succeed())
		cl.Close()
		DeferCleanup(func(ctx SpecContext) {
			By("waiting for the pause to end")
			Eventually(func() (string, error) { return r.role(ctx, addr) }).WithContext(ctx).WithTimeout(time.Minute).Should(Equal("slave"))
		})
		// The API server runs admission again when the StatefulSet changed while
		// the webhook was called (the scale has no resourceVersion, so it retries
		// the write): wait until cache-3's failing readiness probe is in the
		// StatefulSet's status, so that one call is measured.
		r.expectReadyReplicas(ctx, 5)

		start := time.Now()
		err = r.scale(ctx, 5)
		took := time.Since(start)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want 422 Invalid, got %v", err)
		Expect(err.Error()).To(ContainSubstring("scaling cache down from 6 to 5 pods cannot be checked: the check ran out of its 3s budget; cache-3 did not answer (node " + addr + ": "))
		Expect(took).To(BeNumerically("<", scaleguard.Budget+budgetMargin), "the refusal took %s", took)
		GinkgoWriter.Printf("refused in %s: %v\n", took.Round(time.Millisecond), err)
		AddReportEntry("refusal with a node that does not answer", fmt.Sprintf("%s: %v", took.Round(time.Millisecond), err))
	}, SpecTimeout(2*time.Minute))

	It("refuses within its budget when the cluster is unreachable, naming every pod", func(ctx SpecContext) {
		now := r.podsByName(ctx)
		for i := range 6 {
			Expect(r.kubelet.Kill(ctx, fmt.Sprintf("cache-%d", i), 5*time.Minute)).To(Succeed())
		}
		r.expectReadyReplicas(ctx, 0)
		// Through the scale subresource, 5 pods being enough without replicas
		// per master (the annotation of the spec above).
		start := time.Now()
		err := r.scale(ctx, 5)
		took := time.Since(start)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want 422 Invalid, got %v", err)
		for i := range 6 {
			name := fmt.Sprintf("cache-%d", i)
			Expect(err.Error()).To(ContainSubstring(fmt.Sprintf("%s did not answer (node %s:%d: not reachable", name, now[name].Status.PodIP, valkeyharness.Port)))
		}
		Expect(took).To(BeNumerically("<", scaleguard.Budget+budgetMargin), "the refusal took %s", took)
		GinkgoWriter.Printf("refused in %s: %v\n", took.Round(time.Millisecond), err)
	}, SpecTimeout(2*time.Minute))
})

// expectShards waits until the n pods are Ready and every one reports the
// cluster ok, with all slots served by the given number of masters.
func (r *run) expectShards(ctx context.Context, n, masters int) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		now := r.podsByName(ctx)
		g.Expect(now).To(HaveLen(n))
		for name, p := range now {
			g.Expect(isReady(p)).To(BeTrue(), "%s is Ready", name)
		}
		report := r.statusOf(ctx, n)
		g.Expect(report.State).To(Equal(cluster.StateOK), "cluster state: %+v", report)
		g.Expect(report.Masters).To(Equal(masters))
		g.Expect(report.Replicas).To(Equal(n - masters))
		g.Expect(report.SlotsCovered).To(Equal(cluster.SlotCount))
	}).WithContext(ctx).WithTimeout(settle).WithPolling(500 * time.Millisecond).Should(Succeed())
}

// arrangeStep is one command that brings the cluster closer to guardMasters
// and guardReplicas: sent to the node of ordinal to, done once done says so.
type arrangeStep struct {
	to   int
	args []string
	what string
	done func(cluster.Report) bool
}

// nextArrangeStep looks at the 8 nodes' reports and returns the next step, or
// nil when the shards are as wanted. A wanted master that is a replica is
// failed over to, once it follows a master that is not wanted (or else is first
// moved to one); then each replica is moved to its wanted master.
func nextArrangeStep(st cluster.Report) *arrangeStep {
	ordinal := map[string]int{}
	for o, n := range st.Nodes {
		ordinal[n.ID] = o
	}
	for _, o := range guardMasters {
		n := st.Nodes[o]
		if n.Role == cluster.RoleMaster {
			continue
		}
		if m := ordinal[n.MasterID]; !slices.Contains(guardMasters, m) {
			return &arrangeStep{to: o, args: []string{"CLUSTER", "FAILOVER"}, what: fmt.Sprintf("cache-%d takes over from cache-%d", o, m),
				done: func(st cluster.Report) bool {
					return st.Nodes[o].Role == cluster.RoleMaster && st.Nodes[m].Role == cluster.RoleReplica
				}}
		}
		for m, other := range st.Nodes {
			if other.Role == cluster.RoleMaster && !slices.Contains(guardMasters, m) {
				return &arrangeStep{to: o, args: []string{"CLUSTER", "REPLICATE", other.ID}, what: fmt.Sprintf("cache-%d follows cache-%d", o, m),
					done: func(st cluster.Report) bool { return st.Nodes[o].MasterID == other.ID }}
			}
		}
	}
	for _, o := range slices.Sorted(maps.Keys(guardReplicas)) {
		master := st.Nodes[guardReplicas[o]]
		if n := st.Nodes[o]; n.Role != cluster.RoleReplica || n.MasterID != master.ID {
			return &arrangeStep{to: o, args: []string{"CLUSTER", "REPLICATE", master.ID}, what: fmt.Sprintf("cache-%d follows cache-%d", o, guardReplicas[o]),
				done: func(st cluster.Report) bool {
					return st.Nodes[o].Role == cluster.RoleReplica && st.Nodes[o].MasterID == master.ID
				}}
		}
	}
	return nil
}

// arrangeShards sends the steps of nextArrangeStep one at a time, each once the
// cluster is ok and every replica is in sync with its master.
func (r *run) arrangeShards(ctx context.Context) {
	GinkgoHelper()
	for steps := 0; ; steps++ {
		Expect(steps).To(BeNumerically("<=", 12), "arranging the shards takes a few steps")
		var st cluster.Report
		Eventually(func(g Gomega) {
			st = r.statusOf(ctx, 8)
			g.Expect(st.State).To(Equal(cluster.StateOK), "cluster state: %+v", st)
			for o, n := range st.Nodes {
				if n.Role == cluster.RoleReplica {
					g.Expect(r.linkUp(ctx, n.Address)).To(BeTrue(), "cache-%d is in sync with its master", o)
				}
			}
		}).WithContext(ctx).WithTimeout(settle).WithPolling(500 * time.Millisecond).Should(Succeed())
		step := nextArrangeStep(st)
		if step == nil {
			break
		}
		By(step.what)
		cl, err := r.nodeClient(st.Nodes[step.to].Address)
		Expect(err).NotTo(HaveOccurred())
		err = cl.Do(ctx, cl.B().Arbitrary(step.args...).Build()).Error()
		cl.Close()
		Expect(err).NotTo(HaveOccurred(), "%s on cache-%d", strings.Join(step.args, " "), step.to)
		Eventually(func() bool { return step.done(r.statusOf(ctx, 8)) }).WithContext(ctx).WithTimeout(settle).WithPolling(500*time.Millisecond).
			Should(BeTrue(), step.what)
	}
	st := r.statusOf(ctx, 8)
	for o, n := range st.Nodes {
		GinkgoWriter.Printf("cache-%d: %s %s master=%s slots=%d (%s)\n", o, n.ID[:8], n.Role, n.MasterAddress, n.Slots, n.SlotRanges)
	}
}

// linkUp reports whether the replica at addr is in sync with its master.
func (r *run) linkUp(ctx context.Context, addr string) bool {
	cl, err := r.nodeClient(addr)
	if err != nil {
		return false
	}
	defer cl.Close()
	info, err := cl.Do(ctx, cl.B().Info().Section("replication").Build()).ToString()
	return err == nil && cluster.ParseInfo(info)["master_link_status"] == "up"
}

// scale sets replicas through the scale subresource, as kubectl scale does.
func (r *run) scale(ctx context.Context, replicas int32) error {
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: r.sts.Name, Namespace: r.ns}}
	return k8s.SubResource("scale").Update(ctx, sts, client.WithSubResourceBody(&autoscalingv1.Scale{Spec: autoscalingv1.ScaleSpec{Replicas: replicas}}))
}

// editReplicas sets spec.replicas, and the given annotations, by an update of the
// StatefulSet, as kubectl edit does: read, change, write, again when the
// StatefulSet changed in between (its controller writes its status).
func (r *run) editReplicas(ctx context.Context, replicas int32, annotations map[string]string, opts ...client.UpdateOption) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sts := &appsv1.StatefulSet{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(r.sts), sts); err != nil {
			return err
		}
		sts.Spec.Replicas = ptr.To(replicas)
		for k, v := range annotations {
			sts.Annotations[k] = v
		}
		return k8s.Update(ctx, sts, opts...)
	})
}

// drainAddresses are the addresses the scale guard names in the drain command:
// each pod's DNS name under the headless Service.
func (r *run) drainAddresses(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d.%s.%s.svc.cluster.local:%d", r.sts.Name, i, defaults.HeadlessServiceName(r.sts), r.ns, valkeyharness.Port)
	}
	return out
}

// expectReadyReplicas waits until the StatefulSet's status counts n ready pods.
func (r *run) expectReadyReplicas(ctx context.Context, n int32) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		sts := &appsv1.StatefulSet{}
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(r.sts), sts)).To(Succeed())
		g.Expect(sts.Status.ObservedGeneration).To(Equal(sts.Generation))
		g.Expect(sts.Status.ReadyReplicas).To(Equal(n))
	}).WithContext(ctx).WithTimeout(settle).Should(Succeed())
}

// setKeys writes the keys of readKeys through a valkey-go cluster client over
// the first n pods. Unlike writeKeys it does not wait for every master's replica:
// here one master has none.
func (r *run) setKeys(ctx context.Context, n int) {
	GinkgoHelper()
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = r.addressOf(ctx, fmt.Sprintf("%s-%d", r.sts.Name, i))
	}
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
}
