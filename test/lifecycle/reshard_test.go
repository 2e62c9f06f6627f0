package lifecycle

import (
	"context"
	"strconv"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/valkey-webhook/valkey-webhook/cluster"
	"github.com/valkey-webhook/valkey-webhook/test/valkeyharness"
)

// drainKeys is how many keys the drain scenarios write before moving slots.
const drainKeys = 10000

var _ = Describe("an 8-pod cluster", func() {
	for _, m := range modes {
		Context(m.name, Ordered, func() {
			var (
				c     *valkeyharness.Cluster
				nodes []cluster.Node
				opts  cluster.Options
			)
			BeforeAll(func(ctx SpecContext) {
				c = startPods(m, 8)
				nodes, opts = nodesOf(c), optionsOf(c)
				_, err := cluster.Init(ctx, nodes, opts)
				Expect(err).NotTo(HaveOccurred())
				writeKeys(ctx, c, drainKeys)
				opts.Timeout = reshardTimeout
			}, NodeTimeout(2*opTimeout))

			It("drains a master: its slots and keys move to the other three, evenly, and it becomes a replica", func(ctx SpecContext) {
				before := reportOf(ctx, c, nodes, opts)
				drained := firstMaster(before)
				By("interrupting a first drain of " + drained.Address + " once it moved its first slot range")
				interrupted, cancel := context.WithCancel(ctx)
				first := opts
				first.Progress = func(line string) {
					GinkgoWriter.Println(line)
					if strings.HasPrefix(line, "moved slots") {
						cancel()
					}
				}
				_, err := cluster.Drain(interrupted, nodes, []string{drained.Address}, first)
				cancel()
				Expect(err).To(MatchError(ContainSubstring("run drain again to resume")))
				readKeys(ctx, c, drainKeys)

				By("running it again: it resumes")
				res, err := cluster.Drain(ctx, nodes, []string{drained.Address}, opts)
				Expect(err).NotTo(HaveOccurred())
				Expect(res.Changed).To(BeTrue())
				Expect(res.Status.State).To(Equal(cluster.StateOK))
				Expect(res.Status.SlotsCovered).To(Equal(cluster.SlotCount))
				for _, n := range res.Status.Nodes {
					if n.Address == drained.Address {
						Expect(n.Slots).To(BeZero(), "the drained node serves no slot")
						Expect(n.Role).To(Equal(cluster.RoleReplica), "the drained node replicates the master that took its last slot")
						continue
					}
					if n.Role == cluster.RoleMaster {
						Expect(n.Slots).To(BeNumerically("~", cluster.SlotCount/3, 1), "%s holds an even share", n.Address)
					}
				}
				Expect(res.Status.Masters).To(Equal(3))
				readKeys(ctx, c, drainKeys)

				By("draining it again: nothing to move")
				res, err = cluster.Drain(ctx, nodes, []string{drained.Address}, opts)
				Expect(err).NotTo(HaveOccurred())
				Expect(res.Changed).To(BeFalse())
				Expect(res.Warnings).To(ConsistOf(ContainSubstring("is a replica: it serves no slots")))
			}, SpecTimeout(opTimeout+2*reshardTimeout))

			It("finishes a slot left half moved by hand, and loses none of its keys", func(ctx SpecContext) {
				st := reportOf(ctx, c, nodes, opts)
				var masters []cluster.NodeReport
				for _, n := range st.Nodes {
					if n.Role == cluster.RoleMaster {
						masters = append(masters, n)
					}
				}
				src, dst := masters[0], masters[1]
				slot := firstSlotWithKeys(ctx, c, src.Address)
				By("moving half of a slot's keys by hand, then stopping")
				halfMove(ctx, c, slot, src, dst)

				res, err := cluster.Rebalance(ctx, nodes, opts)
				Expect(err).NotTo(HaveOccurred())
				Expect(res.Changed).To(BeTrue(), "the half-moved slot is finished")
				readKeys(ctx, c, drainKeys)
				for _, addr := range c.Addresses() {
					for _, e := range viewOf(ctx, c, addr) {
						if e.IsMyself() {
							Expect(e.Migrating).To(BeEmpty(), addr)
							Expect(e.Importing).To(BeEmpty(), addr)
						}
					}
				}
			}, SpecTimeout(opTimeout+reshardTimeout))

			It("refuses to drain every master, and changes nothing", func(ctx SpecContext) {
				st := reportOf(ctx, c, nodes, opts)
				var all []string
				for _, n := range st.Nodes {
					if n.Role == cluster.RoleMaster {
						all = append(all, n.Address)
					}
				}
				before := factsOfAll(ctx, c, c.Addresses())
				_, err := cluster.Drain(ctx, nodes, all, opts)
				var refusal *cluster.Refusal
				Expect(err).To(BeAssignableToTypeOf(refusal))
				Expect(err).To(MatchError(ContainSubstring("the last master's slots would have nowhere to go")))
				Expect(factsOfAll(ctx, c, c.Addresses())).To(Equal(before))
			}, SpecTimeout(opTimeout))

			It("refuses a node that is not one of the given nodes, naming it", func(ctx SpecContext) {
				_, err := cluster.Drain(ctx, nodes, []string{"127.0.0.1:1"}, opts)
				Expect(err).To(MatchError(ContainSubstring("node 127.0.0.1:1: is not one of the given nodes")))
			}, SpecTimeout(opTimeout))

			if !m.auth {
				It("makes a drained master a replica where Valkey does not (cluster-allow-replica-migration no)", func(ctx SpecContext) {
					before := reportOf(ctx, c, nodes, opts)
					drained := firstMaster(before)
					setConfig(ctx, c, drained.Address, "cluster-allow-replica-migration", "no")
					DeferCleanup(setConfig, c, drained.Address, "cluster-allow-replica-migration", "yes")
					var lines []string
					o := opts
					o.Progress = func(line string) {
						GinkgoWriter.Println(line)
						lines = append(lines, line)
					}
					res, err := cluster.Drain(ctx, nodes, []string{drained.Address}, o)
					Expect(err).NotTo(HaveOccurred())
					Expect(lines).To(ContainElement(ContainSubstring(drained.Address + " serves no slot and is still a master: CLUSTER REPLICATE")))
					for _, n := range res.Status.Nodes {
						if n.Address == drained.Address {
							Expect(n.Role).To(Equal(cluster.RoleReplica), "the drained node replicates the master that took its last slot")
							Expect(n.Slots).To(BeZero())
						}
					}
					Expect(res.Status.Masters).To(Equal(before.Masters - 1))
					readKeys(ctx, c, drainKeys)
				}, SpecTimeout(opTimeout+reshardTimeout))
			}

			It("refuses a drain into masters without the memory for the keys, naming the node", func(ctx SpecContext) {
				st := reportOf(ctx, c, nodes, opts)
				var masters []cluster.NodeReport
				for _, n := range st.Nodes {
					if n.Role == cluster.RoleMaster {
						masters = append(masters, n)
					}
				}
				By("fattening the keys of the master to drain, and capping the others' maxmemory just above what they use")
				fatten(ctx, c, masters[0].Address, 4000)
				for _, m := range masters[1:] {
					capMemory(ctx, c, m.Address)
				}
				before := factsOfAll(ctx, c, c.Addresses())
				_, err := cluster.Drain(ctx, nodes, []string{masters[0].Address}, opts)
				Expect(err).To(MatchError(And(ContainSubstring("past its maxmemory"), ContainSubstring(masters[1].Address))))
				Expect(factsOfAll(ctx, c, c.Addresses())).To(Equal(before))
				for _, m := range masters[1:] {
					setConfig(ctx, c, m.Address, "maxmemory", "0")
				}
			}, SpecTimeout(opTimeout))
		})
	}

	Context("grown from 6 pods (a scale-up)", func() {
		It("joins the two new pods as replicas of the masters with the fewest, in another zone, moving no slot", func(ctx SpecContext) {
			m := modes[1]
			c := startPods(m, 8)
			all, opts := nodesOf(c), optionsOf(c)
			_, err := cluster.Init(ctx, all[:6], opts)
			Expect(err).NotTo(HaveOccurred())
			writeKeys(ctx, c, drainKeys, c.Addresses()[:6]...)
			before := reportOf(ctx, c, all[:6], opts)

			By("a drain that names a node not in the cluster is refused, naming it")
			_, err = cluster.Drain(ctx, all, []string{all[7].Address}, opts)
			var refusal *cluster.Refusal
			Expect(err).To(BeAssignableToTypeOf(refusal))
			Expect(err).To(MatchError(ContainSubstring("does not know " + all[7].Address + ": it is not in the same cluster")))

			By("a new node holding keys is refused, and nothing changes")
			stray, err := c.NodeClient(c.Pods[7].Addr)
			Expect(err).NotTo(HaveOccurred())
			slot, err := stray.Do(ctx, stray.B().ClusterKeyslot().Key("stray").Build()).AsInt64()
			Expect(err).NotTo(HaveOccurred())
			Expect(stray.Do(ctx, stray.B().ClusterAddslots().Slot(slot).Build()).Error()).To(Succeed())
			setConfig(ctx, c, c.Pods[7].Addr, "cluster-require-full-coverage", "no")
			Eventually(func() error { return stray.Do(ctx, stray.B().Set().Key("stray").Value("1").Build()).Error() }).
				WithContext(ctx).WithTimeout(opTimeout).Should(Succeed(), "a lone node with one slot takes a write once its rejoin delay is over")
			Expect(stray.Do(ctx, stray.B().ClusterDelslots().Slot(slot).Build()).Error()).To(Succeed())
			setConfig(ctx, c, c.Pods[7].Addr, "cluster-require-full-coverage", "yes")
			_, err = cluster.Join(ctx, all, opts)
			Expect(err).To(MatchError(ContainSubstring("node " + c.Pods[7].Addr + ": is new but holds 1 keys")))
			Expect(stray.Do(ctx, stray.B().Flushall().Build()).Error()).To(Succeed())
			stray.Close()

			res, err := cluster.Join(ctx, all, opts)
			Expect(err).NotTo(HaveOccurred())
			Expect(res.Changed).To(BeTrue())
			Expect(res.Warnings).To(BeEmpty())
			st := res.Status
			Expect(st.State).To(Equal(cluster.StateOK))
			Expect(st.Masters).To(Equal(3))
			Expect(st.Replicas).To(Equal(5))
			slotsBefore := map[string]string{}
			for _, n := range before.Nodes {
				slotsBefore[n.Address] = n.SlotRanges
			}
			replicasOf := map[string]int{}
			for i, n := range st.Nodes {
				if i < 6 {
					Expect(n.SlotRanges).To(Equal(slotsBefore[n.Address]), "%s keeps its slots", n.Address)
				}
				if n.Role == cluster.RoleReplica {
					replicasOf[n.MasterAddress]++
				}
				if i >= 6 {
					Expect(n.Role).To(Equal(cluster.RoleReplica), "new pod %s", n.Address)
					Expect(all[i].Zone).NotTo(Equal(zoneOfAddr(all, n.MasterAddress)), "new pod %s in another zone than its master %s", n.Address, n.MasterAddress)
				}
			}
			Expect(replicasOf).To(HaveLen(3))
			for master, n := range replicasOf {
				Expect(n).To(BeNumerically("<=", 2), master)
			}
			readKeys(ctx, c, drainKeys)

			By("joining again: nothing to do")
			res, err = cluster.Join(ctx, all, opts)
			Expect(err).NotTo(HaveOccurred())
			Expect(res.Changed).To(BeFalse())
		}, SpecTimeout(2*opTimeout))
	})

	Context("scaled down by one replica", func() {
		It("forgets the replica's node once every node flags it fail, and never while it is only suspected", func(ctx SpecContext) {
			m := modes[1]
			c := startPods(m, 8)
			all, opts := nodesOf(c), optionsOf(c)
			_, err := cluster.Init(ctx, all, opts)
			Expect(err).NotTo(HaveOccurred())
			st := reportOf(ctx, c, all, opts)
			Expect(st.Nodes[7].Role).To(Equal(cluster.RoleReplica))
			gone := st.Nodes[7].ID
			stay := all[:7]

			By("stopping pod 7: at first the others only suspect it")
			Expect(c.Pods[7].Stop()).To(Succeed())
			res, err := cluster.Forget(ctx, stay, opts)
			Expect(err).NotTo(HaveOccurred())
			Expect(res.Changed).To(BeFalse(), "a node only suspected (fail?) is not forgotten")

			Eventually(func(g Gomega) {
				st, err := cluster.Status(ctx, stay, opts)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(st.Departed).To(Equal([]string{gone}))
			}).WithContext(ctx).WithTimeout(opTimeout).Should(Succeed(), "every node flags pod 7 fail")
			res, err = cluster.Forget(ctx, stay, opts)
			Expect(err).NotTo(HaveOccurred())
			Expect(res.Forgotten).To(Equal([]string{gone}))
			Expect(res.Status.State).To(Equal(cluster.StateOK))
			for _, n := range res.Status.Nodes {
				Expect(n.KnownNodes).To(Equal(7), "%s forgot pod 7", n.Address)
			}
			Expect(res.Status.Departed).To(BeEmpty())
		}, SpecTimeout(2*opTimeout))
	})

	Context("with two new empty masters", Ordered, func() {
		It("rebalances: every master within 1% of an even share, no key lost", func(ctx SpecContext) {
			m := modes[2]
			c := startPods(m, 8)
			all, opts := nodesOf(c), optionsOf(c)
			_, err := cluster.Init(ctx, all[:6], opts)
			Expect(err).NotTo(HaveOccurred())
			writeKeys(ctx, c, drainKeys, c.Addresses()[:6]...)
			By("meeting pods 6 and 7 as masters without slots")
			meet(ctx, c, c.Pods[0].Addr, c.Pods[6], c.Pods[7])
			Eventually(func(g Gomega) {
				st, err := cluster.Status(ctx, all, opts)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(st.State).To(Equal(cluster.StateOK), "status: %+v", st)
				g.Expect(st.Masters).To(Equal(5))
			}).WithContext(ctx).WithTimeout(opTimeout).Should(Succeed())

			opts.Timeout = reshardTimeout
			res, err := cluster.Rebalance(ctx, all, opts)
			Expect(err).NotTo(HaveOccurred())
			Expect(res.Status.State).To(Equal(cluster.StateOK))
			share := float64(cluster.SlotCount) / 5
			for _, n := range res.Status.Nodes {
				if n.Role == cluster.RoleMaster {
					Expect(float64(n.Slots)).To(BeNumerically("~", share, share/100), "%s holds an even share", n.Address)
				}
			}
			readKeys(ctx, c, drainKeys)
		}, SpecTimeout(2*opTimeout+reshardTimeout))
	})
})

