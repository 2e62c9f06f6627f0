package cluster

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Init forms a cluster of the given nodes: once every node answers and no node owns
// a slot, it meets all nodes, assigns the 16384 slots evenly over the masters
// (ADDSLOTSRANGE), attaches the replicas (CLUSTER REPLICATE) away from their
// master's zone, or failing that its Kubernetes node, and waits until every node
// reports cluster_state:ok.
//
// Init is idempotent. On a formed cluster it changes nothing. A run that was
// interrupted is finished: slots already assigned exactly as planned are kept, and
// masters without slots are attached as replicas of a formed cluster. It never
// forms a cluster over nodes that hold other slots, keys or peers of another
// cluster: it returns a *Refusal naming each such node, and has changed nothing.
func Init(ctx context.Context, nodes []Node, opts Options) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, opts.timeout())
	defer cancel()
	plan, problems := PlanCluster(nodes, opts.ReplicasPerMaster)
	if err := refuse("init", problems); err != nil {
		return Result{}, err
	}
	if err := refuse("init", resolveWithin(ctx, nodes, opts)); err != nil {
		return Result{}, err
	}
	s, err := open(ctx, "init", nodes, opts)
	if err != nil {
		return Result{}, err
	}
	defer s.close()
	opts.progress("asked %d nodes: all answer", len(s.members))

	d := decideInit(s.members, plan, opts.ReplicasPerMaster)
	if err := refuse("init", d.problems); err != nil {
		return Result{}, err
	}
	res := Result{Warnings: d.warnings}
	for _, w := range d.warnings {
		opts.progress("warning: %s", w)
	}
	switch d.action {
	case initNothing:
		opts.progress("the nodes already form a cluster with all %d slots: nothing to change", SlotCount)
		if st := statusOf(s.members, nil); !st.OK() {
			if stale := staleNodes(s.members); len(stale) > 0 {
				return res, fmt.Errorf("init: the cluster is already formed (nothing changed), but %s know their peers by old addresses: run heal", strings.Join(stale, ", "))
			}
			if err := s.waitFor(ctx, "every node reports cluster_state:ok", s.settled(nil)); err != nil {
				return res, fmt.Errorf("init: the cluster is already formed (nothing changed), but %w", err)
			}
		}
	case initAttach:
		res.Changed = true
		for _, a := range d.attach {
			r, m := s.members[a.replica], s.members[a.master]
			opts.progress("%s: replicate %s (the cluster is formed; attaching a master without slots)", r.Address, m.Address)
			if err := r.do(ctx, "CLUSTER", "REPLICATE", m.id); err != nil {
				return res, partly(err)
			}
		}
		if err := s.waitFor(ctx, "every node reports cluster_state:ok and sees every replica attached", s.settled(s.expectedMasters(d.attach))); err != nil {
			return res, partly(err)
		}
	case initFresh:
		res.Changed = true
		res.Plan = &plan
		if err := s.form(ctx, plan); err != nil {
			return res, partly(err)
		}
	}
	res.Status = statusOf(s.members, nil)
	return res, nil
}

func partly(err error) error {
	return fmt.Errorf("init stopped after changing the cluster partly: %w; run init again to finish", err)
}

type initAction int

const (
	initFresh  initAction = iota // meet, assign the slots, attach the replicas
	initAttach                   // formed: attach the masters without slots as replicas
	initNothing
)

type attachment struct{ replica, master int }

type initDecision struct {
	action   initAction
	attach   []attachment
	problems []Problem
	warnings []string
}

