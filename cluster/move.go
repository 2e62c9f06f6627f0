package cluster

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// migrateBatch is how many keys one MIGRATE carries; migrateTimeout (ms) bounds
// each MIGRATE's I/O on the source node.
const (
	migrateBatch   = 100
	migrateTimeout = 5000
)

// moveSlot moves one slot and its keys from src to dst with the resharding
// protocol: SETSLOT IMPORTING on dst, SETSLOT MIGRATING on src, MIGRATE the keys
// in batches until src has none in the slot, then SETSLOT NODE dst on dst and src. Clients keep working meanwhile: src answers ASK for the keys
// it no longer holds. Each step is safe to repeat, so a move interrupted at any
// point is finished by running it again. It returns the number of keys moved.
func (s *session) moveSlot(ctx context.Context, slot int, src, dst *member) (int, error) {
	n := strconv.Itoa(slot)
	if !owns(dst, slot) {
		if err := dst.do(ctx, "CLUSTER", "SETSLOT", n, "IMPORTING", src.id); err != nil {
			return 0, err
		}
		if err := src.do(ctx, "CLUSTER", "SETSLOT", n, "MIGRATING", dst.id); err != nil {
			return 0, err
		}
	}
	moved := 0
	for {
		c := src.client
		keys, err := c.Do(ctx, c.B().ClusterGetkeysinslot().Slot(int64(slot)).Count(migrateBatch).Build()).AsStrSlice()
		if err != nil {
			return moved, fmt.Errorf("node %s: CLUSTER GETKEYSINSLOT %d: %w", src.Address, slot, err)
		}
		if len(keys) == 0 {
			break
		}
		if err := s.migrate(ctx, src, dst, keys, false); err != nil {
			if !strings.Contains(err.Error(), "BUSYKEY") {
				return moved, err
			}
			// A MIGRATE cut off after the target stored the keys and before the
			// source deleted them: the source's copy is the one clients were sent
			// to, so it replaces the target's.
			s.opts.progress("slot %d: %s already holds some of the keys (an interrupted MIGRATE); the copies of %s replace them", slot, dst.Address, src.Address)
			if err := s.migrate(ctx, src, dst, keys, true); err != nil {
				return moved, err
			}
		}
		moved += len(keys)
	}
	if err := dst.do(ctx, "CLUSTER", "SETSLOT", n, "NODE", dst.id); err != nil {
		return moved, err
	}
	if err := src.do(ctx, "CLUSTER", "SETSLOT", n, "NODE", dst.id); err != nil {
		// Giving away its last slot turns src into a replica of dst
		// (cluster-allow-replica-migration), which aborts the command and drops
		// src's connections; the slot is dst's all the same.
		if !s.seesSoon(ctx, src, dst.id, slot) {
			return moved, err
		}
	}
	// The other masters learn the new owner through gossip: dst took a new
	// config epoch with the slot.
	return moved, nil
}

// seesSoon asks m again, a few times over about a second, whether it sees the
// node id serving slot.
func (s *session) seesSoon(ctx context.Context, m *member, id string, slot int) bool {
	for range 5 {
		if m.refresh(ctx) == nil && sees(m, id, slot) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(pollInterval):
		}
	}
	return false
}

// sees reports whether m, when last asked, saw the node id serving slot.
func sees(m *member, id string, slot int) bool {
	e, ok := entryByID(m.view, id)
	if !ok {
		return false
	}
	for _, r := range e.Slots {
		if slot >= r.First && slot <= r.Last {
			return true
		}
	}
	return false
}

// migrate sends one MIGRATE of keys from src to dst, with the password when
// there is one. The password is an argument of the command on the connection to
// src only, never logged: errors name the command without its arguments.
func (s *session) migrate(ctx context.Context, src, dst *member, keys []string, replace bool) error {
	args := []string{"MIGRATE", dst.ip, strconv.Itoa(dst.port), "", "0", strconv.Itoa(migrateTimeout)}
	if replace {
		args = append(args, "REPLACE")
	}
	if s.opts.Password != "" {
		args = append(args, "AUTH", s.opts.Password)
	}
	args = append(args, "KEYS")
	args = append(args, keys...)
	c := src.client
	if err := c.Do(ctx, c.B().Arbitrary(args...).Build()).Error(); err != nil {
		return fmt.Errorf("node %s: MIGRATE of %d keys to %s: %w", src.Address, len(keys), dst.Address, err)
	}
	return nil
}

// owns reports whether m served slot when last asked.
func owns(m *member, slot int) bool {
	for _, r := range m.self.Slots {
		if slot >= r.First && slot <= r.Last {
			return true
		}
	}
	return false
}

// pendingMoves are the slots left in the middle of a move by an interrupted run,
// as each end reports them, each once: (slot, from, to).
func (s *session) pendingMoves() []pendingMove {
	seen := map[int]bool{}
	var out []pendingMove
	add := func(slot int, from, to string) {
		if !seen[slot] {
			seen[slot] = true
			out = append(out, pendingMove{slot: slot, from: from, to: to})
		}
	}
	for _, m := range s.members {
		for _, mv := range m.self.Migrating {
			add(mv.Slot, m.id, mv.Peer)
		}
		for _, mv := range m.self.Importing {
			add(mv.Slot, mv.Peer, m.id)
		}
	}
	return out
}

type pendingMove struct {
	slot     int
	from, to string
}

// finishPending completes the moves an interrupted run left, each in the
// direction it had, and refuses when one end is not among the given nodes.
func (s *session) finishPending(ctx context.Context, op string) error {
	pending := s.pendingMoves()
	if len(pending) == 0 {
		return nil
	}
	var problems []Problem
	for _, p := range pending {
		if s.byID(p.from) == nil || s.byID(p.to) == nil {
			problems = append(problems, Problem{
				Reason: fmt.Sprintf("slot %d is in the middle of a move from %s to %s, and one of them is not among the given nodes", p.slot, shortID(p.from), shortID(p.to)),
				Fix:    "give every node of the cluster",
			})
		}
	}
	if err := refuse(op, problems); err != nil {
		return err
	}
	for _, p := range pending {
		src, dst := s.byID(p.from), s.byID(p.to)
		s.opts.progress("slot %d: finishing the move from %s to %s left by an interrupted run", p.slot, src.Address, dst.Address)
		if _, err := s.moveSlot(ctx, p.slot, src, dst); err != nil {
			return err
		}
	}
	return s.refreshAll(ctx)
}
