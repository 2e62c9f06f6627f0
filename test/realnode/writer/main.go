// Command writer is the availability benchmark's client (make bench-availability),
// run in a pod so that the nodes' DNS names resolve through CoreDNS. W writers
// (-writers) write keys k:<writer>:<n>, spread over all slots, through one
// valkey-go cluster client, each with one write in flight; a write is retried
// every -retry until it succeeds. Per phase it measures the longest stall (from a
// write's first attempt to its success), the failed attempts and the writes, and
// reads back every key the phase wrote. The harness switches the phases from
// outside over HTTP (-listen; see Handler).
//
// With -ca the client speaks TLS and verifies every node's certificate: the chain
// against the CA, and the name against the host it dials, as announced by the
// cluster (the pod's DNS name when the nodes announce hostnames). Without -ca it
// speaks plain TCP to whatever the nodes announce.
//
//	writer -seed cache-0.cache-headless.ns.svc.cluster.local:6379 -ca /tls/ca.crt -password-file /auth/password
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/valkey-io/valkey-go"
)

func main() {
	seeds := flag.String("seed", "", "host:port of one node or more, comma-separated")
	caFile := flag.String("ca", "", "CA certificate (PEM) the nodes' certificates chain to; empty: no TLS")
	certFile := flag.String("cert", "", "client certificate (PEM), for tls.authClients")
	keyFile := flag.String("key", "", "client certificate's key (PEM)")
	passwordFile := flag.String("password-file", "", "file holding the password; empty: no auth")
	listen := flag.String("listen", ":8080", "address of the control endpoint")
	first := flag.String("phase", "warmup", "name of the first phase")
	connectTimeout := flag.Duration("connect-timeout", 2*time.Minute, "how long to try the first connection")
	var opts Options
	flag.IntVar(&opts.Writers, "writers", 8, "writers, each with one write in flight")
	flag.DurationVar(&opts.Retry, "retry", 10*time.Millisecond, "wait between a failed attempt and the next")
	flag.DurationVar(&opts.AttemptTimeout, "attempt-timeout", time.Second, "bound of one attempt")
	flag.DurationVar(&opts.Pause, "pause", 5*time.Millisecond, "each writer's wait between a write and its next")
	flag.DurationVar(&opts.ReadBackTimeout, "read-back-timeout", 3*time.Minute, "bound of a phase's read-back")
	flag.Parse()
	if err := run(*seeds, *caFile, *certFile, *keyFile, *passwordFile, *listen, *first, *connectTimeout, opts); err != nil {
		log.Fatalf("writer: %v", err)
	}
}

func run(seeds, caFile, certFile, keyFile, passwordFile, listen, first string, connectTimeout time.Duration, opts Options) error {
	if seeds == "" || opts.Writers < 1 {
		return errors.New("-seed and -writers of 1 or more are required")
	}
	var password string
	if passwordFile != "" {
		b, err := os.ReadFile(passwordFile)
		if err != nil {
			return err
		}
		password = strings.TrimSpace(string(b))
	}
	var tlsConfig *tls.Config
	if caFile != "" {
		var err error
		if tlsConfig, err = clientTLS(caFile, certFile, keyFile); err != nil {
			return err
		}
	}
	names := &verifiedNames{count: map[string]int{}}
	option := clientOption(strings.Split(seeds, ","), password, tlsConfig, opts.AttemptTimeout, names)

	// A NetworkPolicy admits a new pod once its enforcer has seen it (about a
	// second on the real node): until then the first connection is refused.
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	var cl valkey.Client
	for {
		var err error
		if cl, err = valkey.NewClient(option); err == nil {
			break
		}
		log.Printf("writer: %v; trying again", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
	defer cl.Close()

	w := NewWriter(cl, opts, runID())
	w.Start(first)
	log.Printf("writer: %d writers started, phase %s", opts.Writers, first)

	done := make(chan struct{})
	var once sync.Once
	finish := func() { once.Do(func() { close(done) }) }
	mux := http.NewServeMux()
	mux.Handle("/", w.Handler(finish))
	mux.HandleFunc("GET /tls", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(rw).Encode(names.snapshot())
	})
	srv := &http.Server{Addr: listen, Handler: logged(mux), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-errc:
		return err
	case <-sig:
		log.Printf("writer: stopping on a signal: %s", w.Stop(context.Background()))
	case <-done:
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	return srv.Shutdown(sctx)
}

// logged logs each control request and the report it answers with.
func logged(h http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			h.ServeHTTP(rw, r)
			return
		}
		rec := &recorder{ResponseWriter: rw}
		h.ServeHTTP(rec, r)
		log.Printf("writer: %s %s: %d %s", r.Method, r.URL.RequestURI(), rec.status(), strings.TrimSpace(rec.body.String()))
	})
}

type recorder struct {
	http.ResponseWriter
	code int
	body strings.Builder
}

func (r *recorder) WriteHeader(code int) { r.code = code; r.ResponseWriter.WriteHeader(code) }

func (r *recorder) Write(b []byte) (int, error) {
	if r.body.Len() < 4096 {
		r.body.Write(b)
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}

func clientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s: no certificate", caFile)
	}
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// clientOption is the cluster client's option. An attempt's bound is also the
// dial's; a connection with a command unanswered for 2 s is closed as dead
// (valkey-go's default is 10 s), so that a node gone without a word fails the
// attempts at it soon instead of holding them.
func clientOption(seeds []string, password string, tlsConfig *tls.Config, attempt time.Duration, names *verifiedNames) valkey.ClientOption {
	o := valkey.ClientOption{
		InitAddress:      seeds,
		Password:         password,
		DisableCache:     true,
		Dialer:           net.Dialer{Timeout: attempt},
		ConnWriteTimeout: 2 * time.Second,
	}
	if tlsConfig != nil {
		o.TLSConfig = tlsConfig
		o.DialCtxFn = verifyingDialer(names)
	}
	return o
}

// verifyingDialer dials TLS with the dialed host as the server name, whatever
// the configuration says: standard verification of the chain and of that name
// (a DNS name, or an IP address against the certificate's IP addresses). It
// counts the connections verified per name.
func verifyingDialer(names *verifiedNames) func(context.Context, string, *net.Dialer, *tls.Config) (net.Conn, error) {
	return func(ctx context.Context, dst string, d *net.Dialer, cfg *tls.Config) (net.Conn, error) {
		host, _, err := net.SplitHostPort(dst)
		if err != nil {
			return nil, err
		}
		c := cfg.Clone()
		c.ServerName = host
		conn, err := (&tls.Dialer{NetDialer: d, Config: c}).DialContext(ctx, "tcp", dst)
		if err != nil {
			return nil, err
		}
		names.add(host)
		return conn, nil
	}
}

// verifiedNames counts the TLS connections made, by the name verified.
type verifiedNames struct {
	mu    sync.Mutex
	count map[string]int
}

func (v *verifiedNames) add(name string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.count[name]++
}

// snapshot is every name verified, sorted, with its connections.
func (v *verifiedNames) snapshot() []NameCount {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]NameCount, 0, len(v.count))
	for _, n := range slices.Sorted(maps.Keys(v.count)) {
		out = append(out, NameCount{Name: n, Connections: v.count[n]})
	}
	return out
}

// NameCount is one name the writer verified a node's certificate for.
type NameCount struct {
	Name        string `json:"name"`
	Connections int    `json:"connections"`
}

// runID names this run of the writer in every value it writes.
func runID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
