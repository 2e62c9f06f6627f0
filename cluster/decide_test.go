package cluster

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeNode is one node of a made-up cluster, for building what each node would
// answer to CLUSTER NODES.
type fakeNode struct {
	ip     string // current address
	seenAt string // the address the others know it by; "" means ip
	master int    // index of its master, -1 for a master
	slots  string // "0-5460 5462"
	keys   int64
	zone   string
	// knows lists the nodes this node knows (indices); nil: every node.
	knows []int
	// extra lines of its view, e.g. a foreign node.
	extra []string
}

func fakeID(i int) string { return fmt.Sprintf("%040d", i+1) }

// fakeMembers builds the members as open and refresh would leave them.
func fakeMembers(t *testing.T, nodes []fakeNode) []*member {
	t.Helper()
	var out []*member
	for i, n := range nodes {
		known := n.knows
		if known == nil {
			for j := range nodes {
				known = append(known, j)
			}
		}
		var lines []string
		for _, j := range append([]int{i}, known...) {
			if j == i && len(lines) > 0 {
				continue
			}
			p := nodes[j]
			addr := p.ip
			flags := "master"
			if p.seenAt != "" && j != i {
				addr = p.seenAt
			}
			if p.master >= 0 {
				flags = "slave"
			}
			if j == i {
				flags = "myself," + flags
			}
			masterID := "-"
			if p.master >= 0 {
				masterID = fakeID(p.master)
			}
			lines = append(lines, strings.TrimSpace(fmt.Sprintf("%s %s:6379@16379 %s %s 0 0 1 connected %s", fakeID(j), addr, flags, masterID, p.slots)))
		}
		lines = append(lines, n.extra...)
		view, err := ParseNodes(strings.Join(lines, "\n"))
		if err != nil {
			t.Fatal(err)
		}
		self, _ := myself(view)
		out = append(out, &member{
			Node: Node{Address: n.ip + ":6379", Zone: n.zone}, ip: n.ip, port: 6379,
			id: fakeID(i), view: view, self: self, keys: n.keys,
			info: map[string]string{"cluster_state": "ok", "cluster_known_nodes": fmt.Sprint(len(view))},
		})
	}
	return out
}

// empty is n nodes that know only themselves.
func empty(n int) []fakeNode {
	out := make([]fakeNode, n)
	for i := range out {
		out[i] = fakeNode{ip: fmt.Sprintf("10.0.0.%d", i), master: -1, knows: []int{}}
	}
	return out
}

// formedCluster is 3 masters (0-2) with replicas 3-5 (3 follows 0, ...).
func formedCluster() []fakeNode {
	out := empty(6)
	slots := []string{"0-5460", "5461-10921", "10922-16383"}
	for i := range out {
		out[i].knows = nil
		if i < 3 {
			out[i].slots = slots[i]
		} else {
			out[i].master = i - 3
		}
	}
	return out
}

func with(nodes []fakeNode, f func([]fakeNode)) []fakeNode {
	f(nodes)
	return nodes
}

