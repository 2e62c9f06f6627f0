package cluster

import (
	"context"
	"fmt"
	"time"
)

// Heal brings a formed cluster back after its nodes moved: when nodes know their
// peers by stale addresses (after a full restart every pod has a new IP and the
// cluster stays in cluster_state:fail), each such node is sent CLUSTER MEET for
// its peers' current addresses; the nodes recognize each other by ID and keep
// their slots and data. Heal then waits for cluster_state:ok on every node.
//
// While the nodes find each other, failover is paused on the replicas
// (cluster-replica-no-failover yes, put back at the end): every master answers,
// and without the pause a replica whose master the others briefly flag failing
// wins an election and swaps roles with it. The nodes that come back together
// flag the masters failing at first, and Valkey clears that only after twice
// cluster-node-timeout, then a master rejoins after one more: Heal takes about
// three node timeouts (15s at the default 5000ms).
//
// Heal never forgets a node, and never changes slots or roles. It refuses, having
// changed nothing, when a node does not answer, is not part of the cluster, or
// when a node outside the given ones serves slots (the cluster cannot be ok
// without it).
func Heal(ctx context.Context, nodes []Node, opts Options) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, opts.timeout())
	defer cancel()
	s, err := open(ctx, "heal", nodes, opts)
	if err != nil {
		return Result{}, err
	}
	defer s.close()
	opts.progress("asked %d nodes: all answer", len(s.members))

	d := decideHeal(s.members)
	if err := refuse("heal", d.problems); err != nil {
		return Result{}, err
	}
	res := Result{Warnings: d.warnings}
	for _, w := range d.warnings {
		opts.progress("warning: %s", w)
	}
	if len(d.meets) == 0 {
		opts.progress("every node knows its peers at their current addresses: nothing to re-meet")
		if st := statusOf(s.members, nil); !st.OK() {
			if err := s.waitFor(ctx, "every node reports cluster_state:ok", s.settled(nil)); err != nil {
				return res, fmt.Errorf("heal: nothing to re-meet (nothing changed), but %w", err)
			}
		}
		res.Status = statusOf(s.members, nil)
		return res, nil
	}

	res.Changed = true
	restore, err := s.pauseFailover(ctx)
	defer restore()
	if err != nil {
		return res, fmt.Errorf("heal: %w", err)
	}
	for _, m := range d.meets {
		from := s.members[m.from]
		for _, p := range m.peers {
			if err := from.meet(ctx, s.members[p]); err != nil {
				return res, fmt.Errorf("heal stopped after re-meeting some nodes: %w; run heal again", err)
			}
		}
		opts.progress("%s: met %d peer(s) at their current addresses (%s)", from.Address, len(m.peers), m.why)
	}
	if err := s.waitFor(ctx, "every node knows its peers at their current addresses and reports cluster_state:ok", s.settled(nil)); err != nil {
		return res, fmt.Errorf("heal: %w", err)
	}
	restore()
	if err := s.refreshAll(ctx); err != nil {
		return res, fmt.Errorf("heal: the cluster is ok, but %w", err)
	}
	res.Status = statusOf(s.members, nil)
	return res, nil
}

type healMeet struct {
	from  int
	peers []int
	why   string
}

type healDecision struct {
	meets    []healMeet
	problems []Problem
	warnings []string
}

