package cluster

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func ownerOf(id string, ranges ...SlotRange) owner { return owner{id: id, slots: slotsOf(ranges)} }

func TestPlanDrain(t *testing.T) {
	tests := []struct {
		name    string
		masters []owner
		drained []string
		want    []Move
	}{{
		name: "one of four even masters: its slots split over the other three",
		masters: []owner{
			ownerOf("a", SlotRange{0, 4095}), ownerOf("b", SlotRange{4096, 8191}),
			ownerOf("c", SlotRange{8192, 12287}), ownerOf("d", SlotRange{12288, 16383}),
		},
		drained: []string{"d"},
		want: []Move{
			{Slots: SlotRange{12288, 13652}, From: "d", To: "a"},
			{Slots: SlotRange{13653, 15017}, From: "d", To: "b"},
			{Slots: SlotRange{15018, 16383}, From: "d", To: "c"},
		},
	}, {
		name: "uneven masters: the drained slots fill the smallest first",
		masters: []owner{
			ownerOf("a", SlotRange{0, 9999}), ownerOf("b", SlotRange{10000, 11999}),
			ownerOf("c", SlotRange{12000, 16383}),
		},
		drained: []string{"c"},
		want: []Move{
			{Slots: SlotRange{12000, 16383}, From: "c", To: "b"},
		},
	}, {
		name:    "every master drained: nothing planned (Drain refuses first)",
		masters: []owner{ownerOf("a", SlotRange{0, 16383})},
		drained: []string{"a"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			drained := map[string]bool{}
			for _, id := range tt.drained {
				drained[id] = true
			}
			got := planDrain(tt.masters, drained)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("planDrain (-want +got):\n%s", diff)
			}
			moved := 0
			for _, m := range got {
				moved += m.Slots.Len()
			}
			want := 0
			for _, m := range tt.masters {
				if drained[m.id] && len(tt.masters) > len(tt.drained) {
					want += len(m.slots)
				}
			}
			if moved != want {
				t.Errorf("moved %d slots, want every drained slot (%d)", moved, want)
			}
		})
	}
}

func TestPlanRebalance(t *testing.T) {
	tests := []struct {
		name    string
		masters []owner
		want    []Move
	}{{
		name: "three masters and two new empty ones",
		masters: []owner{
			ownerOf("a", SlotRange{0, 5460}), ownerOf("b", SlotRange{5461, 10922}), ownerOf("c", SlotRange{10923, 16383}),
			ownerOf("d"), ownerOf("e"),
		},
		want: []Move{
			{Slots: SlotRange{3277, 5460}, From: "a", To: "d"},
			{Slots: SlotRange{8738, 9830}, From: "b", To: "d"},
			{Slots: SlotRange{9831, 10922}, From: "b", To: "e"},
			{Slots: SlotRange{14200, 16383}, From: "c", To: "e"},
		},
	}, {
		name: "already even: nothing moves",
		masters: []owner{
			ownerOf("a", SlotRange{0, 5460}), ownerOf("b", SlotRange{5461, 10922}), ownerOf("c", SlotRange{10923, 16383}),
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := planRebalance(tt.masters)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("planRebalance (-want +got):\n%s", diff)
			}
			count := map[string]int{}
			for _, m := range tt.masters {
				count[m.id] = len(m.slots)
			}
			for _, m := range got {
				count[m.From] -= m.Slots.Len()
				count[m.To] += m.Slots.Len()
			}
			for id, n := range count {
				if n < SlotCount/len(tt.masters) || n > SlotCount/len(tt.masters)+1 {
					t.Errorf("master %s ends with %d slots, not an even share", id, n)
				}
			}
		})
	}
}

func TestEmptiedMasters(t *testing.T) {
	// Master 2 (node 2) gave its slots to masters 0 and 1; node 5 replicates it.
	drainedMoves := []Move{
		{Slots: SlotRange{10922, 13652}, From: fakeID(2), To: fakeID(0)},
		{Slots: SlotRange{13653, 16383}, From: fakeID(2), To: fakeID(1)},
	}
	tests := []struct {
		name  string
		nodes []fakeNode
		moves []Move
		want  map[string]string
	}{{
		name: "still a master without slots: it follows the master that took its last slot",
		nodes: with(formedCluster(), func(n []fakeNode) {
			n[0].slots, n[1].slots, n[2].slots = "0-5460 10922-13652", "5461-10921 13653-16383", ""
		}),
		moves: drainedMoves,
		want:  map[string]string{fakeID(2): fakeID(1)},
	}, {
		name: "already a replica (Valkey moved it): nothing to do",
		nodes: with(formedCluster(), func(n []fakeNode) {
			n[0].slots, n[1].slots, n[2].slots, n[2].master = "0-5460 10922-13652", "5461-10921 13653-16383", "", 1
		}),
		moves: drainedMoves,
		want:  map[string]string{},
	}, {
		name: "a source that keeps slots (a rebalance): stays a master",
		nodes: with(formedCluster(), func(n []fakeNode) {
			n[0].slots, n[1].slots = "0-4095", "4096-10921"
		}),
		moves: []Move{{Slots: SlotRange{4096, 5460}, From: fakeID(0), To: fakeID(1)}},
		want:  map[string]string{},
	}, {
		name:  "a master without slots that gave nothing away (an empty master left alone)",
		nodes: append(formedCluster(), fakeNode{ip: "10.0.0.6", master: -1}),
		moves: drainedMoves[:1],
		want:  map[string]string{},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := emptiedMasters(fakeMembers(t, tt.nodes), tt.moves)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("emptiedMasters (-want +got):\n%s", diff)
			}
		})
	}
}
