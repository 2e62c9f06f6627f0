package cluster

import "sort"

// Move is a range of slots to move, with their keys, from one master to another.
type Move struct {
	Slots SlotRange `json:"slots"`
	// From and To are node IDs.
	From string `json:"from"`
	To   string `json:"to"`
}

// owner is one master and the slots it serves, in order.
type owner struct {
	id    string
	slots []int
}

// evenShares splits the slots over n masters: the first SlotCount%n get one more.
func evenShares(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = SlotCount / n
		if i < SlotCount%n {
			out[i]++
		}
	}
	return out
}

// planDrain moves every slot of the drained masters to the others, each slot to
// the remaining master furthest below an even share of all slots, so that the
// remaining masters end as even as the drained slots allow; the remaining masters
// never give slots to each other. masters are in a stable order (the order of the
// nodes given), which decides ties.
func planDrain(masters []owner, drained map[string]bool) []Move {
	var remaining []int
	for i, m := range masters {
		if !drained[m.id] {
			remaining = append(remaining, i)
		}
	}
	if len(remaining) == 0 {
		return nil
	}
	shares := evenShares(len(remaining))
	// Masters holding most already get the smaller shares, so that fewer slots move.
	order := append([]int(nil), remaining...)
	sort.SliceStable(order, func(a, b int) bool { return len(masters[order[a]].slots) > len(masters[order[b]].slots) })
	deficit := map[int]int{}
	for k, i := range order {
		deficit[i] = shares[len(shares)-1-k] - len(masters[i].slots)
	}
	var moving []int
	var from []string
	for _, m := range masters {
		if drained[m.id] {
			moving = append(moving, m.slots...)
			for range m.slots {
				from = append(from, m.id)
			}
		}
	}
	// How many each remaining master takes: one at a time to the one furthest
	// below its share; then each takes a contiguous run, in the masters' order.
	take := map[int]int{}
	for range moving {
		to := remaining[0]
		for _, j := range remaining {
			if deficit[j] > deficit[to] {
				to = j
			}
		}
		deficit[to]--
		take[to]++
	}
	var moves []Move
	next := 0
	for _, j := range remaining {
		for range take[j] {
			moves = appendMove(moves, moving[next], from[next], masters[j].id)
			next++
		}
	}
	return moves
}

// planRebalance moves slots from the masters above an even share to those below
// it, taking from the end of each giver's slots, until every master holds its
// share. The masters holding most get the larger shares, so that fewer slots move.
func planRebalance(masters []owner) []Move {
	if len(masters) == 0 {
		return nil
	}
	shares := evenShares(len(masters))
	order := make([]int, len(masters))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return len(masters[order[a]].slots) > len(masters[order[b]].slots) })
	target := make([]int, len(masters))
	for k, i := range order {
		target[i] = shares[k]
	}
	var givers []int
	var takers []int
	for i, m := range masters {
		switch {
		case len(m.slots) > target[i]:
			givers = append(givers, i)
		case len(m.slots) < target[i]:
			takers = append(takers, i)
		}
	}
	left := map[int][]int{}
	for _, i := range givers {
		left[i] = masters[i].slots
	}
	need := map[int]int{}
	for _, i := range takers {
		need[i] = target[i] - len(masters[i].slots)
	}
	var moves []Move
	for _, g := range givers {
		surplus := len(masters[g].slots) - target[g]
		give := left[g][len(left[g])-surplus:]
		for _, slot := range give {
			for len(takers) > 0 && need[takers[0]] == 0 {
				takers = takers[1:]
			}
			if len(takers) == 0 {
				return moves // the masters serve fewer than all slots: nothing more to even out
			}
			t := takers[0]
			need[t]--
			moves = appendMove(moves, slot, masters[g].id, masters[t].id)
		}
	}
	return moves
}

// appendMove adds one slot to the moves, extending the last move when the slot
// follows it between the same two masters.
func appendMove(moves []Move, slot int, from, to string) []Move {
	if n := len(moves); n > 0 {
		last := &moves[n-1]
		if last.From == from && last.To == to && last.Slots.Last == slot-1 {
			last.Slots.Last = slot
			return moves
		}
	}
	return append(moves, Move{Slots: SlotRange{First: slot, Last: slot}, From: from, To: to})
}

// slotsOf lists the slots of the ranges, in order.
func slotsOf(ranges []SlotRange) []int {
	var out []int
	for _, r := range ranges {
		for s := r.First; s <= r.Last; s++ {
			out = append(out, s)
		}
	}
	return out
}
