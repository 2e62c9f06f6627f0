package cluster

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Drain moves every slot, with its keys, off the masters named in drain (by
// address as given in nodes, or by node ID) to the other masters, as evenly as
// the drained slots allow; the remaining masters never give slots to each other.
// A master left without slots becomes a replica of the master that took its last
// slot (Valkey's cluster-allow-replica-migration, or CLUSTER REPLICATE where
// Valkey did not), so that its pod can be scaled away without the cluster losing
// a slot.
//
// It first finishes any move an interrupted run left, then plans from what the
// nodes report: running it again after an interruption resumes. It refuses,
// having changed nothing, when a node does not answer, the cluster is not ok, a
// drained node is not one of the given nodes, every master would be drained, or
// a remaining master has too little memory for the keys it would take.
func Drain(ctx context.Context, nodes []Node, drain []string, opts Options) (Result, error) {
	return reshard(ctx, "drain", nodes, drain, opts)
}

// Rebalance spreads the slots evenly over every master, after masters without
// slots joined (a scale-up): each master ends within one slot of 16384 / masters.
// It moves slots from the masters above their share to those below it, and is
// resumable and refuses as Drain does.
func Rebalance(ctx context.Context, nodes []Node, opts Options) (Result, error) {
	return reshard(ctx, "rebalance", nodes, nil, opts)
}

func reshard(ctx context.Context, op string, nodes []Node, drain []string, opts Options) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, opts.timeout())
	defer cancel()
	s, err := open(ctx, op, nodes, opts)
	if err != nil {
		return Result{}, err
	}
	defer s.close()
	opts.progress("asked %d nodes: all answer", len(s.members))

	drained, problems := s.resolveDrained(drain)
	problems = append(problems, s.formedProblems()...)
	if err := refuse(op, problems); err != nil {
		return Result{}, err
	}
	res := Result{}
	if len(s.pendingMoves()) > 0 {
		res.Changed = true
	}
	if err := s.finishPending(ctx, op); err != nil {
		return res, resumable(op, err)
	}

	masters := s.owners()
	var moves []Move
	if op == "drain" {
		if problems := s.drainProblems(masters, drained, &res); len(problems) > 0 {
			if res.Changed {
				return res, resumable(op, refuse(op, problems))
			}
			return res, refuse(op, problems)
		}
		moves = planDrain(masters, drained)
	} else {
		moves = planRebalance(masters)
	}
	if len(moves) == 0 {
		opts.progress("no slot to move")
		res.Status = statusOf(s.members, nil)
		return res, nil
	}
	if problems, err := s.memoryProblems(ctx, moves); err != nil {
		return res, err
	} else if len(problems) > 0 {
		if res.Changed {
			return res, resumable(op, refuse(op, problems))
		}
		return res, refuse(op, problems)
	}

	res.Changed = true
	for _, mv := range moves {
		src, dst := s.byID(mv.From), s.byID(mv.To)
		start, keys := time.Now(), 0
		for slot := mv.Slots.First; slot <= mv.Slots.Last; slot++ {
			n, err := s.moveSlot(ctx, slot, src, dst)
			keys += n
			if err != nil {
				return res, resumable(op, fmt.Errorf("moving slot %d from %s to %s: %w", slot, src.Address, dst.Address, err))
			}
		}
		res.Moves = append(res.Moves, mv)
		opts.progress("moved slots %s (%d) from %s to %s: %d keys (%.1fs)", mv.Slots, mv.Slots.Len(), src.Address, dst.Address, keys, time.Since(start).Seconds())
	}
	if err := s.waitFor(ctx, "every node sees the new owner of every slot and reports cluster_state:ok", s.ownersSettled(moves)); err != nil {
		return res, resumable(op, err)
	}
	if err := s.followEmptied(ctx, moves); err != nil {
		return res, resumable(op, err)
	}
	res.Status = statusOf(s.members, nil)
	return res, nil
}

