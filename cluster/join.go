package cluster

import (
	"context"
	"fmt"
	"strings"
)

// Join brings new, empty nodes into a formed cluster as replicas: after a
// scale-up, the new pods know only themselves. Each is met into the cluster and
// made a replica of the master with the fewest replicas, preferring a master in
// another zone, then on another Kubernetes node. Join never makes a new master:
// slots move only with an explicit Rebalance.
//
// It refuses, having changed nothing, when a node does not answer, the nodes
// that are not new do not form one ok cluster, or a new node holds keys.
func Join(ctx context.Context, nodes []Node, opts Options) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, opts.timeout())
	defer cancel()
	s, err := open(ctx, "join", nodes, opts)
	if err != nil {
		return Result{}, err
	}
	defer s.close()
	opts.progress("asked %d nodes: all answer", len(s.members))

	formed, fresh := splitNew(s.members)
	if err := refuse("join", joinProblems(formed, fresh)); err != nil {
		return Result{}, err
	}
	if len(fresh) == 0 {
		opts.progress("no new node to join")
		return Result{Status: statusOf(s.members, nil)}, nil
	}
	res := Result{Changed: true}
	first := formed[0]
	for _, m := range fresh {
		if err := first.meet(ctx, m); err != nil {
			return res, partlyJoined(err)
		}
		opts.progress("%s: met %s", first.Address, m.Address)
	}
	if err := s.waitFor(ctx, fmt.Sprintf("all %d nodes know each other", len(s.members)), s.allKnown); err != nil {
		return res, partlyJoined(err)
	}
	want := map[string]string{}
	for _, a := range placeJoiners(formed, fresh) {
		r, m := a.replica, a.master
		if err := r.do(ctx, "CLUSTER", "REPLICATE", m.id); err != nil {
			return res, partlyJoined(err)
		}
		want[r.id] = m.id
		opts.progress("%s: replicates %s", r.Address, m.Address)
		if zone, host := conflict(r.Node, m.Node); zone || host {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s replicates %s in the same %s: no master elsewhere had as few replicas", r.Address, m.Address, sameWhat(zone)))
		}
	}
	if err := s.waitFor(ctx, "every node reports cluster_state:ok and sees every new replica attached", s.settled(want)); err != nil {
		return res, partlyJoined(err)
	}
	res.Status = statusOf(s.members, nil)
	return res, nil
}

func sameWhat(zone bool) string {
	if zone {
		return "zone"
	}
	return "Kubernetes node"
}

func partlyJoined(err error) error {
	return fmt.Errorf("join stopped after meeting some nodes: %w; run join again to finish", err)
}

// IsNew reports whether a node, as it reports itself, is a new empty node: it
// knows no other node, serves no slot and replicates no one.
func IsNew(n NodeReport) bool {
	return n.Error == "" && n.KnownNodes <= 1 && n.Slots == 0 && n.Role == RoleMaster
}

// splitNew separates the new nodes (knowing only themselves, no slots, not a
// replica) from the others.
func splitNew(members []*member) (formed, fresh []*member) {
	for _, m := range members {
		if len(m.view) == 1 && len(m.self.Slots) == 0 && !m.self.IsReplica() {
			fresh = append(fresh, m)
		} else {
			formed = append(formed, m)
		}
	}
	return formed, fresh
}

// joinProblems says why the new nodes cannot join: the others must form one
// cluster serving every slot, and a new node must hold no keys.
func joinProblems(formed, fresh []*member) []Problem {
	var problems []Problem
	if len(formed) == 0 {
		return []Problem{{Reason: "no node is part of a cluster yet", Fix: "form the cluster with init"}}
	}
	covered := 0
	var seen [SlotCount]bool
	for _, m := range formed {
		for _, p := range formed {
			if known, _ := m.knows(p); !known {
				problems = append(problems, Problem{Node: m.Address, Reason: fmt.Sprintf("does not know %s: the nodes that are not new do not form one cluster", p.Address), Fix: "give the nodes of one cluster and its new nodes"})
			}
		}
		if p, ok := strangersProblem(m, formed); ok {
			problems = append(problems, p)
		}
		if !m.self.IsReplica() {
			for _, r := range m.self.Slots {
				for slot := r.First; slot <= r.Last; slot++ {
					if !seen[slot] {
						seen[slot] = true
						covered++
					}
				}
			}
		}
	}
	if problems == nil && covered < SlotCount {
		problems = append(problems, Problem{Reason: fmt.Sprintf("the cluster serves %d of %d slots", covered, SlotCount), Fix: "form it with init first"})
	}
	for _, m := range fresh {
		if m.keys > 0 {
			problems = append(problems, Problem{Node: m.Address, Reason: fmt.Sprintf("is new but holds %d keys; joining it as a replica would drop them", m.keys), Fix: "FLUSHALL it if the data may go, or leave it out"})
		}
	}
	return problems
}

type joiner struct{ replica, master *member }

// placeJoiners attaches each new node, in order, to the master with the fewest
// replicas (counting those already placed), preferring a master in another zone,
// then on another Kubernetes node, then the first given.
func placeJoiners(formed, fresh []*member) []joiner {
	replicas := map[*member]int{}
	var masters []*member
	for _, m := range formed {
		if !m.self.IsReplica() && len(m.self.Slots) > 0 {
			masters = append(masters, m)
		}
	}
	for _, m := range formed {
		if m.self.IsReplica() {
			for _, mm := range masters {
				if mm.id == m.self.MasterID {
					replicas[mm]++
				}
			}
		}
	}
	var out []joiner
	for _, r := range fresh {
		var best *member
		bestKey := ""
		for _, m := range masters {
			zone, host := conflict(r.Node, m.Node)
			key := fmt.Sprintf("%06d/%t/%t", replicas[m], zone, host)
			if best == nil || strings.Compare(key, bestKey) < 0 {
				best, bestKey = m, key
			}
		}
		replicas[best]++
		out = append(out, joiner{replica: r, master: best})
	}
	return out
}
