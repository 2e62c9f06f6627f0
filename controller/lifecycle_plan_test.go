package controller

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/valkey-webhook/valkey-webhook/cluster"
)

func TestNextStep(t *testing.T) {
	node := func(addr string, edit func(*cluster.NodeReport)) cluster.NodeReport {
		n := cluster.NodeReport{Address: addr, State: cluster.StateOK, KnownNodes: 3}
		if edit != nil {
			edit(&n)
		}
		return n
	}
	tests := []struct {
		name   string
		report cluster.Report
		want   step
		why    string
	}{{
		name:   "ok",
		report: cluster.Report{State: cluster.StateOK, SlotsCovered: cluster.SlotCount, Nodes: []cluster.NodeReport{node("a:1", nil)}},
		want:   stepNone,
		why:    "cluster_state ok on every node, all slots served",
	}, {
		name: "empty nodes: init",
		report: cluster.Report{State: cluster.StateFail, Nodes: []cluster.NodeReport{
			node("a:1", func(n *cluster.NodeReport) { n.State = cluster.StateFail; n.KnownNodes = 1 }),
			node("b:1", func(n *cluster.NodeReport) { n.State = cluster.StateFail; n.KnownNodes = 1 }),
		}},
		want: stepInit,
		why:  "0 of 16384 slots served and no node failing",
	}, {
		name: "a node does not answer: wait, even with stale peers",
		report: cluster.Report{State: cluster.StateFail, SlotsCovered: cluster.SlotCount, Nodes: []cluster.NodeReport{
			node("a:1", func(n *cluster.NodeReport) { n.Error = "node b:1: connection refused" }),
			node("b:1", func(n *cluster.NodeReport) { n.StalePeers = 2 }),
		}},
		want: stepWait,
		why:  "not every node answers: node b:1: connection refused",
	}, {
		name: "stale peers after a full restart: heal",
		report: cluster.Report{State: cluster.StateFail, SlotsCovered: cluster.SlotCount, Failing: []string{"c:1"}, Nodes: []cluster.NodeReport{
			node("a:1", func(n *cluster.NodeReport) { n.StalePeers = 2 }),
			node("b:1", nil),
			node("c:1", func(n *cluster.NodeReport) { n.StalePeers = 1 }),
		}},
		want: stepHeal,
		why:  "a:1, c:1 know peers at stale addresses",
	}, {
		name: "a master failing over: wait",
		report: cluster.Report{State: cluster.StateFail, SlotsCovered: 10923, Failing: []string{"c:1"}, Nodes: []cluster.NodeReport{
			node("a:1", nil), node("b:1", nil),
		}},
		want: stepWait,
		why:  "cluster_state fail; failing: c:1",
	}, {
		name: "slots assigned, the nodes not met (an interrupted init): init",
		report: cluster.Report{State: cluster.StateFail, SlotsCovered: cluster.SlotCount, Nodes: []cluster.NodeReport{
			node("a:1", func(n *cluster.NodeReport) { n.State = cluster.StateFail; n.KnownNodes = 1 }),
			node("b:1", func(n *cluster.NodeReport) { n.State = cluster.StateFail; n.KnownNodes = 1 }),
		}},
		want: stepInit,
		why:  "all slots assigned, but a:1, b:1 do not know every other node (an interrupted init)",
	}, {
		name: "every node known, every slot served, a node not ok yet: wait",
		report: cluster.Report{State: cluster.StateFail, SlotsCovered: cluster.SlotCount, Nodes: []cluster.NodeReport{
			node("a:1", func(n *cluster.NodeReport) { n.State = cluster.StateFail; n.KnownNodes = 2 }),
			node("b:1", func(n *cluster.NodeReport) { n.KnownNodes = 2 }),
		}},
		want: stepWait,
		why:  "cluster_state fail on some node, with every node known and every slot served: settling",
	}, {
		name: "new empty pods beside a formed cluster (a scale-up): join",
		report: cluster.Report{State: cluster.StateFail, SlotsCovered: cluster.SlotCount, Masters: 3, Nodes: []cluster.NodeReport{
			node("a:1", func(n *cluster.NodeReport) { n.Role = cluster.RoleMaster; n.Slots = 8192; n.KnownNodes = 2 }),
			node("b:1", func(n *cluster.NodeReport) { n.Role = cluster.RoleMaster; n.Slots = 8192; n.KnownNodes = 2 }),
			node("c:1", func(n *cluster.NodeReport) {
				n.Role = cluster.RoleMaster
				n.State = cluster.StateFail
				n.KnownNodes = 1
			}),
		}},
		want: stepJoin,
		why:  "new pods c:1 beside a formed cluster",
	}, {
		name: "every slot assigned by an interrupted init, replicas-to-be still alone: init, not join",
		report: cluster.Report{State: cluster.StateFail, SlotsCovered: cluster.SlotCount, Nodes: []cluster.NodeReport{
			node("a:1", func(n *cluster.NodeReport) {
				n.Role = cluster.RoleMaster
				n.Slots = 8192
				n.KnownNodes = 1
				n.State = cluster.StateFail
			}),
			node("b:1", func(n *cluster.NodeReport) {
				n.Role = cluster.RoleMaster
				n.Slots = 8192
				n.KnownNodes = 1
				n.State = cluster.StateFail
			}),
			node("c:1", func(n *cluster.NodeReport) {
				n.Role = cluster.RoleMaster
				n.KnownNodes = 1
				n.State = cluster.StateFail
			}),
		}},
		want: stepInit,
		why:  "all slots assigned, but a:1, b:1, c:1 do not know every other node (an interrupted init)",
	}, {
		name:   "ok, with the failed node of a pod scaled away: forget",
		report: cluster.Report{State: cluster.StateOK, SlotsCovered: cluster.SlotCount, Departed: []string{"abc"}, Nodes: []cluster.NodeReport{node("a:1", nil)}},
		want:   stepForget,
		why:    "the nodes still know 1 departed node(s), flagged fail, without slots: abc",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why := nextStep(tt.report)
			if got != tt.want || why != tt.why {
				t.Errorf("nextStep = %v, %q; want %v, %q", got, why, tt.want, tt.why)
			}
		})
	}
}

