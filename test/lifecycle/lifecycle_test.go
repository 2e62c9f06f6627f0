package lifecycle

import (
	"errors"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/valkey-webhook/valkey-webhook/cluster"
	"github.com/valkey-webhook/valkey-webhook/test/valkeyharness"
)

// keyCount is how many keys must survive the full restart.
const keyCount = 1000

var _ = Describe("a 6-pod cluster", func() {
	for _, m := range modes {
		Context(m.name, Ordered, func() {
			var (
				c     *valkeyharness.Cluster
				nodes []cluster.Node
				opts  cluster.Options
			)
			BeforeAll(func() {
				c = startPods(m, 6)
				nodes, opts = nodesOf(c), optionsOf(c)
			})

			It("is formed by init: 3 masters with a replica each, no replica in its master's zone, ok on every node", func(ctx SpecContext) {
				res, err := cluster.Init(ctx, nodes, opts)
				Expect(err).NotTo(HaveOccurred())
				Expect(res.Changed).To(BeTrue())
				Expect(res.Warnings).To(BeEmpty())

				st := res.Status
				Expect(st.State).To(Equal(cluster.StateOK))
				Expect(st.SlotsCovered).To(Equal(cluster.SlotCount))
				Expect(st.Masters).To(Equal(3))
				Expect(st.Replicas).To(Equal(3))
				zoneOf := map[string]string{}
				for _, n := range nodes {
					zoneOf[n.Address] = n.Zone
				}
				replicasOf := map[string]int{}
				for _, n := range st.Nodes {
					Expect(n.State).To(Equal(cluster.StateOK), n.Address)
					Expect(n.KnownNodes).To(Equal(6), n.Address)
					if n.Role == cluster.RoleMaster {
						Expect(n.Slots).To(BeNumerically("~", cluster.SlotCount/3, 1), n.Address)
						continue
					}
					Expect(n.Slots).To(BeZero())
					Expect(zoneOf[n.MasterAddress]).NotTo(Equal(zoneOf[n.Address]), "replica %s and its master %s", n.Address, n.MasterAddress)
					replicasOf[n.MasterAddress]++
				}
				Expect(replicasOf).To(HaveLen(3))
				for master, count := range replicasOf {
					Expect(count).To(Equal(1), master)
				}

				By("asking the nodes directly, not through the cluster package")
				want := "5000"
				if m.nodeTimeout > 0 {
					want = strconv.Itoa(m.nodeTimeout)
				}
				for addr, f := range factsOfAll(ctx, c, c.Addresses()) {
					Expect(f.KnownNodes).To(Equal("6"), addr)
					Expect(f.Assigned).To(Equal("16384"), addr)
					Expect(configGet(ctx, c, addr, "cluster-node-timeout")).To(Equal(want), "%s: init puts the node timeout it shortened back", addr)
				}
			}, SpecTimeout(2*opTimeout))

			It("is left alone by a second init", func(ctx SpecContext) {
				before := factsOfAll(ctx, c, c.Addresses())
				res, err := cluster.Init(ctx, nodes, opts)
				Expect(err).NotTo(HaveOccurred())
				Expect(res.Changed).To(BeFalse())
				Expect(res.Status.OK()).To(BeTrue())
				// The same roles, slots and config epochs, and not one MEET more.
				Expect(factsOfAll(ctx, c, c.Addresses())).To(Equal(before))
			}, SpecTimeout(2*opTimeout))

			It("comes back with every key after a full restart on new addresses, through heal", func(ctx SpecContext) {
				writeKeys(ctx, c, keyCount)
				oldAddrs := c.Addresses()
				before, err := cluster.Status(ctx, nodes, opts)
				Expect(err).NotTo(HaveOccurred())

				By("restarting every pod on a new address")
				Expect(c.Restart()).To(Succeed())
				Expect(c.Addresses()).NotTo(ContainElements(oldAddrs))
				nodes = nodesOf(c)

				By("status reports the cluster failed, every node knowing its peers by old addresses")
				Eventually(func(g Gomega) {
					st, err := cluster.Status(ctx, nodes, opts)
					g.Expect(err).NotTo(HaveOccurred())
					g.Expect(st.State).To(Equal(cluster.StateFail))
					for _, n := range st.Nodes {
						g.Expect(n.Error).To(BeEmpty())
						g.Expect(n.State).To(Equal(cluster.StateFail), n.Address)
						g.Expect(n.StalePeers).To(Equal(5), n.Address)
					}
				}).WithContext(ctx).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())

				By("init refuses to touch the formed cluster, and says to heal")
				_, err = cluster.Init(ctx, nodes, opts)
				Expect(err).To(MatchError(ContainSubstring("run heal")))

				By("heal meets the nodes at their new addresses")
				res, err := cluster.Heal(ctx, nodes, opts)
				Expect(err).NotTo(HaveOccurred())
				Expect(res.Changed).To(BeTrue())
				Expect(res.Status.State).To(Equal(cluster.StateOK))
				Expect(res.Status.Masters).To(Equal(3))
				Expect(res.Status.Replicas).To(Equal(3))
				for _, n := range res.Status.Nodes {
					Expect(n.StalePeers).To(BeZero(), n.Address)
					Expect(n.Flags).NotTo(ContainElement("nofailover"), "failover is allowed again on %s", n.Address)
				}
				By("no failover happened: the same node IDs are masters, with the same slots")
				Expect(shards(res.Status)).To(Equal(shards(before)))

				By("every key reads back")
				readKeys(ctx, c, keyCount)

				By("a second heal changes nothing")
				res, err = cluster.Heal(ctx, nodes, opts)
				Expect(err).NotTo(HaveOccurred())
				Expect(res.Changed).To(BeFalse())
			}, SpecTimeout(3*opTimeout))
		})
	}
})