func TestDecideInit(t *testing.T) {
	foreign := "00000000000000000000000000000000000000ff 10.9.9.9:6379@16379 master - 0 0 7 connected"
	cases := map[string]struct {
		nodes        []fakeNode
		wantAction   initAction
		wantAttach   []attachment
		wantProblems []Problem
	}{
		"empty nodes": {nodes: empty(6), wantAction: initFresh},
		"empty nodes that already met": {
			nodes:      with(empty(6), func(n []fakeNode) { n[0].knows, n[3].knows = nil, nil }),
			wantAction: initFresh,
		},
		"slots exactly as planned by an interrupted init": {
			nodes:      with(empty(6), func(n []fakeNode) { n[1].slots = "5461-10921" }),
			wantAction: initFresh,
		},
		"slots assigned by hand": {
			nodes: with(empty(6), func(n []fakeNode) { n[4].slots = "0-99" }),
			wantProblems: []Problem{{
				Node:   "10.0.0.4:6379",
				Reason: "owns 100 slots (0-99) while the nodes do not form a cluster: slots assigned by hand, or left from another cluster",
				Fix:    "remove them (CLUSTER DELSLOTSRANGE) or CLUSTER RESET HARD the node; init assigns all slots itself",
			}},
		},
		"a node with keys": {
			nodes:        with(empty(6), func(n []fakeNode) { n[2].keys = 3 }),
			wantProblems: []Problem{{Node: "10.0.0.2:6379", Reason: "holds 3 keys; init never forms a cluster over data", Fix: "FLUSHALL it if the data may go, or leave it out"}},
		},
		"a node of another cluster": {
			nodes: with(empty(6), func(n []fakeNode) { n[5].extra = []string{foreign} }),
			wantProblems: []Problem{{
				Node:   "10.0.0.5:6379",
				Reason: "already belongs to another cluster: it knows 1 node(s) not given (00000000 at 10.9.9.9:6379)",
				Fix:    "give every node of that cluster, or leave this node out; if its data may go, CLUSTER RESET HARD it",
			}},
		},
		"a MEET in progress with a given node": {
			nodes:      with(empty(6), func(n []fakeNode) { n[0].extra = []string{"aaaa 10.0.0.3:6379@16379 handshake - 0 0 0 disconnected"} }),
			wantAction: initFresh,
		},
		"a MEET in progress with an outsider": {
			nodes: with(empty(6), func(n []fakeNode) { n[0].extra = []string{"aaaa 10.9.9.9:6379@16379 handshake - 0 0 0 disconnected"} }),
			wantProblems: []Problem{{
				Node:   "10.0.0.0:6379",
				Reason: "already belongs to another cluster: it knows 1 node(s) not given (a handshake with 10.9.9.9:6379)",
				Fix:    "give every node of that cluster, or leave this node out; if its data may go, CLUSTER RESET HARD it",
			}},
		},
		"a formed cluster": {nodes: formedCluster(), wantAction: initNothing},
		"a formed cluster after a full restart": {
			nodes: with(formedCluster(), func(n []fakeNode) {
				for i := range n {
					n[i].seenAt = n[i].ip
					n[i].ip = fmt.Sprintf("10.0.1.%d", i)
				}
			}),
			wantAction: initNothing,
		},
		"a formed cluster whose replica was not attached": {
			nodes:      with(formedCluster(), func(n []fakeNode) { n[4].master = -1 }),
			wantAction: initAttach,
			wantAttach: []attachment{{replica: 4, master: 1}},
		},
		"a formed cluster with a master more than asked": {
			nodes: with(formedCluster(), func(n []fakeNode) {
				n[0].slots, n[3].master, n[3].slots = "0-2000", -1, "2001-5460"
				n[4].master = -1
			}),
			wantProblems: []Problem{{
				Reason: "the nodes form a cluster with 4 masters, and 6 nodes with 1 replica each make 3: adding or removing masters moves slots, which init does not do",
				Fix:    "give the cluster's nodes with its replicas per master",
			}},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			members := fakeMembers(t, tc.nodes)
			nodes := make([]Node, len(members))
			for i, m := range members {
				nodes[i] = m.Node
			}
			plan, problems := PlanCluster(nodes, 1)
			if problems != nil {
				t.Fatal(problems)
			}
			d := decideInit(members, plan, 1)
			if diff := cmp.Diff(tc.wantProblems, d.problems); diff != "" {
				t.Fatalf("problems (-want +got):\n%s", diff)
			}
			if tc.wantProblems != nil {
				return
			}
			if d.action != tc.wantAction {
				t.Errorf("action %d, want %d", d.action, tc.wantAction)
			}
			if diff := cmp.Diff(tc.wantAttach, d.attach, cmp.AllowUnexported(attachment{})); diff != "" {
				t.Errorf("attach (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecideHeal(t *testing.T) {
	restarted := func() []fakeNode {
		return with(formedCluster(), func(n []fakeNode) {
			for i := range n {
				n[i].seenAt = n[i].ip
				n[i].ip = fmt.Sprintf("10.0.1.%d", i)
			}
		})
	}
	cases := map[string]struct {
		nodes        []fakeNode
		wantMeets    []healMeet
		wantProblems []Problem
		wantWarnings []string
	}{
		"a healthy cluster": {nodes: formedCluster()},
		"every node restarted on a new address": {
			nodes: restarted(),
			wantMeets: func() []healMeet {
				var out []healMeet
				for i := range 6 {
					var peers []int
					for j := range 6 {
						if j != i {
							peers = append(peers, j)
						}
					}
					ex := 0
					if i == 0 {
						ex = 1
					}
					out = append(out, healMeet{from: i, peers: peers, why: fmt.Sprintf("5 known by a stale address, e.g. %s by 10.0.0.%d:6379, now at 10.0.1.%d:6379", shortID(fakeID(ex)), ex, ex)})
				}
				return out
			}(),
		},
		"a node that knows none of the others": {
			nodes: with(append(formedCluster(), empty(1)...), func(n []fakeNode) {
				n[6].ip = "10.0.0.6"
				for i := range 6 {
					n[i].knows = []int{0, 1, 2, 3, 4, 5}
				}
			}),
			wantProblems: []Problem{{Node: "10.0.0.6:6379", Reason: "is not part of the cluster: it knows no other given node and serves no slots", Fix: "leave it out, or run init for new nodes"}},
		},
		"a node not given that serves slots": {
			nodes: with(formedCluster(), func(n []fakeNode) {
				n[2].extra = []string{"00000000000000000000000000000000000000ff 10.9.9.9:6379@16379 master - 0 0 7 connected 0-10"}
			}),
			wantProblems: []Problem{{Node: "10.0.0.2:6379", Reason: "knows node 00000000 (last at 10.9.9.9:6379) serving 11 slots, which is not among the given nodes; the cluster cannot be ok without it", Fix: "give every node of the cluster"}},
		},
		"a node not given without slots": {
			nodes: with(formedCluster(), func(n []fakeNode) {
				n[2].extra = []string{"00000000000000000000000000000000000000ff 10.9.9.9:6379@16379 master - 0 0 7 connected"}
			}),
			wantWarnings: []string{"node 00000000 (last at 10.9.9.9:6379, known to 10.0.0.2:6379) is not among the given nodes and serves no slots: left alone"},
		},
		"slots missing": {
			nodes:        with(formedCluster(), func(n []fakeNode) { n[2].slots = "10922-16000" }),
			wantProblems: []Problem{{Reason: "the given nodes serve 16001 of 16384 slots; meeting them again cannot make the cluster ok", Fix: "run init to form a new cluster, or assign the missing slots"}},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d := decideHeal(fakeMembers(t, tc.nodes))
			if diff := cmp.Diff(tc.wantProblems, d.problems); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantMeets, d.meets, cmp.AllowUnexported(healMeet{})); diff != "" {
				t.Errorf("meets (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantWarnings, d.warnings); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStatusOf(t *testing.T) {
	nodes := with(formedCluster(), func(n []fakeNode) {
		n[1].seenAt = n[1].ip
		n[1].ip = "10.0.1.1"
	})
	members := fakeMembers(t, nodes)
	members[2].info["cluster_state"] = "fail"
	errs := make([]error, len(members))
	errs[5] = errors.New("node 10.0.0.5:6379: not reachable")
	got := statusOf(members, errs)
	want := Report{
		State: StateFail, SlotsCovered: SlotCount, Masters: 3, Replicas: 2,
		Nodes: []NodeReport{
			{Address: "10.0.0.0:6379", ID: fakeID(0), Role: RoleMaster, Slots: 5461, SlotRanges: "0-5460", Flags: []string{"master"}, State: "ok", KnownNodes: 6, StalePeers: 1},
			{Address: "10.0.1.1:6379", ID: fakeID(1), Role: RoleMaster, Slots: 5461, SlotRanges: "5461-10921", Flags: []string{"master"}, State: "ok", KnownNodes: 6},
			{Address: "10.0.0.2:6379", ID: fakeID(2), Role: RoleMaster, Slots: 5462, SlotRanges: "10922-16383", Flags: []string{"master"}, State: "fail", KnownNodes: 6, StalePeers: 1},
			{Address: "10.0.0.3:6379", ID: fakeID(3), Role: RoleReplica, MasterID: fakeID(0), MasterAddress: "10.0.0.0:6379", Flags: []string{"slave"}, State: "ok", KnownNodes: 6, StalePeers: 1},
			{Address: "10.0.0.4:6379", ID: fakeID(4), Role: RoleReplica, MasterID: fakeID(1), MasterAddress: "10.0.1.1:6379", Flags: []string{"slave"}, State: "ok", KnownNodes: 6, StalePeers: 1},
			{Address: "10.0.0.5:6379", Error: "node 10.0.0.5:6379: not reachable"},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("statusOf (-want +got):\n%s", diff)
	}
}
