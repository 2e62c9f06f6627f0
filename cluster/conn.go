package cluster

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/valkey-io/valkey-go"
)

// dialTimeout bounds each connection attempt, within the operation's timeout.
const dialTimeout = 5 * time.Second

// pollInterval is how often a wait asks the nodes again.
const pollInterval = 200 * time.Millisecond

// member is one given node, its connection and what it last reported.
type member struct {
	Node
	ip   string
	port int

	client valkey.Client

	id   string
	view []NodeEntry
	self NodeEntry
	info map[string]string
	keys int64
}

// session holds one valkey-go client per node for one operation.
type session struct {
	opts    Options
	members []*member
}

// lookupIP resolves a host name; a variable so that a unit test can make a name
// resolve late.
var lookupIP = net.DefaultResolver.LookupIP

// resolveInterval is how often resolveWithin asks DNS again (a variable for the
// unit test).
var resolveInterval = time.Second

// resolveWithin waits, within ctx, until every host name of nodes resolves, and
// returns the problems of the addresses then (none when all resolve). A
// StatefulSet's pods are in DNS only once each has an IP, so an init that starts
// with its pods (the cluster-init Job) waits for them rather than failing at once.
// Any other problem of an address returns at once.
func resolveWithin(ctx context.Context, nodes []Node, opts Options) []Problem {
	reported := 0
	for {
		_, problems, unresolved := parseAddresses(ctx, nodes)
		if unresolved == 0 || unresolved < len(problems) {
			return problems
		}
		if unresolved != reported { // a line when the count changes, not every second
			opts.progress("waiting for %d of %d names to resolve (first: %s)", unresolved, len(nodes), problems[0].Node)
			reported = unresolved
		}
		select {
		case <-ctx.Done():
			return problems
		case <-time.After(resolveInterval):
		}
	}
}

// parseNodes checks the addresses and resolves host names. It changes nothing.
func parseNodes(ctx context.Context, nodes []Node) ([]*member, []Problem) {
	members, problems, _ := parseAddresses(ctx, nodes)
	return members, problems
}

// parseAddresses is parseNodes, and counts the problems that are names that did
// not resolve.
func parseAddresses(ctx context.Context, nodes []Node) (members []*member, problems []Problem, unresolved int) {
	if len(nodes) == 0 {
		return nil, []Problem{{Reason: "no nodes given", Fix: "give every node of the cluster as host:port"}}, 0
	}
	seen := map[string]bool{}
	members = make([]*member, 0, len(nodes))
	for _, n := range nodes {
		host, port, err := net.SplitHostPort(n.Address)
		p, perr := strconv.Atoi(port)
		if err != nil || host == "" || perr != nil || p <= 0 || p > 65535 {
			problems = append(problems, Problem{Node: n.Address, Reason: "not a host:port address", Fix: "write it as host:port, e.g. 10.0.0.5:6379"})
			continue
		}
		ip := host
		if net.ParseIP(host) == nil {
			ips, err := lookupIP(ctx, "ip", host)
			if err != nil || len(ips) == 0 {
				problems = append(problems, Problem{Node: n.Address, Reason: fmt.Sprintf("cannot resolve %s: %v", host, err), Fix: "check the name, or give the pod IP"})
				unresolved++
				continue
			}
			ip = preferIPv4(ips).String()
		}
		key := net.JoinHostPort(ip, port)
		if seen[key] {
			problems = append(problems, Problem{Node: n.Address, Reason: "given twice (" + key + ")", Fix: "give each node once"})
			continue
		}
		seen[key] = true
		members = append(members, &member{Node: n, ip: ip, port: p})
	}
	return members, problems, unresolved
}

func preferIPv4(ips []net.IP) net.IP {
	for _, ip := range ips {
		if ip.To4() != nil {
			return ip
		}
	}
	return ips[0]
}

// open connects to every node and reads what each reports. When a node cannot be
// reached or asked, it returns a *Refusal naming each such node; nothing has been
// sent that changes a node.
func open(ctx context.Context, op string, nodes []Node, opts Options) (*session, error) {
	members, problems := parseNodes(ctx, nodes)
	if err := refuse(op, problems); err != nil {
		return nil, err
	}
	s := &session{opts: opts, members: members}
	errs := s.each(ctx, func(ctx context.Context, m *member) error { return m.connect(ctx, opts) })
	for i, err := range errs {
		if err != nil {
			problems = append(problems, connProblem(s.members[i].Address, err, opts))
		}
	}
	if len(problems) == 0 {
		errs = s.each(ctx, func(ctx context.Context, m *member) error { return m.refresh(ctx) })
		for i, err := range errs {
			if err != nil {
				problems = append(problems, askProblem(s.members[i].Address, err))
			}
		}
	}
	if len(problems) > 0 {
		s.close()
		return nil, refuse(op, problems)
	}
	s.checkDuplicateIDs(&problems)
	if len(problems) > 0 {
		s.close()
		return nil, refuse(op, problems)
	}
	return s, nil
}