var _ = Describe("init refuses, changing nothing", func() {
	for _, m := range modes {
		Context(m.name, func() {
			It("a node that does not answer, naming it", func(ctx SpecContext) {
				c := startPods(m, 6)
				Expect(c.Pods[4].Stop()).To(Succeed())
				_, err := cluster.Init(ctx, nodesOf(c), optionsOf(c))
				expectRefusal(err, c.Pods[4].Addr, "not reachable")
				for _, p := range c.Pods[:4] {
					expectEmpty(factsOf(ctx, c, p.Addr))
				}
				expectEmpty(factsOf(ctx, c, c.Pods[5].Addr))
			}, SpecTimeout(opTimeout))

			It("5 nodes for 1 replica per master, naming the node left over", func(ctx SpecContext) {
				c := startPods(m, 5)
				_, err := cluster.Init(ctx, nodesOf(c), optionsOf(c))
				expectRefusal(err, "", c.Pods[4].Addr+" would be left over")
				for _, p := range c.Pods {
					expectEmpty(factsOf(ctx, c, p.Addr))
				}
			}, SpecTimeout(opTimeout))

			It("slots assigned by hand on one node, naming it", func(ctx SpecContext) {
				c := startPods(m, 6)
				hand := c.Pods[3].Addr
				cl, err := c.NodeClient(hand)
				Expect(err).NotTo(HaveOccurred())
				Expect(cl.Do(ctx, cl.B().ClusterAddslotsrange().StartSlotEndSlot().StartSlotEndSlot(0, 99).Build()).Error()).To(Succeed())
				cl.Close()

				_, err = cluster.Init(ctx, nodesOf(c), optionsOf(c))
				expectRefusal(err, hand, "owns 100 slots (0-99)")
				for _, p := range c.Pods {
					f := factsOf(ctx, c, p.Addr)
					Expect(f.KnownNodes).To(Equal("1"), p.Addr)
					if p.Addr != hand {
						expectEmpty(f)
					}
				}
			}, SpecTimeout(opTimeout))

			It("a node already in another cluster, naming it", func(ctx SpecContext) {
				c := startPods(m, 7)
				member, outsider := c.Pods[2], c.Pods[6]
				cl, err := c.NodeClient(member.Addr)
				Expect(err).NotTo(HaveOccurred())
				Expect(cl.Do(ctx, cl.B().ClusterMeet().Ip(outsider.IP).Port(valkeyharness.Port).Build()).Error()).To(Succeed())
				cl.Close()
				Eventually(func(g Gomega) {
					for _, p := range []*valkeyharness.Pod{member, outsider} {
						view := viewOf(ctx, c, p.Addr)
						g.Expect(view).To(HaveLen(2))
						for _, e := range view {
							g.Expect(e.HasFlag("handshake")).To(BeFalse())
						}
					}
				}).WithContext(ctx).WithTimeout(20 * time.Second).Should(Succeed())

				nodes := nodesOf(c)[:6]
				_, err = cluster.Init(ctx, nodes, optionsOf(c))
				expectRefusal(err, member.Addr, "already belongs to another cluster")
				for _, p := range c.Pods[:6] {
					if p != member {
						expectEmpty(factsOf(ctx, c, p.Addr))
					}
				}
			}, SpecTimeout(opTimeout))

			if m.auth {
				It("a wrong password, naming each node", func(ctx SpecContext) {
					c := startPods(m, 6)
					opts := optionsOf(c)
					opts.Password = "not-the-password"
					_, err := cluster.Init(ctx, nodesOf(c), opts)
					var r *cluster.Refusal
					Expect(errors.As(err, &r)).To(BeTrue(), "a *cluster.Refusal, got %v", err)
					Expect(r.Nodes()).To(Equal(c.Addresses()))
					Expect(err).To(MatchError(ContainSubstring("wrong password")))
					for _, p := range c.Pods {
						expectEmpty(factsOf(ctx, c, p.Addr))
					}
				}, SpecTimeout(opTimeout))
			}
			if m.tls {
				It("a client without a certificate, naming each node", func(ctx SpecContext) {
					c := startPods(m, 6)
					opts := optionsOf(c)
					opts.TLS = opts.TLS.Clone()
					opts.TLS.Certificates = nil
					_, err := cluster.Init(ctx, nodesOf(c), opts)
					var r *cluster.Refusal
					Expect(errors.As(err, &r)).To(BeTrue(), "a *cluster.Refusal, got %v", err)
					Expect(r.Nodes()).To(Equal(c.Addresses()))
					Expect(err).To(MatchError(ContainSubstring("client certificate")))
				}, SpecTimeout(opTimeout))
			}
		})
	}
})

// expectRefusal checks that err is a *cluster.Refusal with a problem for node
// (empty: the nodes as a whole) whose reason contains reason.
func expectRefusal(err error, node, reason string) {
	GinkgoHelper()
	var r *cluster.Refusal
	Expect(errors.As(err, &r)).To(BeTrue(), "a *cluster.Refusal, got %v", err)
	Expect(r.Problems).To(ContainElement(And(
		HaveField("Node", node),
		HaveField("Reason", ContainSubstring(reason)),
	)), err.Error())
	GinkgoWriter.Println(err)
}

// shards maps each master's ID to its slot ranges and its replicas' IDs.
func shards(st cluster.Report) map[string][]string {
	out := map[string][]string{}
	for _, n := range st.Nodes {
		if n.Role == cluster.RoleMaster {
			out[n.ID] = append(out[n.ID], "slots "+n.SlotRanges)
		}
	}
	for _, n := range st.Nodes {
		if n.Role == cluster.RoleReplica {
			out[n.MasterID] = append(out[n.MasterID], "replica "+n.ID)
		}
	}
	return out
}
