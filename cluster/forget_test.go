package cluster

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDeparted(t *testing.T) {
	const gone = "9999999999999999999999999999999999999999"
	line := func(flags, master, slots string) string {
		return gone + " 10.0.9.9:6379@16379 " + flags + " " + master + " 0 0 1 disconnected " + slots
	}
	everyone := func(l string) func([]fakeNode) {
		return func(n []fakeNode) {
			for i := range n {
				n[i].extra = []string{l}
			}
		}
	}
	tests := []struct {
		name  string
		nodes []fakeNode
		// edit changes the members after they are built.
		edit func([]*member)
		want []string
	}{{
		name:  "a replica scaled away, flagged fail by all: departed",
		nodes: with(formedCluster(), everyone(line("slave,fail", fakeID(0), ""))),
		want:  []string{gone},
	}, {
		name: "only suspected (fail?) by one node: not departed",
		nodes: with(formedCluster(), func(n []fakeNode) {
			everyone(line("slave,fail", fakeID(0), ""))(n)
			n[4].extra = []string{line("slave,fail?", fakeID(0), "")}
		}),
	}, {
		name:  "a failed master that still serves slots: never departed",
		nodes: with(formedCluster(), everyone(line("master,fail", "-", "16000"))),
	}, {
		name: "a failed master without slots that a given node replicates: not departed",
		nodes: with(formedCluster(), func(n []fakeNode) {
			everyone(line("master,fail", "-", ""))(n)
			n[5].master = -1
		}),
		edit: func(m []*member) {
			m[5].self.Flags = []string{"myself", "slave"}
			m[5].self.MasterID = gone
		},
	}, {
		name:  "nothing unknown: none",
		nodes: formedCluster(),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			members := fakeMembers(t, tt.nodes)
			if tt.edit != nil {
				tt.edit(members)
			}
			if diff := cmp.Diff(tt.want, departed(members)); diff != "" {
				t.Errorf("departed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStrangersProblemPointsToForget(t *testing.T) {
	const gone = "9999999999999999999999999999999999999999"
	failed := gone + " 10.0.9.9:6379@16379 slave,fail " + fakeID(0) + " 0 0 1 disconnected"
	suspected := gone + " 10.0.9.9:6379@16379 slave,fail? " + fakeID(0) + " 0 0 1 disconnected"
	for _, tt := range []struct {
		name, line, fix string
	}{
		{"a failed node of a pod scaled away", failed, "they are failed nodes without slots, of pods scaled away: run forget first (the lifecycle controller does it by itself)"},
		{"a node only suspected, maybe left out", suspected, "give every node of the cluster"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			members := fakeMembers(t, with(formedCluster(), func(n []fakeNode) {
				for i := range n {
					n[i].extra = []string{tt.line}
				}
			}))
			p, ok := strangersProblem(members[0], members)
			if !ok || p.Fix != tt.fix || p.Node != members[0].Address {
				t.Errorf("strangersProblem = %+v, %t; want a problem at %s with fix %q", p, ok, members[0].Address, tt.fix)
			}
		})
	}
}
