package cluster

import (
	"context"
	"slices"
	"strconv"
)

// Status asks every node how it sees itself and the cluster. A node that cannot be
// reached or asked is reported with its Error; the error return is only for
// addresses that cannot be used at all.
func Status(ctx context.Context, nodes []Node, opts Options) (Report, error) {
	ctx, cancel := context.WithTimeout(ctx, opts.timeout())
	defer cancel()
	members, problems := parseNodes(ctx, nodes)
	if err := refuse("status", problems); err != nil {
		return Report{}, err
	}
	s := &session{opts: opts, members: members}
	defer s.close()
	errs := s.each(ctx, func(ctx context.Context, m *member) error {
		if err := m.connect(ctx, opts); err != nil {
			return errString(connProblem(m.Address, err, opts).String())
		}
		if err := m.refresh(ctx); err != nil {
			return errString(askProblem(m.Address, err).String())
		}
		return nil
	})
	return statusOf(s.members, errs), nil
}

type errString string

func (e errString) Error() string { return string(e) }

// statusOf summarizes what the members last reported; errs[i] non-nil marks
// member i as not asked.
func statusOf(members []*member, errs []error) Report {
	st := Report{State: StateOK}
	var covered [SlotCount]bool
	failing := map[string]bool{}
	for i, m := range members {
		ns := NodeReport{Address: m.Address, Zone: m.Zone, Host: m.Host}
		if errs != nil && errs[i] != nil {
			ns.Error = errs[i].Error()
			st.State = StateFail
			st.Nodes = append(st.Nodes, ns)
			continue
		}
		self := m.self
		ns.ID = m.id
		ns.Role = RoleMaster
		if self.IsReplica() {
			ns.Role = RoleReplica
			ns.MasterID = self.MasterID
			if master := memberByID(members, self.MasterID); master != nil {
				ns.MasterAddress = master.Address
			} else if e, ok := entryByID(m.view, self.MasterID); ok {
				ns.MasterAddress = e.Addr()
			}
			st.Replicas++
		} else {
			st.Masters++
			for _, r := range self.Slots {
				for slot := r.First; slot <= r.Last; slot++ {
					covered[slot] = true
				}
			}
		}
		ns.Slots = countSlots(self.Slots)
		ns.SlotRanges = formatRanges(self.Slots)
		for _, f := range self.Flags {
			if f != "myself" {
				ns.Flags = append(ns.Flags, f)
			}
		}
		ns.State = m.clusterState()
		if n, err := strconv.Atoi(m.info["cluster_known_nodes"]); err == nil {
			ns.KnownNodes = n
		} else {
			ns.KnownNodes = len(m.view)
		}
		for _, e := range m.view {
			if e.IsMyself() {
				continue
			}
			if e.Failing() {
				ns.FailingPeers++
			}
			if e.HasFlag("fail") {
				name := e.Addr()
				if peer := memberByID(members, e.ID); peer != nil {
					name = peer.Address
				}
				if !failing[name] {
					failing[name] = true
					st.Failing = append(st.Failing, name)
				}
			}
			if peer := memberByID(members, e.ID); peer != nil && (e.IP != peer.ip || e.Port != peer.port) {
				ns.StalePeers++
			}
		}
		// A node that knows a peer by an old address does not reach it, even when
		// it reports ok: after a full restart, the old addresses may already
		// belong to other pods.
		if ns.State != StateOK || ns.StalePeers > 0 {
			st.State = StateFail
		}
		st.Nodes = append(st.Nodes, ns)
	}
	for _, c := range covered {
		if c {
			st.SlotsCovered++
		}
	}
	if st.SlotsCovered < SlotCount {
		st.State = StateFail
	}
	// Only when every given node answered: one that did not has no known ID,
	// and a given node that is down must never pass for a departed one.
	if !slices.ContainsFunc(errs, func(err error) bool { return err != nil }) {
		st.Departed = departed(members)
	}
	return st
}

func memberByID(members []*member, id string) *member {
	for _, m := range members {
		if m.id != "" && m.id == id {
			return m
		}
	}
	return nil
}
