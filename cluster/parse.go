package cluster

import (
	"fmt"
	"strconv"
	"strings"
)

// SlotCount is the number of hash slots of a Valkey cluster.
const SlotCount = 16384

// SlotRange is an inclusive range of hash slots.
type SlotRange struct {
	First int `json:"first"`
	Last  int `json:"last"`
}

// Len is the number of slots in the range.
func (r SlotRange) Len() int { return r.Last - r.First + 1 }

func (r SlotRange) String() string {
	if r.First == r.Last {
		return strconv.Itoa(r.First)
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

// countSlots is the number of slots in the ranges.
func countSlots(ranges []SlotRange) int {
	n := 0
	for _, r := range ranges {
		n += r.Len()
	}
	return n
}

// formatRanges joins the ranges as CLUSTER NODES prints them: "0-5460 5461".
func formatRanges(ranges []SlotRange) string {
	s := make([]string, len(ranges))
	for i, r := range ranges {
		s[i] = r.String()
	}
	return strings.Join(s, " ")
}

// NodeEntry is one line of CLUSTER NODES: one node as the answering node sees it.
type NodeEntry struct {
	ID string
	// IP, Port and BusPort are where the answering node reaches this node. IP is
	// empty when it knows no address (the noaddr flag).
	IP       string
	Port     int
	BusPort  int
	Hostname string
	Flags    []string
	// MasterID is the ID of the master a replica replicates, empty for a master.
	MasterID    string
	ConfigEpoch int64
	Connected   bool
	Slots       []SlotRange
	// Migrating and Importing are slots in the middle of a move, as
	// "[slot->-id]" and "[slot-<-id]"; a node shows them on its own line only.
	Migrating, Importing []SlotMove
}

// SlotMove is a slot in the middle of a move, and the node at the other end.
type SlotMove struct {
	Slot int
	Peer string
}

// HasFlag reports whether the entry carries a flag (myself, master, slave, fail?,
// fail, handshake, noaddr, nofailover, noflags).
func (e NodeEntry) HasFlag(flag string) bool {
	for _, f := range e.Flags {
		if f == flag {
			return true
		}
	}
	return false
}

// IsMyself reports whether the entry is the answering node itself.
func (e NodeEntry) IsMyself() bool { return e.HasFlag("myself") }

// IsReplica reports whether the entry is a replica.
func (e NodeEntry) IsReplica() bool { return e.HasFlag("slave") }

// Failing reports whether the answering node believes this node is down, or only
// suspects it (fail?).
func (e NodeEntry) Failing() bool { return e.HasFlag("fail") || e.HasFlag("fail?") }

// Addr is "ip:port", the address clients use.
func (e NodeEntry) Addr() string { return joinHostPort(e.IP, e.Port) }

// ParseNodes parses the reply of CLUSTER NODES.
func ParseNodes(s string) ([]NodeEntry, error) {
	var out []NodeEntry
	for i, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		e, err := parseNodeLine(line)
		if err != nil {
			return nil, fmt.Errorf("CLUSTER NODES line %d %q: %w", i+1, line, err)
		}
		out = append(out, e)
	}
	return out, nil
}

func parseNodeLine(line string) (NodeEntry, error) {
	f := strings.Fields(line)
	if len(f) < 8 {
		return NodeEntry{}, fmt.Errorf("want at least 8 fields, got %d", len(f))
	}
	e := NodeEntry{ID: f[0], Flags: strings.Split(f[2], ","), Connected: f[7] == "connected"}
	if err := e.parseAddress(f[1]); err != nil {
		return NodeEntry{}, err
	}
	if f[3] != "-" {
		e.MasterID = f[3]
	}
	epoch, err := strconv.ParseInt(f[6], 10, 64)
	if err != nil {
		return NodeEntry{}, fmt.Errorf("config epoch %q: %w", f[6], err)
	}
	e.ConfigEpoch = epoch
	for _, s := range f[8:] {
		if strings.HasPrefix(s, "[") {
			mv, dir, ok := parseMoving(s)
			if !ok {
				return NodeEntry{}, fmt.Errorf("slot in migration %q", s)
			}
			if dir == "->-" {
				e.Migrating = append(e.Migrating, mv)
			} else {
				e.Importing = append(e.Importing, mv)
			}
			continue
		}
		r, err := parseRange(s)
		if err != nil {
			return NodeEntry{}, err
		}
		e.Slots = append(e.Slots, r)
	}
	return e, nil
}

// parseAddress reads "ip:port@cport[,hostname]"; the ip is empty for a node of
// unknown address (":0@0"). IPv6 addresses are printed without brackets, so the
// port is after the last colon.
func (e *NodeEntry) parseAddress(s string) error {
	addr, bus, ok := strings.Cut(s, "@")
	if !ok {
		return fmt.Errorf("address %q: no @cport", s)
	}
	bus, e.Hostname, _ = strings.Cut(bus, ",")
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		return fmt.Errorf("address %q: no port", s)
	}
	var err error
	if e.Port, err = strconv.Atoi(addr[i+1:]); err != nil {
		return fmt.Errorf("address %q: port: %w", s, err)
	}
	if e.BusPort, err = strconv.Atoi(bus); err != nil {
		return fmt.Errorf("address %q: bus port: %w", s, err)
	}
	e.IP = strings.Trim(addr[:i], "[]")
	return nil
}

func parseRange(s string) (SlotRange, error) {
	a, b, isRange := strings.Cut(s, "-")
	first, err := strconv.Atoi(a)
	if err != nil {
		return SlotRange{}, fmt.Errorf("slot %q: %w", s, err)
	}
	last := first
	if isRange {
		if last, err = strconv.Atoi(b); err != nil {
			return SlotRange{}, fmt.Errorf("slot range %q: %w", s, err)
		}
	}
	if first < 0 || last < first || last >= SlotCount {
		return SlotRange{}, fmt.Errorf("slot range %q out of 0-%d", s, SlotCount-1)
	}
	return SlotRange{First: first, Last: last}, nil
}

// parseMoving reads "[slot->-id]" (migrating) or "[slot-<-id]" (importing).
func parseMoving(s string) (mv SlotMove, dir string, ok bool) {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	for _, d := range []string{"->-", "-<-"} {
		if a, peer, found := strings.Cut(s, d); found {
			n, err := strconv.Atoi(a)
			return SlotMove{Slot: n, Peer: peer}, d, err == nil && peer != ""
		}
	}
	return SlotMove{}, "", false
}

// ParseInfo parses "key:value" lines, the reply of CLUSTER INFO or INFO; comment
// lines ("# Cluster") are skipped.
func ParseInfo(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m
}

// myself is the answering node's own entry.
func myself(view []NodeEntry) (NodeEntry, bool) {
	for _, e := range view {
		if e.IsMyself() {
			return e, true
		}
	}
	return NodeEntry{}, false
}

// entryByID finds a node in a view by its ID.
func entryByID(view []NodeEntry, id string) (NodeEntry, bool) {
	for _, e := range view {
		if e.ID == id {
			return e, true
		}
	}
	return NodeEntry{}, false
}
