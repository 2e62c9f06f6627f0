package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// tlsFileConfigs are the configs that name the files a node's TLS context is
// built from. Valkey marks them volatile: a CONFIG SET to the value they
// already have reads the files again and rebuilds the context, so new
// connections get what the files hold now, and connections already open keep
// theirs. When the files do not load (a certificate with another key), Valkey
// refuses the CONFIG SET and keeps the context it had.
var tlsFileConfigs = []string{
	"tls-cert-file", "tls-key-file", "tls-ca-cert-file", "tls-ca-cert-dir",
	"tls-client-cert-file", "tls-client-key-file",
}

// TLSReload is what ReloadTLS found and did at one node.
type TLSReload struct {
	Address string `json:"address"`
	// Before is the leaf certificate the node presented when first asked; nil
	// when the handshake failed (Error says why).
	Before *x509.Certificate `json:"-"`
	// After is the leaf it presented once ReloadTLS was done with it: Before
	// when nothing was sent.
	After *x509.Certificate `json:"-"`
	// Sent is true when the node accepted a CONFIG SET of its TLS files; it
	// serves the wanted certificate only if its files held it (After says).
	Sent bool `json:"sent"`
	// Refused is why the wanted certificate was not loaded at this node, when it
	// does not fit it (it does not name the node, or is not valid now); nothing
	// was sent.
	Refused string `json:"refused,omitempty"`
	// Error is why the node could not be asked or reloaded.
	Error string `json:"error,omitempty"`
}

// Serves reports whether the node presented want last.
func (r TLSReload) Serves(want *x509.Certificate) bool { return sameCert(r.After, want) }

// ReloadTLS makes every node serve want, the leaf of the certificate its TLS
// files should hold (a renewed one), without a restart. It reads the leaf each
// node presents in a TLS handshake, verified with opts.TLS against the node's
// ServerName (or the host of its Address); a node that presents another one is
// sent CONFIG SET of its TLS file configs to the paths they have, which makes
// Valkey read the files again, and is asked again. A node whose files do not
// hold want yet (a mounted Secret the kubelet has not updated) goes on serving
// what it did: call again later. Nothing is sent to a node that serves want
// already, nor to one want does not fit.
//
// The error is only for addresses that cannot be used at all, or for Options
// without TLS; each node's outcome, in the order given, says the rest.
func ReloadTLS(ctx context.Context, nodes []Node, opts Options, want *x509.Certificate) ([]TLSReload, error) {
	if opts.TLS == nil {
		return nil, errors.New("reload TLS: no TLS options given")
	}
	if want == nil {
		return nil, errors.New("reload TLS: no certificate given")
	}
	ctx, cancel := context.WithTimeout(ctx, opts.timeout())
	defer cancel()
	members, problems := parseNodes(ctx, nodes)
	if err := refuse("reload TLS", problems); err != nil {
		return nil, err
	}
	s := &session{opts: opts, members: members}
	defer s.close()
	served := make([]servedCert, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Go(func() {
			cert, err := presentedLeaf(ctx, m.Node, opts.TLS)
			served[i] = servedCert{Name: serverName(m.Node), Cert: cert, Err: err}
		})
	}
	wg.Wait()

	actions := decideReload(served, want, time.Now())
	out := make([]TLSReload, len(members))
	for i, m := range members {
		out[i] = TLSReload{Address: m.Address, Before: served[i].Cert, After: served[i].Cert}
		switch a := actions[i]; a.kind {
		case reloadUnasked:
			out[i].Error = connProblem(m.Address, served[i].Err, opts).String()
		case reloadRefused:
			out[i].Refused = a.why
		case reloadNow:
			wg.Go(func() { m.reloadTLS(ctx, opts, &out[i]) })
		}
	}
	wg.Wait()
	return out, nil
}

