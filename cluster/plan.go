package cluster

import (
	"fmt"
	"math"
	"strings"
)

// MinMasters is the smallest cluster Init forms: a failover needs the votes of a
// majority of the masters, so fewer than three cannot survive the loss of one.
const MinMasters = 3

// Plan is how Init lays a new cluster out over the given nodes. Indices refer to
// the nodes slice Init was given.
type Plan struct {
	Shards []Shard
	// Warnings name the replicas that share a zone or a Kubernetes node with their
	// master because no placement keeps them apart.
	Warnings []string
}

// Shard is one master, the slots it serves and its replicas.
type Shard struct {
	Master   int
	Slots    SlotRange
	Replicas []int
}

// masterOf returns the shard index whose master is node i, or -1.
func (p Plan) masterOf(i int) int {
	for s, sh := range p.Shards {
		if sh.Master == i {
			return s
		}
	}
	return -1
}

// SplitSlots divides the 16384 slots into n contiguous ranges in order, whose sizes
// differ by at most one.
func SplitSlots(n int) []SlotRange {
	out := make([]SlotRange, n)
	for i := range n {
		out[i] = SlotRange{First: i * SlotCount / n, Last: (i+1)*SlotCount/n - 1}
	}
	return out
}

// ShardCount checks that the nodes divide into shards of one master and
// replicasPerMaster replicas, at least MinMasters of them, and returns how many.
func ShardCount(nodes []Node, replicasPerMaster int) (int, []Problem) {
	if replicasPerMaster < 0 {
		return 0, []Problem{{Reason: fmt.Sprintf("replicas per master is %d", replicasPerMaster), Fix: "give 0 or more"}}
	}
	size := 1 + replicasPerMaster
	masters, over := len(nodes)/size, len(nodes)%size
	if masters >= MinMasters && over == 0 {
		return masters, nil
	}
	each := replicasEach(replicasPerMaster)
	good := max(masters, MinMasters) * size
	fix := fmt.Sprintf("give %d nodes (%d masters with %s each), or change the replicas per master", good, good/size, each)
	if over > 0 && masters >= MinMasters {
		fix = fmt.Sprintf("give %d or %d nodes, or change the replicas per master", masters*size, (masters+1)*size)
	}
	var problems []Problem
	if over > 0 {
		left := make([]string, 0, over)
		for _, n := range nodes[len(nodes)-over:] {
			left = append(left, n.Address)
		}
		problems = append(problems, Problem{
			Reason: fmt.Sprintf("%d nodes do not divide into shards of 1 master and %s: %s would be left over", len(nodes), each, strings.Join(left, ", ")),
			Fix:    fix,
		})
	}
	if masters < MinMasters {
		problems = append(problems, Problem{
			Reason: fmt.Sprintf("%d nodes make %d masters with %s each; a cluster needs at least %d masters", len(nodes), masters, each, MinMasters),
			Fix:    fix,
		})
	}
	return 0, problems
}

// replicasEach is "1 replica", "2 replicas".
func replicasEach(n int) string {
	if n == 1 {
		return "1 replica"
	}
	return fmt.Sprintf("%d replicas", n)
}

// PlanCluster lays a new cluster out: which nodes are masters, which slots each
// serves, and which master each replica follows. Masters are spread over zones
// (then Kubernetes nodes) first; replicas are then placed so that as few as
// possible share a zone with their master, then as few as possible share a
// Kubernetes node. Without zones and hosts the layout is the natural one: the
// first nodes are the masters, and the next ones follow them in turn.
func PlanCluster(nodes []Node, replicasPerMaster int) (Plan, []Problem) {
	masters, problems := ShardCount(nodes, replicasPerMaster)
	if problems != nil {
		return Plan{}, problems
	}
	order := spreadOrder(nodes)
	ranges := SplitSlots(masters)
	plan := Plan{Shards: make([]Shard, masters)}
	masterIdx := make([]int, masters)
	for s := range masters {
		masterIdx[s] = order[s]
		plan.Shards[s] = Shard{Master: order[s], Slots: ranges[s]}
	}
	replicas := order[masters:]
	assigned := assignReplicas(nodes, masterIdx, make([]int, masters), replicas, replicasPerMaster)
	for k, rep := range replicas {
		s := assigned[k]
		plan.Shards[s].Replicas = append(plan.Shards[s].Replicas, rep)
	}
	plan.Warnings = placementWarnings(nodes, plan)
	return plan, nil
}

// spreadOrder orders node indices so that consecutive nodes are in different zones
// as long as possible, and within a zone on different Kubernetes nodes: zones in
// order of first appearance, taken in turn. Without zones and hosts it is the
// given order.
func spreadOrder(nodes []Node) []int {
	all := make([]int, len(nodes))
	for i := range nodes {
		all[i] = i
	}
	var byZone [][]int
	for _, g := range groupBy(all, func(i int) string { return nodes[i].Zone }) {
		byZone = append(byZone, interleave(groupBy(g, func(i int) string { return nodes[i].Host })))
	}
	return interleave(byZone)
}