// decideInit looks at what the nodes report and decides what Init does, or why it
// refuses. members are in the order of the planned nodes.
func decideInit(members []*member, plan Plan, replicasPerMaster int) initDecision {
	var d initDecision
	for _, m := range members {
		if foreign := foreignPeers(m, members); len(foreign) > 0 {
			d.problems = append(d.problems, Problem{
				Node:   m.Address,
				Reason: fmt.Sprintf("already belongs to another cluster: it knows %d node(s) not given (%s)", len(foreign), describeEntries(foreign)),
				Fix:    "give every node of that cluster, or leave this node out; if its data may go, CLUSTER RESET HARD it",
			})
		}
		if len(m.self.Migrating)+len(m.self.Importing) > 0 {
			d.problems = append(d.problems, Problem{Node: m.Address, Reason: "has slots in the middle of a move", Fix: "finish or cancel the move (CLUSTER SETSLOT ... STABLE) first"})
		}
	}
	if d.problems != nil {
		return d
	}
	if formed(members) {
		return decideFormed(members, plan, replicasPerMaster)
	}

	for i, m := range members {
		if m.self.IsReplica() {
			d.problems = append(d.problems, Problem{Node: m.Address, Reason: fmt.Sprintf("is a replica of %s, but the nodes do not form a cluster", shortID(m.self.MasterID)), Fix: "CLUSTER RESET it if its data may go, or leave it out"})
			continue
		}
		if m.keys > 0 {
			d.problems = append(d.problems, Problem{Node: m.Address, Reason: fmt.Sprintf("holds %d keys; init never forms a cluster over data", m.keys), Fix: "FLUSHALL it if the data may go, or leave it out"})
		}
		if len(m.self.Slots) == 0 {
			continue
		}
		if s := plan.masterOf(i); s >= 0 && len(m.self.Slots) == 1 && m.self.Slots[0] == plan.Shards[s].Slots {
			continue // assigned by an interrupted init: kept
		}
		d.problems = append(d.problems, Problem{
			Node:   m.Address,
			Reason: fmt.Sprintf("owns %d slots (%s) while the nodes do not form a cluster: slots assigned by hand, or left from another cluster", countSlots(m.self.Slots), formatRanges(m.self.Slots)),
			Fix:    "remove them (CLUSTER DELSLOTSRANGE) or CLUSTER RESET HARD the node; init assigns all slots itself",
		})
	}
	d.action = initFresh
	d.warnings = plan.Warnings
	return d
}

// decideFormed handles nodes that already form one cluster serving every slot:
// nothing to do, or masters without slots to attach as replicas.
func decideFormed(members []*member, plan Plan, replicasPerMaster int) initDecision {
	d := initDecision{action: initNothing}
	var masters, free []int
	for i, m := range members {
		switch {
		case len(m.self.Slots) > 0:
			masters = append(masters, i)
		case !m.self.IsReplica():
			free = append(free, i)
		}
	}
	if len(free) == 0 {
		return d
	}
	if len(masters) != len(plan.Shards) {
		d.problems = append(d.problems, Problem{
			Reason: fmt.Sprintf("the nodes form a cluster with %d masters, and %d nodes with %s each make %d: adding or removing masters moves slots, which init does not do", len(masters), len(members), replicasEach(replicasPerMaster), len(plan.Shards)),
			Fix:    "give the cluster's nodes with its replicas per master",
		})
		return d
	}
	for _, i := range free {
		if members[i].keys > 0 {
			d.problems = append(d.problems, Problem{Node: members[i].Address, Reason: fmt.Sprintf("is a master without slots that holds %d keys; attaching it as a replica would drop them", members[i].keys), Fix: "FLUSHALL it if the data may go, or leave it out"})
		}
	}
	if d.problems != nil {
		return d
	}
	nodes := make([]Node, len(members))
	for i, m := range members {
		nodes[i] = m.Node
	}
	have := make([]int, len(masters))
	for k, mi := range masters {
		for _, m := range members {
			if m.self.IsReplica() && m.self.MasterID == members[mi].id {
				have[k]++
			}
		}
	}
	got := assignReplicas(nodes, masters, have, free, replicasPerMaster)
	shards := make([]Shard, len(masters))
	for k, mi := range masters {
		shards[k].Master = mi
	}
	for j, k := range got {
		if k < 0 {
			d.problems = append(d.problems, Problem{Node: members[free[j]].Address, Reason: fmt.Sprintf("is a master without slots, and every master already has %d replicas", replicasPerMaster), Fix: "leave it out, or give more replicas per master"})
			continue
		}
		d.attach = append(d.attach, attachment{replica: free[j], master: masters[k]})
		shards[k].Replicas = append(shards[k].Replicas, free[j])
	}
	d.warnings = placementWarnings(nodes, Plan{Shards: shards})
	d.action = initAttach
	return d
}

