package controller

import (
	"fmt"

	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/valkey-webhook/valkey-webhook/cluster"
)

// step is what the lifecycle controller does next for one cluster.
type step int

const (
	// stepNone: the cluster is ok.
	stepNone step = iota
	// stepWait: the cluster is not ok, but nothing the controller may do helps
	// (a node does not answer, a failover is under way); look again later.
	stepWait
	// stepInit: the slots are not all served, or the nodes do not all know
	// each other, and no node fails: Init forms the cluster, or finishes a
	// formation that was interrupted, or refuses.
	stepInit
	// stepHeal: nodes know their peers at stale addresses.
	stepHeal
	// stepJoin: new empty pods (a scale-up) beside a formed cluster.
	stepJoin
	// stepForget: the cluster is ok, and still knows the failed nodes of pods
	// scaled away.
	stepForget
)

func (s step) String() string {
	return [...]string{"none", "wait", "init", "heal", "join", "forget"}[s]
}

// nextStep decides from the nodes' reports what to do, and why.
func nextStep(r cluster.Report) (step, string) {
	var unreachable, stale, alone, fresh []string
	for _, n := range r.Nodes {
		if cluster.IsNew(n) {
			fresh = append(fresh, n.Address)
		}
		switch {
		case n.Error != "":
			unreachable = append(unreachable, n.Error)
		case n.StalePeers > 0:
			stale = append(stale, n.Address)
		case n.KnownNodes < len(r.Nodes):
			alone = append(alone, n.Address)
		}
	}
	switch {
	case len(unreachable) > 0:
		sort.Strings(unreachable)
		return stepWait, "not every node answers: " + strings.Join(unreachable, "; ")
	case r.OK() && len(r.Departed) > 0:
		return stepForget, fmt.Sprintf("the nodes still know %d departed node(s), flagged fail, without slots: %s", len(r.Departed), strings.Join(r.Departed, ", "))
	case r.OK():
		return stepNone, "cluster_state ok on every node, all slots served"
	case len(stale) > 0:
		return stepHeal, fmt.Sprintf("%s know peers at stale addresses", strings.Join(stale, ", "))
	case len(r.Failing) > 0:
		return stepWait, fmt.Sprintf("cluster_state fail; failing: %s", strings.Join(r.Failing, ", "))
	case len(fresh) > 0 && len(fresh) < len(r.Nodes) && r.SlotsCovered == cluster.SlotCount && othersFormed(r):
		return stepJoin, fmt.Sprintf("new pods %s beside a formed cluster", strings.Join(fresh, ", "))
	case r.SlotsCovered < cluster.SlotCount:
		return stepInit, fmt.Sprintf("%d of %d slots served and no node failing", r.SlotsCovered, cluster.SlotCount)
	case len(alone) > 0:
		return stepInit, fmt.Sprintf("all slots assigned, but %s do not know every other node (an interrupted init)", strings.Join(alone, ", "))
	default:
		return stepWait, "cluster_state fail on some node, with every node known and every slot served: settling"
	}
}

// othersFormed reports whether the nodes that are not new know each other: a
// formed cluster, not an init interrupted before its masters met.
func othersFormed(r cluster.Report) bool {
	others := 0
	for _, n := range r.Nodes {
		if !cluster.IsNew(n) {
			others++
		}
	}
	for _, n := range r.Nodes {
		if !cluster.IsNew(n) && n.KnownNodes < others {
			return false
		}
	}
	return true
}

// suspects reports whether some node flags a peer fail or fail?.
func suspects(r cluster.Report) bool {
	for _, n := range r.Nodes {
		if n.FailingPeers > 0 {
			return true
		}
	}
	return false
}

// rolling says why the StatefulSet's pods are about to change: the StatefulSet
// controller has not seen its latest spec yet, or a rolling update is under way.
// Empty when they are settled. Forming a cluster meanwhile would work on pods
// that are about to go.
func rolling(sts *appsv1.StatefulSet) string {
	st := sts.Status
	switch {
	case st.ObservedGeneration < sts.Generation:
		return fmt.Sprintf("the StatefulSet controller has not seen generation %d yet", sts.Generation)
	case sts.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType && st.UpdateRevision != "" && st.CurrentRevision != st.UpdateRevision:
		return fmt.Sprintf("a rolling update to revision %s is under way", st.UpdateRevision)
	}
	return ""
}