// followEmptied makes each master that gave away its last slot a replica of the
// master that took it. Valkey does so by itself when it applies that last SETSLOT
// NODE (cluster-allow-replica-migration), but not every time: a drained master
// was once seen on the real node still a master without slots, three minutes
// after its drain. Such a node is asked with CLUSTER REPLICATE, and the drain
// waits until every node sees it as a replica.
func (s *session) followEmptied(ctx context.Context, moves []Move) error {
	follow := emptiedMasters(s.members, moves)
	if len(follow) == 0 {
		return nil
	}
	for _, id := range slices.Sorted(maps.Keys(follow)) {
		m := s.byID(id)
		s.opts.progress("%s serves no slot and is still a master: CLUSTER REPLICATE %s, the master that took its last slot", m.Address, shortID(follow[id]))
		if err := m.do(ctx, "CLUSTER", "REPLICATE", follow[id]); err != nil {
			return err
		}
	}
	return s.waitFor(ctx, "every node sees each master left without slots as a replica", s.settled(follow))
}

// emptiedMasters maps each source of moves that reports itself a master serving
// no slot to the destination of its last move, the master that took its last slot.
func emptiedMasters(members []*member, moves []Move) map[string]string {
	last := map[string]string{}
	for _, mv := range moves {
		last[mv.From] = mv.To
	}
	out := map[string]string{}
	for _, m := range members {
		if to, ok := last[m.id]; ok && !m.self.IsReplica() && len(m.self.Slots) == 0 {
			out[m.id] = to
		}
	}
	return out
}

func resumable(op string, err error) error {
	return fmt.Errorf("%s stopped after moving some slots: %w; run %s again to resume: no key is lost, the slot in the middle of its move is finished first", op, err, op)
}

// resolveDrained finds the given nodes named in drain, by address or node ID.
func (s *session) resolveDrained(drain []string) (map[string]bool, []Problem) {
	drained := map[string]bool{}
	var problems []Problem
	for _, d := range drain {
		var found *member
		for _, m := range s.members {
			if d == m.Address || d == m.addr() || d == m.id {
				found = m
			}
		}
		if found == nil {
			problems = append(problems, Problem{Node: d, Reason: "is not one of the given nodes", Fix: "name a node of --nodes, by its address or node ID"})
			continue
		}
		drained[found.id] = true
	}
	return drained, problems
}

// formedProblems says why the nodes are not one healthy cluster that a
// reshard may work on.
func (s *session) formedProblems() []Problem {
	var problems []Problem
	for _, m := range s.members {
		if p, ok := strangersProblem(m, s.members); ok {
			problems = append(problems, p)
		}
		for _, p := range s.members {
			if known, _ := m.knows(p); !known {
				problems = append(problems, Problem{Node: m.Address, Reason: fmt.Sprintf("does not know %s: it is not in the same cluster", p.Address), Fix: "give only the nodes of one cluster; a node not in it yet joins with init"})
			}
		}
	}
	if problems != nil {
		return problems
	}
	if st := statusOf(s.members, nil); !st.OK() {
		problems = append(problems, Problem{Reason: "the cluster is not ok: " + notOKReason(st), Fix: "run status, heal it or wait for its failover, then run again"})
	}
	return problems
}

func notOKReason(st Report) string {
	var parts []string
	for _, n := range st.Nodes {
		switch {
		case n.StalePeers > 0:
			parts = append(parts, fmt.Sprintf("%s knows %d peers at old addresses", n.Address, n.StalePeers))
		case n.State != StateOK:
			parts = append(parts, fmt.Sprintf("%s reports cluster_state:%s", n.Address, n.State))
		}
	}
	if st.SlotsCovered < SlotCount {
		parts = append(parts, fmt.Sprintf("%d of %d slots served", st.SlotsCovered, SlotCount))
	}
	if len(st.Failing) > 0 {
		parts = append(parts, "failing: "+strings.Join(st.Failing, ", "))
	}
	return strings.Join(parts, "; ")
}

// owners are the masters and their slots, in the order of the given nodes.
func (s *session) owners() []owner {
	var out []owner
	for _, m := range s.members {
		if !m.self.IsReplica() {
			out = append(out, owner{id: m.id, slots: slotsOf(m.self.Slots)})
		}
	}
	return out
}