func reportOf(ctx context.Context, c *valkeyharness.Cluster, nodes []cluster.Node, opts cluster.Options) cluster.Report {
	GinkgoHelper()
	st, err := cluster.Status(ctx, nodes, opts)
	Expect(err).NotTo(HaveOccurred())
	Expect(st.State).To(Equal(cluster.StateOK), "status: %+v", st)
	return st
}

func firstMaster(st cluster.Report) cluster.NodeReport {
	GinkgoHelper()
	for _, n := range st.Nodes {
		if n.Role == cluster.RoleMaster && n.Slots > 0 {
			return n
		}
	}
	Fail("no master with slots")
	return cluster.NodeReport{}
}

// firstSlotWithKeys is the lowest slot of the node at addr that holds keys.
func firstSlotWithKeys(ctx context.Context, c *valkeyharness.Cluster, addr string) int {
	GinkgoHelper()
	cl, err := c.NodeClient(addr)
	Expect(err).NotTo(HaveOccurred())
	defer cl.Close()
	for _, e := range viewOf(ctx, c, addr) {
		if !e.IsMyself() {
			continue
		}
		for _, r := range e.Slots {
			for s := r.First; s <= r.Last; s++ {
				n, err := cl.Do(ctx, cl.B().ClusterCountkeysinslot().Slot(int64(s)).Build()).AsInt64()
				Expect(err).NotTo(HaveOccurred())
				if n >= 2 {
					return s
				}
			}
		}
	}
	Fail("no slot with keys on " + addr)
	return -1
}