// reloadTLS sends the node the CONFIG SET that reads its TLS files again, and
// records what it presents then.
func (m *member) reloadTLS(ctx context.Context, opts Options, out *TLSReload) {
	if err := m.connect(ctx, opts); err != nil {
		out.Error = connProblem(m.Address, err, opts).String()
		return
	}
	if err := m.reloadTLSFiles(ctx); err != nil {
		out.Error = err.Error()
	} else {
		out.Sent = true
	}
	after, err := presentedLeaf(ctx, m.Node, opts.TLS)
	out.After = after
	if err != nil && out.Error == "" {
		out.Error = "after the reload: " + connProblem(m.Address, err, opts).String()
	}
}

// servedCert is the leaf one node presented, or why none was read, and the name
// it was verified against.
type servedCert struct {
	Name string
	Cert *x509.Certificate
	Err  error
}

// reloadKind is what ReloadTLS does at one node.
type reloadKind int

const (
	// reloadNone: the node serves the wanted certificate already.
	reloadNone reloadKind = iota
	// reloadNow: it serves another one, and the wanted one fits it.
	reloadNow
	// reloadUnasked: its handshake failed; nothing to compare, nothing sent.
	reloadUnasked
	// reloadRefused: it serves another one, but the wanted one does not fit
	// it; loading it would cut the node off.
	reloadRefused
)

type reloadAction struct {
	kind reloadKind
	why  string
}

// decideReload says, for each node, what ReloadTLS does, given the leaf each
// presented and the wanted one, at time now. The wanted certificate is loaded
// only where it names the node (the name its certificate is verified against)
// and is valid now: the chain is verified by the handshake after the reload.
func decideReload(served []servedCert, want *x509.Certificate, now time.Time) []reloadAction {
	out := make([]reloadAction, len(served))
	for i, s := range served {
		switch {
		case s.Err != nil || s.Cert == nil:
			out[i] = reloadAction{kind: reloadUnasked}
		case sameCert(s.Cert, want):
			out[i] = reloadAction{kind: reloadNone}
		case now.Before(want.NotBefore):
			out[i] = reloadAction{kind: reloadRefused, why: "the certificate is not valid before " + want.NotBefore.UTC().Format(time.RFC3339)}
		case now.After(want.NotAfter):
			out[i] = reloadAction{kind: reloadRefused, why: "the certificate expired at " + want.NotAfter.UTC().Format(time.RFC3339)}
		case want.VerifyHostname(s.Name) != nil:
			out[i] = reloadAction{kind: reloadRefused, why: "the certificate does not name " + s.Name}
		default:
			out[i] = reloadAction{kind: reloadNow}
		}
	}
	return out
}

func sameCert(a, b *x509.Certificate) bool {
	return a != nil && b != nil && bytes.Equal(a.Raw, b.Raw)
}

// serverName is the name a node's certificate is verified against.
func serverName(n Node) string {
	if n.ServerName != "" {
		return n.ServerName
	}
	host, _, err := net.SplitHostPort(n.Address)
	if err != nil {
		return n.Address
	}
	return host
}

// presentedLeaf completes a TLS handshake with the node, verifying its
// certificate as every connection does, and returns the leaf it presented.
func presentedLeaf(ctx context.Context, n Node, cfg *tls.Config) (*x509.Certificate, error) {
	cfg = cfg.Clone()
	cfg.ServerName = serverName(n)
	timeout := dialTimeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = max(time.Until(d), time.Millisecond)
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", n.Address)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, errors.New("the node presented no certificate")
	}
	return certs[0], nil
}

// reloadTLSFiles sets every TLS file config the node has to the value it has,
// in one CONFIG SET, so that it reads the files again.
func (m *member) reloadTLSFiles(ctx context.Context) error {
	c := m.client
	kv, err := c.Do(ctx, c.B().ConfigGet().Parameter(tlsFileConfigs...).Build()).AsStrMap()
	if err != nil {
		return fmt.Errorf("node %s: CONFIG GET of its TLS files: %w", m.Address, err)
	}
	if kv["tls-cert-file"] == "" || kv["tls-key-file"] == "" {
		return fmt.Errorf("node %s: has no tls-cert-file or tls-key-file to read again", m.Address)
	}
	args := []string{"CONFIG", "SET"}
	for _, name := range tlsFileConfigs {
		if v := kv[name]; v != "" {
			args = append(args, name, v)
		}
	}
	return m.do(ctx, args...)
}