// drainProblems refuses draining every master; a drained node that is a replica
// or a master without slots has nothing to drain, which is said, not refused.
func (s *session) drainProblems(masters []owner, drained map[string]bool, res *Result) []Problem {
	remaining := 0
	for _, m := range masters {
		if !drained[m.id] && len(m.slots) > 0 {
			remaining++
		}
	}
	for id := range drained {
		m := s.byID(id)
		switch {
		case m.self.IsReplica():
			w := fmt.Sprintf("%s is a replica: it serves no slots, nothing to drain", m.Address)
			res.Warnings = append(res.Warnings, w)
			s.opts.progress("%s", w)
		case len(m.self.Slots) == 0:
			w := fmt.Sprintf("%s is a master without slots: nothing to drain", m.Address)
			res.Warnings = append(res.Warnings, w)
			s.opts.progress("%s", w)
		}
	}
	if remaining == 0 {
		return []Problem{{Reason: "every master that serves slots would be drained: the last master's slots would have nowhere to go", Fix: "keep at least one master, or add masters first (scale up, then rebalance)"}}
	}
	return nil
}

// memoryProblems refuses moves that would take a master past its maxmemory: each
// slot is assumed to carry an even part of its source's dataset (INFO memory,
// used_memory_dataset).
func (s *session) memoryProblems(ctx context.Context, moves []Move) ([]Problem, error) {
	mem := map[string]map[string]string{}
	for _, m := range s.members {
		if m.self.IsReplica() {
			continue
		}
		info, err := text(m.client.Do(ctx, m.client.B().Info().Section("memory").Build()))
		if err != nil {
			return nil, fmt.Errorf("node %s: INFO memory: %w", m.Address, err)
		}
		mem[m.id] = ParseInfo(info)
	}
	incoming := map[string]float64{}
	for _, mv := range moves {
		src := s.byID(mv.From)
		slots := countSlots(src.self.Slots)
		dataset, _ := strconv.ParseFloat(mem[mv.From]["used_memory_dataset"], 64)
		if slots > 0 {
			incoming[mv.To] += dataset * float64(mv.Slots.Len()) / float64(slots)
		}
	}
	var problems []Problem
	for _, m := range s.members {
		in, ok := incoming[m.id]
		if !ok {
			continue
		}
		used, _ := strconv.ParseFloat(mem[m.id]["used_memory"], 64)
		limit, _ := strconv.ParseFloat(mem[m.id]["maxmemory"], 64)
		if limit > 0 && used+in > limit {
			problems = append(problems, Problem{
				Node:   m.Address,
				Reason: fmt.Sprintf("would take about %s of keys on top of %s used, past its maxmemory of %s", mib(in), mib(used), mib(limit)),
				Fix:    "raise the memory limit of the pods first, or drain fewer masters at once",
			})
		}
	}
	return problems, nil
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

// ownersSettled is true when every node sees the new owner of every moved slot,
// and the cluster is settled.
func (s *session) ownersSettled(moves []Move) func() (bool, string) {
	settled := s.settled(nil)
	return func() (bool, string) {
		for _, m := range s.members {
			for _, mv := range moves {
				e, ok := entryByID(m.view, mv.To)
				if !ok || !coversRange(e.Slots, mv.Slots) {
					return false, fmt.Sprintf("%s does not see %s serving slots %s yet", m.Address, shortID(mv.To), mv.Slots)
				}
			}
		}
		return settled()
	}
}

func coversRange(ranges []SlotRange, want SlotRange) bool {
	for s := want.First; s <= want.Last; s++ {
		in := false
		for _, r := range ranges {
			if s >= r.First && s <= r.Last {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	return true
}

// strangersProblem is the problem of a node that knows nodes not given: the
// nodes of pods scaled away, which forget removes, or nodes of the cluster that
// were left out.
func strangersProblem(m *member, given []*member) (Problem, bool) {
	foreign := foreignPeers(m, given)
	if len(foreign) == 0 {
		return Problem{}, false
	}
	gone := map[string]bool{}
	for _, id := range departed(given) {
		gone[id] = true
	}
	fix := "give every node of the cluster"
	if !slices.ContainsFunc(foreign, func(e NodeEntry) bool { return !gone[e.ID] }) {
		fix = "they are failed nodes without slots, of pods scaled away: run forget first (the lifecycle controller does it by itself)"
	}
	return Problem{Node: m.Address, Reason: fmt.Sprintf("knows %d node(s) not given (%s)", len(foreign), describeEntries(foreign)), Fix: fix}, true
}
