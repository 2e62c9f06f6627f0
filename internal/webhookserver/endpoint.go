package webhookserver

import (
	"bytes"
	"cmp"
	stdlog "log"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// The limits of the health probe and metrics endpoints. Their clients are the
// kubelet (one connection per probe, a 2 s probe timeout in the generated
// install) and Prometheus (a 10 s scrape timeout by default).
const (
	// DefaultEndpointReadHeaderTimeout bounds the request headers, which both
	// clients send at once.
	DefaultEndpointReadHeaderTimeout = 5 * time.Second
	// DefaultEndpointReadTimeout bounds a whole request; these are GETs.
	DefaultEndpointReadTimeout = 10 * time.Second
	// DefaultEndpointWriteTimeout bounds an answer: above Prometheus's 10 s
	// scrape timeout and the readiness check's 5 s TLS dial.
	DefaultEndpointWriteTimeout = 15 * time.Second
	// DefaultEndpointIdleTimeout bounds how long an idle kept-alive connection
	// holds one of MaxConns.
	DefaultEndpointIdleTimeout = 30 * time.Second
	// DefaultEndpointShutdownTimeout bounds the shutdown; answers are quick.
	DefaultEndpointShutdownTimeout = 5 * time.Second
	// DefaultEndpointMaxConns caps the connections open at once: the kubelet's
	// probes and a scraper or two need a few; past the cap new connections
	// wait in the kernel's accept queue.
	DefaultEndpointMaxConns = 16
)

// Endpoint is a plain-HTTP server of its own, on its own port, for the health
// probes or the metrics: what it is asked cannot slow the webhook port, and it
// holds at most MaxConns connections. Zero fields take the DefaultEndpoint
// values; tests make them small.
type Endpoint struct {
	// Name appears in logs.
	Name string
	// Addr is the address to listen on, such as ":8081".
	Addr string
	// Listener, when set, is used instead of listening on Addr.
	Listener net.Listener
	Handler  http.Handler

	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	ShutdownTimeout   time.Duration
	MaxHeaderBytes    int
	MaxConns          int
}

// Runnable listens on Addr now (so that a port in use fails at start, as
// controller-runtime's probe listener does) and returns the manager runnable that
// serves it. The manager starts a *manager.Server before the webhooks and
// caches, as it starts its own probe and metrics servers, and stops it last.
func (e Endpoint) Runnable() (*manager.Server, error) {
	ln := e.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", e.Addr); err != nil {
			return nil, err
		}
	}
	shutdown := cmp.Or(e.ShutdownTimeout, DefaultEndpointShutdownTimeout)
	return &manager.Server{
		Name: e.Name,
		Server: &http.Server{
			Handler:           e.Handler,
			ReadHeaderTimeout: cmp.Or(e.ReadHeaderTimeout, DefaultEndpointReadHeaderTimeout),
			ReadTimeout:       cmp.Or(e.ReadTimeout, DefaultEndpointReadTimeout),
			WriteTimeout:      cmp.Or(e.WriteTimeout, DefaultEndpointWriteTimeout),
			IdleTimeout:       cmp.Or(e.IdleTimeout, DefaultEndpointIdleTimeout),
			MaxHeaderBytes:    cmp.Or(e.MaxHeaderBytes, DefaultMaxHeaderBytes),
			ErrorLog:          httpErrorLog(e.Name),
		},
		Listener:        netutil.LimitListener(ln, cmp.Or(e.MaxConns, DefaultEndpointMaxConns)),
		ShutdownTimeout: &shutdown,
	}, nil
}

// ProbeHandler serves /healthz and /readyz, and each check under them
// (/readyz/webhook), with controller-runtime's healthz handler, as its manager
// does.
func ProbeHandler(healthzChecks, readyzChecks map[string]healthz.Checker) http.Handler {
	mux := http.NewServeMux()
	for path, checks := range map[string]map[string]healthz.Checker{"/healthz": healthzChecks, "/readyz": readyzChecks} {
		h := http.StripPrefix(path, &healthz.Handler{Checks: checks})
		mux.Handle(path, h)
		mux.Handle(path+"/", h)
	}
	return mux
}

// httpErrorLog sends net/http's error lines (TLS handshake errors, timeouts)
// to the log, at V(1): a flood of bad connections would otherwise flood it.
func httpErrorLog(server string) *stdlog.Logger {
	l := log.WithValues("server", server).V(1)
	return stdlog.New(writerFunc(func(p []byte) (int, error) {
		l.Info(string(bytes.TrimSpace(p)))
		return len(p), nil
	}), "", 0)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