func TestSuspects(t *testing.T) {
	calm := cluster.Report{Nodes: []cluster.NodeReport{{Address: "a:1"}, {Address: "b:1"}}}
	wary := cluster.Report{Nodes: []cluster.NodeReport{{Address: "a:1"}, {Address: "b:1", FailingPeers: 1}}}
	if suspects(calm) || !suspects(wary) {
		t.Errorf("suspects(no failing peers) = %t, suspects(one) = %t; want false, true", suspects(calm), suspects(wary))
	}
}

func TestRolling(t *testing.T) {
	sts := func(generation, observed int64, strategy appsv1.StatefulSetUpdateStrategyType, current, update string) *appsv1.StatefulSet {
		s := &appsv1.StatefulSet{}
		s.Generation = generation
		s.Spec.UpdateStrategy.Type = strategy
		s.Status = appsv1.StatefulSetStatus{ObservedGeneration: observed, CurrentRevision: current, UpdateRevision: update}
		return s
	}
	for _, tt := range []struct {
		name string
		sts  *appsv1.StatefulSet
		want string
	}{
		{"settled", sts(2, 2, appsv1.RollingUpdateStatefulSetStrategyType, "r1", "r1"), ""},
		{"a new spec not seen yet", sts(3, 2, appsv1.RollingUpdateStatefulSetStrategyType, "r1", "r1"), "the StatefulSet controller has not seen generation 3 yet"},
		{"rolling", sts(2, 2, appsv1.RollingUpdateStatefulSetStrategyType, "r1", "r2"), "a rolling update to revision r2 is under way"},
		{"OnDelete waits for no one", sts(2, 2, appsv1.OnDeleteStatefulSetStrategyType, "r1", "r2"), ""},
	} {
		if got := rolling(tt.sts); got != tt.want {
			t.Errorf("%s: rolling = %q, want %q", tt.name, got, tt.want)
		}
	}
}
