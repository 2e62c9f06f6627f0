package cluster

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSplitSlots(t *testing.T) {
	cases := map[int][]SlotRange{
		1: {{0, 16383}},
		3: {{0, 5460}, {5461, 10921}, {10922, 16383}},
		4: {{0, 4095}, {4096, 8191}, {8192, 12287}, {12288, 16383}},
		7: {{0, 2339}, {2340, 4680}, {4681, 7020}, {7021, 9361}, {9362, 11701}, {11702, 14042}, {14043, 16383}},
	}
	for n, want := range cases {
		if diff := cmp.Diff(want, SplitSlots(n)); diff != "" {
			t.Errorf("SplitSlots(%d) (-want +got):\n%s", n, diff)
		}
	}
	// Every count: contiguous, complete, sizes within one of each other.
	for n := 1; n <= 1000; n++ {
		got := SplitSlots(n)
		next, lo, hi := 0, SlotCount, 0
		for _, r := range got {
			if r.First != next {
				t.Fatalf("SplitSlots(%d): %v starts at %d, want %d", n, r, r.First, next)
			}
			next = r.Last + 1
			lo, hi = min(lo, r.Len()), max(hi, r.Len())
		}
		if next != SlotCount || hi-lo > 1 {
			t.Fatalf("SplitSlots(%d): ends at %d, sizes %d to %d", n, next, lo, hi)
		}
	}
}

func addrs(n int) []Node {
	out := make([]Node, n)
	for i := range out {
		out[i] = Node{Address: fmt.Sprintf("10.0.0.%d:6379", i)}
	}
	return out
}

// zoned gives node i zones[i] and hosts[i] ("" when the list is shorter).
func zoned(zones, hosts []string) []Node {
	out := addrs(max(len(zones), len(hosts)))
	for i := range out {
		if i < len(zones) {
			out[i].Zone = zones[i]
		}
		if i < len(hosts) {
			out[i].Host = hosts[i]
		}
	}
	return out
}

func TestShardCountRefusals(t *testing.T) {
	cases := map[string]struct {
		nodes    int
		replicas int
		want     []Problem
	}{
		"5 nodes, 1 replica each": {5, 1, []Problem{
			{Reason: "5 nodes do not divide into shards of 1 master and 1 replica: 10.0.0.4:6379 would be left over", Fix: "give 6 nodes (3 masters with 1 replica each), or change the replicas per master"},
			{Reason: "5 nodes make 2 masters with 1 replica each; a cluster needs at least 3 masters", Fix: "give 6 nodes (3 masters with 1 replica each), or change the replicas per master"},
		}},
		"4 nodes, 1 replica each": {4, 1, []Problem{
			{Reason: "4 nodes make 2 masters with 1 replica each; a cluster needs at least 3 masters", Fix: "give 6 nodes (3 masters with 1 replica each), or change the replicas per master"},
		}},
		"11 nodes, 2 replicas each": {11, 2, []Problem{
			{Reason: "11 nodes do not divide into shards of 1 master and 2 replicas: 10.0.0.9:6379, 10.0.0.10:6379 would be left over", Fix: "give 9 or 12 nodes, or change the replicas per master"},
		}},
		"negative replicas": {6, -1, []Problem{{Reason: "replicas per master is -1", Fix: "give 0 or more"}}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, got := ShardCount(addrs(tc.nodes), tc.replicas)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ShardCount (-want +got):\n%s", diff)
			}
		})
	}
	for _, ok := range []struct{ nodes, replicas, masters int }{{6, 1, 3}, {3, 0, 3}, {9, 2, 3}, {8, 1, 4}} {
		if got, problems := ShardCount(addrs(ok.nodes), ok.replicas); got != ok.masters || problems != nil {
			t.Errorf("ShardCount(%d nodes, %d replicas) = %d, %v; want %d masters", ok.nodes, ok.replicas, got, problems, ok.masters)
		}
	}
}

