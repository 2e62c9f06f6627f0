// Package cluster forms, heals and reports Valkey clusters over valkey-go: Init
// meets empty nodes, spreads the 16384 slots over the masters and attaches the
// replicas away from their master's zone; Heal re-meets nodes that know their
// peers by stale addresses after a full restart; Status reports every node's view.
//
// Every operation first connects to every given node and checks what it finds;
// when the whole operation cannot succeed it returns a *Refusal, naming each node
// at fault and what to do, and has changed nothing. TLS and auth apply to every
// connection. The package knows nothing of Kubernetes objects: a Node carries the
// zone and Kubernetes node name the caller found for it.
package cluster

import (
	"crypto/tls"
	"fmt"
	"strings"
	"time"
)

// Node is one Valkey server of the cluster.
type Node struct {
	// Address is "host:port" of the client port. A host name is resolved to the IP
	// the cluster meets the node at; TLS verifies the server certificate against
	// the host as given.
	Address string `json:"address"`
	// Zone and Host (the Kubernetes node name) are optional; Init keeps replicas
	// out of their master's zone, or failing that off its Kubernetes node.
	Zone string `json:"zone,omitempty"`
	Host string `json:"host,omitempty"`
	// ServerName, when set, is the name TLS verifies the server certificate
	// against instead of Address's host: a pod reached at its IP, with a
	// certificate for its DNS name.
	ServerName string `json:"serverName,omitempty"`
}

// DefaultTimeout bounds an operation when Options.Timeout is zero.
const DefaultTimeout = 2 * time.Minute

// Options apply to every operation.
type Options struct {
	// Password for AUTH (requirepass); empty: no AUTH.
	Password string
	// TLS, when set, is used for every connection: RootCAs for the cluster's CA,
	// Certificates when the nodes run with tls-auth-clients.
	TLS *tls.Config
	// Timeout bounds the whole operation, waits included; zero: DefaultTimeout.
	Timeout time.Duration
	// ReplicasPerMaster is the number of replicas of each master Init forms.
	ReplicasPerMaster int
	// Progress, when set, receives one line per step.
	Progress func(string)
}

func (o Options) timeout() time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	return DefaultTimeout
}

func (o Options) progress(format string, args ...any) {
	if o.Progress != nil {
		o.Progress(fmt.Sprintf(format, args...))
	}
}

// Problem is one reason an operation refused to start.
type Problem struct {
	// Node is the address of the node at fault; empty when the problem is the set
	// of nodes as a whole.
	Node   string `json:"node,omitempty"`
	Reason string `json:"reason"`
	Fix    string `json:"fix,omitempty"`
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Node != "" {
		b.WriteString("node " + p.Node + ": ")
	}
	b.WriteString(p.Reason)
	if p.Fix != "" {
		b.WriteString("; " + p.Fix)
	}
	return b.String()
}

// Refusal is returned when an operation refuses to start: nothing was changed.
type Refusal struct {
	Op       string
	Problems []Problem
}

func (r *Refusal) Error() string {
	lines := make([]string, len(r.Problems))
	for i, p := range r.Problems {
		lines[i] = p.String()
	}
	if len(lines) == 1 {
		return fmt.Sprintf("%s refused, nothing changed: %s", r.Op, lines[0])
	}
	return fmt.Sprintf("%s refused, nothing changed:\n  %s", r.Op, strings.Join(lines, "\n  "))
}

// Nodes lists the addresses of the nodes at fault, in order.
func (r *Refusal) Nodes() []string {
	var out []string
	for _, p := range r.Problems {
		if p.Node != "" {
			out = append(out, p.Node)
		}
	}
	return out
}

func refuse(op string, problems []Problem) error {
	if len(problems) == 0 {
		return nil
	}
	return &Refusal{Op: op, Problems: problems}
}

// Result is what Init, Heal, Drain or Rebalance did.
type Result struct {
	// Changed is false when the nodes were already as asked, and nothing was sent
	// that changes them.
	Changed bool `json:"changed"`
	// Plan is the layout Init formed or completed; nil otherwise.
	Plan *Plan `json:"-"`
	// Warnings are placements that could not be kept apart, and nodes left alone.
	Warnings []string `json:"warnings,omitempty"`
	// Moves are the slot ranges Drain or Rebalance moved, in order.
	Moves []Move `json:"moves,omitempty"`
	// Forgotten are the IDs of the departed nodes Forget removed.
	Forgotten []string `json:"forgotten,omitempty"`
	// Status is the cluster as it stands at the end.
	Status Report `json:"status"`
}

// Report is the cluster as its nodes report it.
type Report struct {
	// State is "ok" when every node answers, reports cluster_state:ok and knows
	// its given peers at their current addresses, and all 16384 slots are
	// served; otherwise "fail".
	State        string `json:"state"`
	SlotsCovered int    `json:"slotsCovered"`
	Masters      int    `json:"masters"`
	Replicas     int    `json:"replicas"`
	// Failing lists the nodes some node flags fail (not only fail?), by the
	// address given, or as known to that node when not given.
	Failing []string `json:"failing,omitempty"`
	// Departed are the IDs of nodes the given ones still know, which all of
	// them flag fail, serving no slot and replicated by none: the nodes of pods
	// scaled away, for Forget.
	Departed []string     `json:"departed,omitempty"`
	Nodes    []NodeReport `json:"nodes"`
}

// OK reports whether the cluster is healthy: see Report.State.
func (s Report) OK() bool { return s.State == StateOK }

// Cluster states.
const (
	StateOK   = "ok"
	StateFail = "fail"
)

// Roles of a node.
const (
	RoleMaster  = "master"
	RoleReplica = "replica"
)

// NodeReport is one node as it reports itself.
type NodeReport struct {
	Address string `json:"address"`
	Zone    string `json:"zone,omitempty"`
	Host    string `json:"host,omitempty"`
	ID      string `json:"id,omitempty"`
	// Role is master or replica.
	Role string `json:"role,omitempty"`
	// MasterID and MasterAddress name the master of a replica.
	MasterID      string `json:"masterId,omitempty"`
	MasterAddress string `json:"masterAddress,omitempty"`
	Slots         int    `json:"slots"`
	SlotRanges    string `json:"slotRanges,omitempty"`
	// Flags are the node's flags as it sees itself, without "myself".
	Flags []string `json:"flags,omitempty"`
	// State is cluster_state as this node reports it.
	State      string `json:"state,omitempty"`
	KnownNodes int    `json:"knownNodes"`
	// StalePeers counts the given nodes this node knows at an address other than
	// the one they are at now: after a full restart on new addresses, what Heal
	// fixes.
	StalePeers int `json:"stalePeers"`
	// FailingPeers counts the nodes this node flags fail or fail?.
	FailingPeers int `json:"failingPeers"`
	// Error is why the node could not be asked.
	Error string `json:"error,omitempty"`
}