// checkDuplicateIDs refuses two addresses that reach the same node.
func (s *session) checkDuplicateIDs(problems *[]Problem) {
	byID := map[string]string{}
	for _, m := range s.members {
		if other, ok := byID[m.id]; ok {
			*problems = append(*problems, Problem{Node: m.Address, Reason: fmt.Sprintf("is the same node as %s (ID %s)", other, m.id), Fix: "give each node once"})
			continue
		}
		byID[m.id] = m.Address
	}
}

func (s *session) close() {
	for _, m := range s.members {
		if m.client != nil {
			m.client.Close()
		}
	}
}

// each runs f on every member at once and returns the errors by member index.
func (s *session) each(ctx context.Context, f func(context.Context, *member) error) []error {
	errs := make([]error, len(s.members))
	var wg sync.WaitGroup
	for i, m := range s.members {
		wg.Go(func() { errs[i] = f(ctx, m) })
	}
	wg.Wait()
	return errs
}

// refreshAll asks every node again; the first error names its node.
func (s *session) refreshAll(ctx context.Context) error {
	for i, err := range s.each(ctx, func(ctx context.Context, m *member) error { return m.refresh(ctx) }) {
		if err != nil {
			return fmt.Errorf("node %s: %w", s.members[i].Address, err)
		}
	}
	return nil
}

// byID finds the given node of an ID.
func (s *session) byID(id string) *member {
	for _, m := range s.members {
		if m.id == id {
			return m
		}
	}
	return nil
}

// connect opens the node's client. valkey-go dials at once, authenticating with
// HELLO, so a wrong password or TLS setup fails here.
func (m *member) connect(ctx context.Context, opts Options) error {
	timeout := dialTimeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = max(time.Until(d), time.Millisecond)
	}
	tlsConfig := opts.TLS
	if tlsConfig != nil && m.ServerName != "" {
		tlsConfig = tlsConfig.Clone()
		tlsConfig.ServerName = m.ServerName
	}
	c, err := valkey.NewClient(valkey.ClientOption{
		InitAddress:       []string{m.Address},
		ForceSingleClient: true,
		DisableCache:      true,
		DisableRetry:      true,
		Password:          opts.Password,
		TLSConfig:         tlsConfig,
		Dialer:            net.Dialer{Timeout: timeout},
		ConnWriteTimeout:  10 * time.Second,
		ClientName:        "valkey-webhook-cluster",
	})
	if err != nil {
		if c != nil {
			c.Close()
		}
		return err
	}
	m.client = c
	// The first command proves the connection: a server that closes it (TLS on one
	// side only) fails here.
	if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
		c.Close()
		m.client = nil
		return err
	}
	return nil
}

// refresh reads the node's ID, its view of the cluster, its CLUSTER INFO and its
// key count.
func (m *member) refresh(ctx context.Context) error {
	c := m.client
	id, err := c.Do(ctx, c.B().ClusterMyid().Build()).ToString()
	if err != nil {
		return err
	}
	nodesText, err := text(c.Do(ctx, c.B().ClusterNodes().Build()))
	if err != nil {
		return err
	}
	view, err := ParseNodes(nodesText)
	if err != nil {
		return err
	}
	self, ok := myself(view)
	if !ok {
		return errors.New("CLUSTER NODES has no myself entry")
	}
	infoText, err := text(c.Do(ctx, c.B().ClusterInfo().Build()))
	if err != nil {
		return err
	}
	keys, err := c.Do(ctx, c.B().Dbsize().Build()).AsInt64()
	if err != nil {
		return err
	}
	m.id, m.view, m.self, m.info, m.keys = id, view, self, ParseInfo(infoText), keys
	return nil
}

// text reads a bulk or verbatim string; over RESP3, CLUSTER NODES and CLUSTER
// INFO answer verbatim strings, which carry a "txt:" format prefix.
func text(r valkey.ValkeyResult) (string, error) {
	s, err := r.ToString()
	if err != nil {
		return "", err
	}
	return strings.TrimPrefix(s, "txt:"), nil
}

// do sends one command that changes the node, naming the node and the command in
// the error.
func (m *member) do(ctx context.Context, args ...string) error {
	c := m.client
	if err := c.Do(ctx, c.B().Arbitrary(args...).Build()).Error(); err != nil {
		return fmt.Errorf("node %s: %s: %w", m.Address, strings.Join(args, " "), err)
	}
	return nil
}

