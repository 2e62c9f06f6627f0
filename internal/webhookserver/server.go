// Package webhookserver is serve's HTTPS server for the admission webhooks, and
// the plain-HTTP server of its health probes and metrics: controller-runtime's
// webhook.Server interface, with limits that a bad client cannot wear down.
//
// controller-runtime's DefaultServer has a 32 s header timeout, a 90 s idle
// timeout, no read or write timeout, Go's default TLS settings, and answers a
// body over its 7 MiB limit without the request's uid, which the API server
// reports as an invalid response. Server bounds every phase of a connection by
// what the API server itself waits (the webhook configurations' timeoutSeconds,
// at most 30 s), serves TLS 1.2+ with AEAD suites only, and answers an
// over-limit review with its uid and a message that says what to do. The reasons
// for each value are in docs/reliability.md, "Webhook server limits".
package webhookserver

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
)

// The webhook server's production limits. The API server gives up on a call at
// the webhook configuration's timeoutSeconds: 5 in the generated install, 10 when
// unset, at most 30 (admissionregistration/v1 refuses more).
const (
	// DefaultReadHeaderTimeout bounds the TLS handshake and then the request
	// headers: the API server sends both at once, in milliseconds; 10 s is the
	// API's default timeoutSeconds, after which the call is given up anyway.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultReadTimeout bounds a whole request, headers and body (per stream
	// over HTTP/2): 30 s, the largest timeoutSeconds an API server may wait.
	DefaultReadTimeout = 30 * time.Second
	// DefaultWriteTimeout bounds the time from the end of the headers to the
	// end of the answer: 30 s, past which no API server waits for it.
	DefaultWriteTimeout = 30 * time.Second
	// DefaultIdleTimeout closes a kept-alive connection after 90 s without a
	// request: the API server's client keeps idle connections 90 s (Go's
	// default transport), and closing first races its next request.
	DefaultIdleTimeout = 90 * time.Second
	// DefaultShutdownTimeout bounds the graceful shutdown: in-flight calls end
	// within timeoutSeconds (5 s in the generated install), and 15 s stays inside
	// the 20 s the generated Deployment's grace period leaves after the drain.
	DefaultShutdownTimeout = 15 * time.Second
	// DefaultMaxHeaderBytes bounds the request headers: the API server sends a
	// handful of short ones; Go's default is 1 MiB.
	DefaultMaxHeaderBytes = 64 << 10
	// DefaultMaxConcurrentStreams bounds the handlers one HTTP/2 connection can
	// run at once (Go's default is 250); the API server's client opens another
	// connection past it, and 100 is the least RFC 9113 recommends.
	DefaultMaxConcurrentStreams = 100
	// DefaultMaxReadFrameSize is HTTP/2's initial frame size, 16 KiB, which every
	// client supports: Go's default of 1 MiB lets each connection make the
	// server hold a 1 MiB frame buffer.
	DefaultMaxReadFrameSize = 16 << 10
	// DefaultSendPingTimeout has the server ping an HTTP/2 connection that sent
	// no whole frame for 10 s: a client trickling a frame cannot answer.
	DefaultSendPingTimeout = 10 * time.Second
	// DefaultPingTimeout closes a connection whose ping is not answered in 5 s;
	// Go's client (the API server's) answers at once.
	DefaultPingTimeout = 5 * time.Second
	// DefaultWriteByteTimeout closes an HTTP/2 connection on which nothing
	// could be written for 10 s: a client that stopped reading.
	DefaultWriteByteTimeout = 10 * time.Second
)

// CipherSuites are the TLS 1.2 suites served: ECDHE key exchange with an AEAD
// cipher, for ECDSA and RSA certificates. They are the TLS 1.2 suites HTTP/2
// allows, and Go's client, the API server's, offers them all by default. TLS 1.3
// suites are not configurable in Go and are all AEAD.
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

var log = logf.Log.WithName("webhook-server")

var _ webhook.Server = (*Server)(nil)

// Server serves the admission webhooks over TLS, HTTP/2 and HTTP/1.1, with the
// certificate in CertDir reloaded when its files change. Zero fields take the
// Default values above; tests make the timeouts short.
type Server struct {
	// Addr is the address to listen on, such as ":9443".
	Addr string
	// Listener, when set, is used instead of listening on Addr.
	Listener net.Listener
	// CertDir holds tls.crt and tls.key.
	CertDir string

	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	ShutdownTimeout   time.Duration
	MaxHeaderBytes    int
	// MaxBodyBytes is the body size from which a review is refused, as
	// controller-runtime's admission.Webhook refuses it (default MaxBodyBytes).
	MaxBodyBytes int64
	// HTTP2 settings; zero fields take the Default values.
	MaxConcurrentStreams int
	MaxReadFrameSize     int
	SendPingTimeout      time.Duration
	PingTimeout          time.Duration
	WriteByteTimeout     time.Duration

	mu      sync.Mutex
	mux     *http.ServeMux
	paths   map[string]bool
	started bool
	addr    net.Addr
}