// formed reports whether the nodes form one cluster serving every slot: each knows
// every other, and their masters' own slots cover all 16384.
func formed(members []*member) bool {
	var covered [SlotCount]bool
	n := 0
	for _, m := range members {
		for _, peer := range members {
			if known, _ := m.knows(peer); !known {
				return false
			}
		}
		if m.self.IsReplica() {
			continue
		}
		for _, r := range m.self.Slots {
			for slot := r.First; slot <= r.Last; slot++ {
				if !covered[slot] {
					covered[slot] = true
					n++
				}
			}
		}
	}
	return n == SlotCount
}

// foreignPeers are the nodes m knows that are not among the given ones. A
// handshake entry (a MEET in progress, under a random ID) is foreign when it is
// not for the address of a given node.
func foreignPeers(m *member, members []*member) []NodeEntry {
	ids, addrs := map[string]bool{}, map[string]bool{}
	for _, g := range members {
		ids[g.id] = true
		addrs[g.addr()] = true
	}
	var out []NodeEntry
	for _, e := range m.view {
		if e.IsMyself() {
			continue
		}
		if e.HasFlag("handshake") {
			if !addrs[e.Addr()] {
				out = append(out, e)
			}
			continue
		}
		if !ids[e.ID] {
			out = append(out, e)
		}
	}
	return out
}

func describeEntries(es []NodeEntry) string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = shortID(e.ID) + " at " + e.Addr()
		if e.HasFlag("handshake") {
			s[i] = "a handshake with " + e.Addr()
		}
		if n := countSlots(e.Slots); n > 0 {
			s[i] += fmt.Sprintf(" with %d slots", n)
		}
	}
	return strings.Join(s, ", ")
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// staleNodes lists the nodes that know a given peer at an address other than its
// current one.
func staleNodes(members []*member) []string {
	var out []string
	for _, m := range members {
		for _, p := range members {
			if known, current := m.knows(p); known && !current {
				out = append(out, m.Address)
				break
			}
		}
	}
	return out
}

// form runs a fresh init: unique config epochs, a short node timeout while the
// empty nodes form, ADDSLOTSRANGE, MEET, REPLICATE, then waits for the cluster to
// settle and puts the node timeout back. Each step skips what is already done, so
// an interrupted run can be repeated.
func (s *session) form(ctx context.Context, plan Plan) error {
	for _, sh := range plan.Shards {
		reps := make([]string, len(sh.Replicas))
		for i, r := range sh.Replicas {
			reps[i] = describeNode(s.members[r].Node)
		}
		s.opts.progress("plan: master %s, slots %s (%d); replicas: %s", describeNode(s.members[sh.Master].Node), sh.Slots, sh.Slots.Len(), orNone(reps))
	}

	// Distinct config epochs, as valkey-cli sets them, spare the nodes resolving
	// epoch collisions one by one. Only a node that knows no other node takes one.
	for i, m := range s.members {
		if m.self.ConfigEpoch == 0 && len(m.view) == 1 {
			if err := m.do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", strconv.Itoa(i+1)); err != nil {
				return err
			}
		}
	}

	restore, err := s.shortenNodeTimeout(ctx)
	defer restore()
	if err != nil {
		return err
	}

	// Slots first, then MEET: a master counts itself in a minority until
	// slots exist, and reports ok only a rejoin delay after that; assigning
	// them at once starts that delay before the nodes meet.
	for _, sh := range plan.Shards {
		m := s.members[sh.Master]
		if len(m.self.Slots) == 1 && m.self.Slots[0] == sh.Slots {
			s.opts.progress("%s: already serves slots %s", m.Address, sh.Slots)
			continue
		}
		if err := m.do(ctx, "CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(sh.Slots.First), strconv.Itoa(sh.Slots.Last)); err != nil {
			return err
		}
		s.opts.progress("%s: assigned slots %s", m.Address, sh.Slots)
	}

	first := s.members[0]
	met := 0
	for _, m := range s.members[1:] {
		if _, current := first.knows(m); !current {
			if err := first.meet(ctx, m); err != nil {
				return err
			}
			met++
		}
	}
	s.opts.progress("%s: met %d nodes at their addresses", first.Address, met)
	if err := s.waitFor(ctx, fmt.Sprintf("all %d nodes know each other", len(s.members)), s.allKnown); err != nil {
		return err
	}

	var attach []attachment
	for _, sh := range plan.Shards {
		for _, r := range sh.Replicas {
			attach = append(attach, attachment{replica: r, master: sh.Master})
		}
	}
	for _, a := range attach {
		r, m := s.members[a.replica], s.members[a.master]
		if r.self.IsReplica() && r.self.MasterID == m.id {
			continue
		}
		if err := r.do(ctx, "CLUSTER", "REPLICATE", m.id); err != nil {
			return err
		}
		s.opts.progress("%s: replicates %s", r.Address, m.Address)
	}
	if err := s.waitFor(ctx, "every node reports cluster_state:ok and sees every replica attached", s.settled(s.expectedMasters(attach))); err != nil {
		return err
	}
	return restore()
}