// decideHeal finds, for each node, the given peers it knows at a stale address or
// not at all, and what stops Heal.
func decideHeal(members []*member) healDecision {
	var d healDecision
	var covered [SlotCount]bool
	nCovered := 0
	reported := map[string]bool{}
	for _, m := range members {
		knowsGiven := false
		for _, p := range members {
			if known, _ := m.knows(p); known && p != m {
				knowsGiven = true
			}
		}
		if !knowsGiven && len(m.self.Slots) == 0 && !m.self.IsReplica() {
			d.problems = append(d.problems, Problem{Node: m.Address, Reason: "is not part of the cluster: it knows no other given node and serves no slots", Fix: "leave it out, or run init for new nodes"})
		}
		if !m.self.IsReplica() {
			for _, r := range m.self.Slots {
				for slot := r.First; slot <= r.Last; slot++ {
					if !covered[slot] {
						covered[slot] = true
						nCovered++
					}
				}
			}
		}
		for _, e := range foreignPeers(m, members) {
			if reported[e.ID] {
				continue
			}
			reported[e.ID] = true
			if n := countSlots(e.Slots); n > 0 && !e.IsReplica() {
				d.problems = append(d.problems, Problem{
					Node:   m.Address,
					Reason: fmt.Sprintf("knows node %s (last at %s) serving %d slots, which is not among the given nodes; the cluster cannot be ok without it", shortID(e.ID), e.Addr(), n),
					Fix:    "give every node of the cluster",
				})
				continue
			}
			d.warnings = append(d.warnings, fmt.Sprintf("node %s (last at %s, known to %s) is not among the given nodes and serves no slots: left alone", shortID(e.ID), e.Addr(), m.Address))
		}
	}
	if d.problems != nil {
		return d
	}
	if nCovered < SlotCount {
		d.problems = append(d.problems, Problem{
			Reason: fmt.Sprintf("the given nodes serve %d of %d slots; meeting them again cannot make the cluster ok", nCovered, SlotCount),
			Fix:    "run init to form a new cluster, or assign the missing slots",
		})
		return d
	}
	for i, m := range members {
		var peers []int
		stale, unknown := 0, 0
		example := ""
		for j, p := range members {
			known, current := m.knows(p)
			if current {
				continue
			}
			peers = append(peers, j)
			if known {
				stale++
				if example == "" {
					e, _ := entryByID(m.view, p.id)
					example = fmt.Sprintf("e.g. %s by %s, now at %s", shortID(p.id), e.Addr(), p.addr())
				}
			} else {
				unknown++
			}
		}
		if len(peers) == 0 {
			continue
		}
		why := fmt.Sprintf("%d known by a stale address", stale)
		if example != "" {
			why += ", " + example
		}
		if unknown > 0 {
			why += fmt.Sprintf("; %d not known", unknown)
		}
		d.meets = append(d.meets, healMeet{from: i, peers: peers, why: why})
	}
	return d
}

// noFailover is the setting that keeps a replica from starting a failover.
const noFailover = "cluster-replica-no-failover"

// pauseFailover sets cluster-replica-no-failover on every replica that does not
// have it, and returns what puts each back; that runs even when the operation's
// context has ended, and only once.
func (s *session) pauseFailover(ctx context.Context) (restore func(), err error) {
	var paused []*member
	restore = func() {
		if len(paused) == 0 {
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		for _, m := range paused {
			if err := m.do(rctx, "CONFIG", "SET", noFailover, "no"); err != nil {
				s.opts.progress("warning: %v: set %s no on it by hand", err, noFailover)
			}
		}
		s.opts.progress("replicas may fail over again (%s no on %d replicas)", noFailover, len(paused))
		paused = nil
	}
	for _, m := range s.members {
		if !m.self.IsReplica() {
			continue
		}
		got, err := m.client.Do(ctx, m.client.B().ConfigGet().Parameter(noFailover).Build()).AsStrMap()
		if err != nil {
			return restore, fmt.Errorf("node %s: CONFIG GET %s: %w", m.Address, noFailover, err)
		}
		if got[noFailover] == "yes" {
			continue
		}
		if err := m.do(ctx, "CONFIG", "SET", noFailover, "yes"); err != nil {
			return restore, err
		}
		paused = append(paused, m)
	}
	if len(paused) > 0 {
		s.opts.progress("paused failover on %d replicas while the nodes find each other (%s yes)", len(paused), noFailover)
	}
	return restore, nil
}