// NeedLeaderElection is false: every replica serves the webhooks.
func (*Server) NeedLeaderElection() bool { return false }

// WebhookMux returns the mux the webhooks are registered on.
func (s *Server) WebhookMux() *http.ServeMux {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.muxLocked()
}

func (s *Server) muxLocked() *http.ServeMux {
	if s.mux == nil {
		s.mux = http.NewServeMux()
		s.paths = map[string]bool{}
	}
	return s.mux
}

// Register serves hook at path, behind the body limit and with
// controller-runtime's webhook metrics. It panics if path is registered twice,
// as controller-runtime's server does.
func (s *Server) Register(path string, hook http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mux := s.muxLocked()
	if s.paths[path] {
		panic(fmt.Errorf("can't register duplicate path: %v", path))
	}
	s.paths[path] = true
	mux.Handle(path, instrument(path, limitBody(s.maxBodyBytes(), hook)))
	log.Info("Registering webhook", "path", path)
}

func (s *Server) maxBodyBytes() int64 {
	if s.MaxBodyBytes > 0 {
		return s.MaxBodyBytes
	}
	return MaxBodyBytes
}

// tlsConfig is the server's TLS configuration, with getCertificate.
func tlsConfig(getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   CipherSuites,
		GetCertificate: getCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}

func (s *Server) httpServer(ctx context.Context, handler http.Handler) *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	return &http.Server{
		Handler: handler,
		// In-flight requests keep their context when the server shuts down, so
		// that a graceful shutdown lets them finish rather than fail them.
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ReadHeaderTimeout: cmp.Or(s.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		ReadTimeout:       cmp.Or(s.ReadTimeout, DefaultReadTimeout),
		WriteTimeout:      cmp.Or(s.WriteTimeout, DefaultWriteTimeout),
		IdleTimeout:       cmp.Or(s.IdleTimeout, DefaultIdleTimeout),
		MaxHeaderBytes:    cmp.Or(s.MaxHeaderBytes, DefaultMaxHeaderBytes),
		Protocols:         &protocols,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: cmp.Or(s.MaxConcurrentStreams, DefaultMaxConcurrentStreams),
			MaxReadFrameSize:     cmp.Or(s.MaxReadFrameSize, DefaultMaxReadFrameSize),
			SendPingTimeout:      cmp.Or(s.SendPingTimeout, DefaultSendPingTimeout),
			PingTimeout:          cmp.Or(s.PingTimeout, DefaultPingTimeout),
			WriteByteTimeout:     cmp.Or(s.WriteByteTimeout, DefaultWriteByteTimeout),
		},
		ErrorLog: httpErrorLog("webhook"),
	}
}

// Start serves until ctx is done, then shuts down gracefully within
// ShutdownTimeout and closes what is left.
func (s *Server) Start(ctx context.Context) error {
	watcher, err := certwatcher.New(filepath.Join(s.CertDir, "tls.crt"), filepath.Join(s.CertDir, "tls.key"))
	if err != nil {
		return fmt.Errorf("loading the serving certificate: %w", err)
	}
	go func() {
		if err := watcher.Start(ctx); err != nil {
			log.Error(err, "certificate watcher error")
		}
	}()
	ln := s.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", s.Addr); err != nil {
			return err
		}
	}
	srv := s.httpServer(ctx, s.WebhookMux())
	srv.TLSConfig = tlsConfig(watcher.GetCertificate)

	s.mu.Lock()
	s.started, s.addr = true, ln.Addr()
	s.mu.Unlock()
	log.Info("Serving webhook server", "addr", ln.Addr().String())
	return serveUntilDone(ctx, srv, cmp.Or(s.ShutdownTimeout, DefaultShutdownTimeout), func() error {
		return srv.ServeTLS(ln, "", "")
	})
}

// serveUntilDone runs serve, and shuts srv down when ctx is done: Shutdown waits
// for in-flight requests up to timeout, then Close ends the rest.
func serveUntilDone(ctx context.Context, srv *http.Server, timeout time.Duration, serve func() error) error {
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			log.Info("requests still in flight at the end of the graceful shutdown; closing their connections", "timeout", timeout.String(), "error", err.Error())
			_ = srv.Close()
		}
	}()
	if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	<-stopped
	return nil
}

// StartedChecker reports healthy once the server runs and completes a TLS
// handshake, as controller-runtime's server does.
func (s *Server) StartedChecker() healthz.Checker {
	return func(req *http.Request) error {
		s.mu.Lock()
		started, addr := s.started, s.addr
		s.mu.Unlock()
		if !started {
			return errors.New("webhook server has not been started yet")
		}
		ctx, cancel := context.WithTimeout(req.Context(), 5*time.Second)
		defer cancel()
		d := &tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // only checks that TLS is served
		conn, err := d.DialContext(ctx, "tcp", dialable(addr))
		if err != nil {
			return fmt.Errorf("webhook server is not reachable: %w", err)
		}
		return conn.Close()
	}
}

// dialable turns a listener's address into one to dial: an unspecified host
// (listening on every address) is dialed on loopback.
func dialable(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