// expectedMasters maps node IDs to the ID of the master they must follow ("" for
// a master), for the attachments given and every node that already is a replica.
func (s *session) expectedMasters(attach []attachment) map[string]string {
	want := map[string]string{}
	for _, m := range s.members {
		if m.self.IsReplica() {
			want[m.id] = m.self.MasterID
		}
	}
	for _, a := range attach {
		want[s.members[a.replica].id] = s.members[a.master].id
		want[s.members[a.master].id] = ""
	}
	return want
}

// allKnown is true when every node knows every other at its current address, and
// no MEET is still in its handshake.
func (s *session) allKnown() (bool, string) {
	for _, m := range s.members {
		for _, e := range m.view {
			if e.HasFlag("handshake") {
				return false, fmt.Sprintf("%s is still in a handshake with %s", m.Address, e.Addr())
			}
		}
		for _, p := range s.members {
			if _, current := m.knows(p); !current {
				return false, fmt.Sprintf("%s does not know %s at %s yet", m.Address, shortID(p.id), p.addr())
			}
		}
	}
	return true, ""
}

// settled returns the condition Init and Heal wait for: every node knows every
// other at its current address, reports cluster_state:ok with every slot
// assigned, and, for each node ID in want, sees that node as a replica of the
// given master (or as a master for "").
func (s *session) settled(want map[string]string) func() (bool, string) {
	return func() (bool, string) {
		if ok, why := s.allKnown(); !ok {
			return false, why
		}
		for _, m := range s.members {
			if st := m.clusterState(); st != StateOK {
				return false, fmt.Sprintf("%s reports cluster_state:%s", m.Address, st)
			}
			if n := m.info["cluster_slots_assigned"]; n != strconv.Itoa(SlotCount) {
				return false, fmt.Sprintf("%s sees %s slots assigned", m.Address, n)
			}
			for id, master := range want {
				e, ok := entryByID(m.view, id)
				if !ok {
					return false, fmt.Sprintf("%s does not know %s", m.Address, shortID(id))
				}
				if master == "" && e.IsReplica() {
					return false, fmt.Sprintf("%s sees %s as a replica, want a master", m.Address, shortID(id))
				}
				if master != "" && (!e.IsReplica() || e.MasterID != master) {
					return false, fmt.Sprintf("%s does not see %s as a replica of %s yet", m.Address, shortID(id), shortID(master))
				}
			}
		}
		return true, ""
	}
}

func describeNode(n Node) string {
	var where []string
	if n.Zone != "" {
		where = append(where, "zone "+n.Zone)
	}
	if n.Host != "" {
		where = append(where, "host "+n.Host)
	}
	if len(where) == 0 {
		return n.Address
	}
	return n.Address + " (" + strings.Join(where, ", ") + ")"
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