// groupBy splits idx into groups of equal key, in order of first appearance.
func groupBy(idx []int, key func(int) string) [][]int {
	var groups [][]int
	pos := map[string]int{}
	for _, i := range idx {
		k := key(i)
		g, ok := pos[k]
		if !ok {
			g = len(groups)
			pos[k] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	return groups
}

// interleave takes the first of every group, then the second of every group, ...
func interleave(groups [][]int) []int {
	var out []int
	for round := 0; ; round++ {
		took := false
		for _, g := range groups {
			if round < len(g) {
				out = append(out, g[round])
				took = true
			}
		}
		if !took {
			return out
		}
	}
}

// conflict reports whether two nodes share a zone and whether they share a
// Kubernetes node. An unknown (empty) zone or host shares nothing.
func conflict(a, b Node) (zone, host bool) {
	return a.Zone != "" && a.Zone == b.Zone, a.Host != "" && a.Host == b.Host
}

// assignReplicas places each replica (node indices) under one of the masters
// (node indices), master k taking at most replicasPerMaster - have[k] more. It
// returns, per replica, the index into masters. The placement minimizes, in this
// order: replicas in their master's zone, replicas on their master's Kubernetes
// node, and departures from the natural layout (replica j under master j mod
// len(masters)). It is a minimum-cost flow, solved by successive shortest paths;
// clusters are small enough for that.
func assignReplicas(nodes []Node, masters, have, replicas []int, replicasPerMaster int) []int {
	nr, nm := len(replicas), len(masters)
	w := int64(nr + 1)
	cost := func(j, k int) int64 {
		zone, host := conflict(nodes[replicas[j]], nodes[masters[k]])
		var c int64
		if zone {
			c += w * w
		}
		if host {
			c += w
		}
		if k != j%nm {
			c++
		}
		return c
	}

	// Vertices: 0 source, 1..nr replicas, nr+1..nr+nm masters, nr+nm+1 sink.
	src, sink := 0, nr+nm+1
	g := newFlowGraph(nr + nm + 2)
	for j := range nr {
		g.addEdge(src, 1+j, 1, 0)
		for k := range nm {
			g.addEdge(1+j, 1+nr+k, 1, cost(j, k))
		}
	}
	for k := range nm {
		if c := replicasPerMaster - have[k]; c > 0 {
			g.addEdge(1+nr+k, sink, c, 0)
		}
	}
	g.minCostFlow(src, sink, nr)

	out := make([]int, nr)
	for j := range nr {
		out[j] = -1
		for _, e := range g.adj[1+j] {
			edge := g.edges[e]
			if edge.to > nr && edge.to <= nr+nm && edge.cap == 0 {
				out[j] = edge.to - 1 - nr
			}
		}
	}
	return out
}

type flowEdge struct {
	to   int
	cap  int
	cost int64
}

type flowGraph struct {
	edges []flowEdge
	adj   [][]int
}

func newFlowGraph(n int) *flowGraph { return &flowGraph{adj: make([][]int, n)} }

// addEdge adds an edge and its residual twin at index ^1.
func (g *flowGraph) addEdge(from, to, capacity int, cost int64) {
	g.adj[from] = append(g.adj[from], len(g.edges))
	g.edges = append(g.edges, flowEdge{to: to, cap: capacity, cost: cost})
	g.adj[to] = append(g.adj[to], len(g.edges))
	g.edges = append(g.edges, flowEdge{to: from, cap: 0, cost: -cost})
}

// minCostFlow pushes up to want units from s to t, one shortest path at a time
// (Bellman-Ford, as residual edges have negative costs).
func (g *flowGraph) minCostFlow(s, t, want int) int {
	n := len(g.adj)
	flow := 0
	for flow < want {
		dist := make([]int64, n)
		via := make([]int, n)
		for i := range dist {
			dist[i], via[i] = math.MaxInt64, -1
		}
		dist[s] = 0
		for changed := true; changed; {
			changed = false
			for u := range n {
				if dist[u] == math.MaxInt64 {
					continue
				}
				for _, e := range g.adj[u] {
					edge := g.edges[e]
					if edge.cap > 0 && dist[u]+edge.cost < dist[edge.to] {
						dist[edge.to] = dist[u] + edge.cost
						via[edge.to] = e
						changed = true
					}
				}
			}
		}
		if dist[t] == math.MaxInt64 {
			return flow
		}
		for v := t; v != s; v = g.edges[via[v]^1].to {
			g.edges[via[v]].cap--
			g.edges[via[v]^1].cap++
		}
		flow++
	}
	return flow
}

// placementWarnings names the replicas that share a zone or a Kubernetes node with
// their master.
func placementWarnings(nodes []Node, p Plan) []string {
	var out []string
	for _, sh := range p.Shards {
		m := nodes[sh.Master]
		for _, r := range sh.Replicas {
			zone, host := conflict(nodes[r], m)
			switch {
			case zone:
				out = append(out, fmt.Sprintf("replica %s shares zone %s with its master %s: no placement keeps every replica out of its master's zone", nodes[r].Address, m.Zone, m.Address))
			case host:
				out = append(out, fmt.Sprintf("replica %s shares Kubernetes node %s with its master %s: no placement keeps every replica off its master's node", nodes[r].Address, m.Host, m.Address))
			}
		}
	}
	return out
}
