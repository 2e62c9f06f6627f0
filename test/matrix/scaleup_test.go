package matrix

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/cluster"
	"github.com/valkey-webhook/valkey-webhook/controller"
)

var _ = Describe("a labeled StatefulSet scaled up from 6 to 8 pods", Ordered, func() {
	var r *run
	BeforeAll(func(ctx SpecContext) {
		r = startRun(ctx, "scaleup", modes[1], 3)
		r.expectEvent(ctx, controller.ReasonClusterFormed)
		r.expectHealthy(ctx)
		r.writeKeys(ctx)
	})

	It("ends with the two new pods as replicas in the cluster, by itself, no slot moved, every key kept", func(ctx SpecContext) {
		before := map[string]string{}
		for _, n := range r.status(ctx).Nodes {
			before[n.ID] = n.SlotRanges
		}
		sts := &appsv1.StatefulSet{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(r.sts), sts)).To(Succeed())
		patch := client.MergeFrom(sts.DeepCopy())
		sts.Spec.Replicas = ptr.To(int32(8))
		Expect(k8s.Patch(ctx, sts, patch)).To(Succeed())

		r.expectEvent(ctx, controller.ReasonClusterJoined)
		Eventually(func(g Gomega) {
			now := r.podsByName(ctx)
			g.Expect(now).To(HaveLen(8))
			var nodes []cluster.Node
			for i := range 8 {
				name := fmt.Sprintf("%s-%d", r.sts.Name, i)
				g.Expect(isReady(now[name])).To(BeTrue(), "%s is Ready", name)
				nodes = append(nodes, cluster.Node{Address: r.addressOf(ctx, name)})
			}
			st, err := cluster.Status(ctx, nodes, r.clusterOptions())
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(st.State).To(Equal(cluster.StateOK), "status: %+v", st)
			g.Expect(st.Masters).To(Equal(3))
			g.Expect(st.Replicas).To(Equal(5))
			for _, n := range st.Nodes[6:] {
				g.Expect(n.Role).To(Equal(cluster.RoleReplica), "new pod %s", n.Address)
			}
			for _, n := range st.Nodes {
				if ranges, ok := before[n.ID]; ok {
					g.Expect(n.SlotRanges).To(Equal(ranges), "%s keeps its slots", n.Address)
				}
			}
		}).WithContext(ctx).WithTimeout(settle).WithPolling(time.Second).Should(Succeed())
		r.readKeys(ctx)
	})
})