// meet sends CLUSTER MEET for peer's current address.
func (m *member) meet(ctx context.Context, peer *member) error {
	bus := peer.self.BusPort
	if bus == 0 {
		bus = peer.port + 10000
	}
	return m.do(ctx, "CLUSTER", "MEET", peer.ip, strconv.Itoa(peer.port), strconv.Itoa(bus))
}

// addr is the node's current address as the cluster sees it: resolved IP and port.
func (m *member) addr() string { return joinHostPort(m.ip, m.port) }

func joinHostPort(ip string, port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }

// knows reports how this node knows peer: known at all, and at peer's current
// address.
func (m *member) knows(peer *member) (known, current bool) {
	if m == peer {
		return true, true
	}
	e, ok := entryByID(m.view, peer.id)
	if !ok {
		return false, false
	}
	return true, e.IP == peer.ip && e.Port == peer.port
}

// clusterState is cluster_state as the node last reported it.
func (m *member) clusterState() string { return m.info["cluster_state"] }

// connProblem explains why a node could not be connected to, and what to do.
func connProblem(addr string, err error, opts Options) Problem {
	msg := err.Error()
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	switch {
	case strings.Contains(msg, "WRONGPASS"):
		return Problem{Node: addr, Reason: "wrong password (" + msg + ")", Fix: "give the password of the cluster's auth Secret (--password-file)"}
	case strings.Contains(msg, "NOAUTH"):
		return Problem{Node: addr, Reason: "the node requires a password and none was given", Fix: "give the password (--password-file)"}
	case strings.Contains(msg, "without any password configured") || strings.Contains(msg, "no password is set"):
		return Problem{Node: addr, Reason: "a password was given but the node has none", Fix: "leave the password out for this cluster"}
	case errors.As(err, &unknownCA):
		return Problem{Node: addr, Reason: "its TLS certificate is not signed by the given CA (" + msg + ")", Fix: "give the cluster's CA (--tls-ca)"}
	case errors.As(err, &hostErr):
		return Problem{Node: addr, Reason: "its TLS certificate does not name the address (" + msg + ")", Fix: "give the node by a name its certificate holds"}
	case strings.Contains(msg, "certificate required") || strings.Contains(msg, "bad certificate"):
		return Problem{Node: addr, Reason: "the node requires a client certificate (tls-auth-clients) (" + msg + ")", Fix: "give a client certificate signed by the cluster's CA (--tls-cert, --tls-key)"}
	case strings.Contains(msg, "first record does not look like a TLS handshake"):
		return Problem{Node: addr, Reason: "the node does not serve TLS", Fix: "leave the TLS options out for this cluster"}
	case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed):
		switch {
		case opts.TLS == nil:
			return Problem{Node: addr, Reason: "the node closed the connection (" + msg + "); it may serve TLS only", Fix: "give the cluster's CA (--tls-ca)"}
		case len(opts.TLS.Certificates) == 0 && opts.TLS.GetClientCertificate == nil:
			return Problem{Node: addr, Reason: "the node closed the TLS connection (" + msg + "); it may require a client certificate (tls-auth-clients)", Fix: "give a client certificate signed by the cluster's CA (--tls-cert, --tls-key)"}
		}
		return Problem{Node: addr, Reason: "the node closed the TLS connection (" + msg + ")", Fix: "check that the node serves TLS and trusts the client certificate's CA"}
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, context.DeadlineExceeded) {
		return Problem{Node: addr, Reason: "not reachable (" + msg + ")", Fix: "check the address and that the node is running"}
	}
	return Problem{Node: addr, Reason: "cannot connect (" + msg + ")"}
}

// askProblem explains why a connected node could not report its cluster view.
func askProblem(addr string, err error) Problem {
	if strings.Contains(err.Error(), "cluster support disabled") {
		return Problem{Node: addr, Reason: "not in cluster mode", Fix: "run it with cluster-enabled yes (the hardened valkey.conf does)"}
	}
	return Problem{Node: addr, Reason: "cannot read its cluster state (" + err.Error() + ")"}
}

// waitFor polls the nodes until done reports true, the context ends, or a read
// fails for longer than the wait. what says what it waits for.
func (s *session) waitFor(ctx context.Context, what string, done func() (bool, string)) error {
	start := time.Now()
	last := ""
	for {
		err := s.refreshAll(ctx)
		if err == nil {
			ok, why := done()
			if ok {
				s.opts.progress("%s (%.1fs)", what, time.Since(start).Seconds())
				return nil
			}
			last = why
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up after %.0fs waiting until %s: %s", time.Since(start).Seconds(), what, last)
		case <-time.After(pollInterval):
		}
	}
}