// halfMove starts moving a slot from src to dst as the resharding protocol does,
// moves half of its keys, and stops: an interrupted run.
func halfMove(ctx context.Context, c *valkeyharness.Cluster, slot int, src, dst cluster.NodeReport) {
	GinkgoHelper()
	s, err := c.NodeClient(src.Address)
	Expect(err).NotTo(HaveOccurred())
	defer s.Close()
	d, err := c.NodeClient(dst.Address)
	Expect(err).NotTo(HaveOccurred())
	defer d.Close()
	Expect(d.Do(ctx, d.B().ClusterSetslot().Slot(int64(slot)).Importing().NodeId(src.ID).Build()).Error()).To(Succeed())
	Expect(s.Do(ctx, s.B().ClusterSetslot().Slot(int64(slot)).Migrating().NodeId(dst.ID).Build()).Error()).To(Succeed())
	keys, err := s.Do(ctx, s.B().ClusterGetkeysinslot().Slot(int64(slot)).Count(1000).Build()).AsStrSlice()
	Expect(err).NotTo(HaveOccurred())
	host, port := splitAddr(dst.Address)
	args := []string{"MIGRATE", host, port, "", "0", "5000"}
	if c.Password != "" {
		args = append(args, "AUTH", c.Password)
	}
	args = append(args, "KEYS")
	args = append(args, keys[:len(keys)/2]...)
	Expect(s.Do(ctx, s.B().Arbitrary(args...).Build()).Error()).To(Succeed())
}