func TestPlanCluster(t *testing.T) {
	cases := map[string]struct {
		nodes        []Node
		replicas     int
		want         []Shard
		wantWarnings []string
	}{
		"no zones, no hosts: the natural layout": {
			nodes: addrs(6), replicas: 1,
			want: []Shard{
				{Master: 0, Slots: SlotRange{0, 5460}, Replicas: []int{3}},
				{Master: 1, Slots: SlotRange{5461, 10921}, Replicas: []int{4}},
				{Master: 2, Slots: SlotRange{10922, 16383}, Replicas: []int{5}},
			},
		},
		"zones a b c a b c: no replica beside its master": {
			nodes: zoned([]string{"a", "b", "c", "a", "b", "c"}, nil), replicas: 1,
			want: []Shard{
				{Master: 0, Slots: SlotRange{0, 5460}, Replicas: []int{4}},
				{Master: 1, Slots: SlotRange{5461, 10921}, Replicas: []int{5}},
				{Master: 2, Slots: SlotRange{10922, 16383}, Replicas: []int{3}},
			},
		},
		"zones in pod order a a b b c c: masters spread over the zones": {
			nodes: zoned([]string{"a", "a", "b", "b", "c", "c"}, nil), replicas: 1,
			want: []Shard{
				{Master: 0, Slots: SlotRange{0, 5460}, Replicas: []int{3}},
				{Master: 2, Slots: SlotRange{5461, 10921}, Replicas: []int{5}},
				{Master: 4, Slots: SlotRange{10922, 16383}, Replicas: []int{1}},
			},
		},
		"two zones for three shards: zones first, then Kubernetes nodes": {
			nodes: zoned([]string{"a", "a", "a", "b", "b", "b"}, []string{"n1", "n2", "n3", "n4", "n5", "n6"}), replicas: 1,
			want: []Shard{
				{Master: 0, Slots: SlotRange{0, 5460}, Replicas: []int{4}},
				{Master: 3, Slots: SlotRange{5461, 10921}, Replicas: []int{2}},
				{Master: 1, Slots: SlotRange{10922, 16383}, Replicas: []int{5}},
			},
		},
		"one zone, hosts known: no replica on its master's Kubernetes node": {
			nodes: zoned([]string{"a", "a", "a", "a", "a", "a"}, []string{"n1", "n2", "n3", "n1", "n2", "n3"}), replicas: 1,
			want: []Shard{
				{Master: 0, Slots: SlotRange{0, 5460}, Replicas: []int{4}},
				{Master: 1, Slots: SlotRange{5461, 10921}, Replicas: []int{5}},
				{Master: 2, Slots: SlotRange{10922, 16383}, Replicas: []int{3}},
			},
			wantWarnings: []string{
				"replica 10.0.0.4:6379 shares zone a with its master 10.0.0.0:6379: no placement keeps every replica out of its master's zone",
				"replica 10.0.0.5:6379 shares zone a with its master 10.0.0.1:6379: no placement keeps every replica out of its master's zone",
				"replica 10.0.0.3:6379 shares zone a with its master 10.0.0.2:6379: no placement keeps every replica out of its master's zone",
			},
		},
		"four zones for one: as few replicas beside their master as can be": {
			nodes: zoned([]string{"a", "a", "a", "a", "b", "b"}, nil), replicas: 1,
			want: []Shard{
				{Master: 0, Slots: SlotRange{0, 5460}, Replicas: []int{5}},
				{Master: 4, Slots: SlotRange{5461, 10921}, Replicas: []int{2}},
				{Master: 1, Slots: SlotRange{10922, 16383}, Replicas: []int{3}},
			},
			wantWarnings: []string{"replica 10.0.0.3:6379 shares zone a with its master 10.0.0.1:6379: no placement keeps every replica out of its master's zone"},
		},
		"two replicas each over three zones": {
			nodes: zoned([]string{"a", "b", "c", "a", "b", "c", "a", "b", "c"}, nil), replicas: 2,
			want: []Shard{
				{Master: 0, Slots: SlotRange{0, 5460}, Replicas: []int{4, 5}},
				{Master: 1, Slots: SlotRange{5461, 10921}, Replicas: []int{6, 8}},
				{Master: 2, Slots: SlotRange{10922, 16383}, Replicas: []int{3, 7}},
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, problems := PlanCluster(tc.nodes, tc.replicas)
			if problems != nil {
				t.Fatalf("refused: %v", problems)
			}
			if diff := cmp.Diff(tc.want, got.Shards); diff != "" {
				t.Errorf("shards (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantWarnings, got.Warnings); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPlanClusterKeepsZonesApartWhenPossible checks, over many zone layouts, that
// no replica shares its master's zone whenever no zone holds more than half the
// nodes (then a placement that keeps them apart exists), and that the plan is
// the same every time.
func TestPlanClusterKeepsZonesApartWhenPossible(t *testing.T) {
	names := []string{"a", "b", "c", "d"}
	for seed := range 500 {
		n := 6 + 2*(seed%4)
		zones := make([]string, n)
		count := map[string]int{}
		x := seed*7919 + 13
		for i := range zones {
			x = (x*1103515245 + 12345) % 2147483648
			zones[i] = names[x%len(names)]
			count[zones[i]]++
		}
		most := 0
		for _, c := range count {
			most = max(most, c)
		}
		nodes := zoned(zones, nil)
		p, problems := PlanCluster(nodes, 1)
		if problems != nil {
			t.Fatalf("zones %v: refused: %v", zones, problems)
		}
		again, _ := PlanCluster(nodes, 1)
		if diff := cmp.Diff(p, again); diff != "" {
			t.Fatalf("zones %v: two plans differ:\n%s", zones, diff)
		}
		if most <= n/2 && len(p.Warnings) > 0 {
			t.Errorf("zones %v: %v", zones, p.Warnings)
		}
		seen := map[int]bool{}
		for _, sh := range p.Shards {
			if len(sh.Replicas) != 1 {
				t.Fatalf("zones %v: master %d has replicas %v", zones, sh.Master, sh.Replicas)
			}
			for _, i := range append([]int{sh.Master}, sh.Replicas...) {
				if seen[i] {
					t.Fatalf("zones %v: node %d placed twice", zones, i)
				}
				seen[i] = true
			}
		}
	}
}
