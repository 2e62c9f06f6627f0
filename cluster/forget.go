package cluster

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// departed lists the IDs of the nodes the given nodes know but that are not
// among them, and that are safe to forget: every given node that knows one flags
// it fail (the cluster agreed it is down, not merely suspected), sees it serve no
// slot, and no given node replicates it. These are the nodes of pods scaled away
// or replaced with an empty volume. Sorted.
func departed(members []*member) []string {
	given := map[string]bool{}
	for _, m := range members {
		given[m.id] = true
	}
	ok := map[string]bool{}
	for _, m := range members {
		for _, e := range m.view {
			if e.IsMyself() || given[e.ID] || e.HasFlag("handshake") {
				continue
			}
			safe := e.HasFlag("fail") && len(e.Slots) == 0
			if prev, seen := ok[e.ID]; seen {
				safe = safe && prev
			}
			ok[e.ID] = safe
		}
	}
	for _, m := range members {
		if m.self.IsReplica() && ok[m.self.MasterID] {
			ok[m.self.MasterID] = false
		}
	}
	var out []string
	for id, safe := range ok {
		if safe {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// Forget removes departed nodes from the cluster: nodes the given nodes still know,
// which every one of them flags fail, which serve no slot and which no given node
// replicates, typically the nodes of pods scaled away. Each given node is sent
// CLUSTER FORGET for each, all within Valkey's 60 s ban, so that gossip does not
// bring them back. A node that serves slots, or that is only suspected (fail?),
// is never forgotten.
func Forget(ctx context.Context, nodes []Node, opts Options) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, opts.timeout())
	defer cancel()
	s, err := open(ctx, "forget", nodes, opts)
	if err != nil {
		return Result{}, err
	}
	defer s.close()
	gone := departed(s.members)
	if len(gone) == 0 {
		opts.progress("no departed node to forget")
		return Result{Status: statusOf(s.members, nil)}, nil
	}
	res := Result{Changed: true, Forgotten: gone}
	for _, id := range gone {
		for _, m := range s.members {
			if _, known := entryByID(m.view, id); !known {
				continue
			}
			if err := m.do(ctx, "CLUSTER", "FORGET", id); err != nil && !strings.Contains(err.Error(), "Unknown node") {
				return res, fmt.Errorf("forget stopped after forgetting some nodes: %w; run forget again", err)
			}
		}
		opts.progress("forgot %s on every node", shortID(id))
	}
	if err := s.refreshAll(ctx); err != nil {
		return res, err
	}
	res.Status = statusOf(s.members, nil)
	return res, nil
}