func splitAddr(addr string) (string, string) {
	i := strings.LastIndex(addr, ":")
	return addr[:i], addr[i+1:]
}

// fatten rewrites n of the node's keys with 4 KiB values each.
func fatten(ctx context.Context, c *valkeyharness.Cluster, addr string, n int) {
	GinkgoHelper()
	cl, err := c.NodeClient(addr)
	Expect(err).NotTo(HaveOccurred())
	defer cl.Close()
	value := strings.Repeat("v", 4096)
	var cursor uint64
	done := 0
	for done < n {
		e, err := cl.Do(ctx, cl.B().Scan().Cursor(cursor).Count(500).Build()).AsScanEntry()
		Expect(err).NotTo(HaveOccurred())
		for _, k := range e.Elements {
			Expect(cl.Do(ctx, cl.B().Append().Key(k).Value(value).Build()).Error()).To(Succeed())
			done++
		}
		if e.Cursor == 0 {
			break
		}
		cursor = e.Cursor
	}
}

// capMemory sets the node's maxmemory to 1 MiB above what it uses.
func capMemory(ctx context.Context, c *valkeyharness.Cluster, addr string) {
	GinkgoHelper()
	cl, err := c.NodeClient(addr)
	Expect(err).NotTo(HaveOccurred())
	defer cl.Close()
	info, err := cl.Do(ctx, cl.B().Info().Section("memory").Build()).ToString()
	Expect(err).NotTo(HaveOccurred())
	used := cluster.ParseInfo(info)["used_memory"]
	n, err := strconv.ParseInt(used, 10, 64)
	Expect(err).NotTo(HaveOccurred())
	setConfig(ctx, c, addr, "maxmemory", strconv.FormatInt(n+1<<20, 10))
}

func setConfig(ctx context.Context, c *valkeyharness.Cluster, addr, key, value string) {
	GinkgoHelper()
	cl, err := c.NodeClient(addr)
	Expect(err).NotTo(HaveOccurred())
	defer cl.Close()
	Expect(cl.Do(ctx, cl.B().ConfigSet().ParameterValue().ParameterValue(key, value).Build()).Error()).To(Succeed())
}

// meet makes the node at addr meet the given pods, and waits until they know
// each other.
func meet(ctx context.Context, c *valkeyharness.Cluster, addr string, pods ...*valkeyharness.Pod) {
	GinkgoHelper()
	cl, err := c.NodeClient(addr)
	Expect(err).NotTo(HaveOccurred())
	defer cl.Close()
	for _, p := range pods {
		Expect(cl.Do(ctx, cl.B().ClusterMeet().Ip(p.IP).Port(valkeyharness.Port).Build()).Error()).To(Succeed())
	}
}

func zoneOfAddr(nodes []cluster.Node, addr string) string {
	for _, n := range nodes {
		if n.Address == addr {
			return n.Zone
		}
	}
	return ""
}
