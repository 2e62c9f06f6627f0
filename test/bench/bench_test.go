package bench

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/onsi/gomega"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/webhook"
)

// TestSmoke is the short run of the load generator that `make test` includes: the
// floor and valkey-webhook's webhooks, each served in this process by
// controller-runtime's webhook server over TLS on loopback, get every payload. Every
// answer must be right, and the percentiles ordered. It checks the generator and the
// payloads `make bench` relies on, not the speed.
func TestSmoke(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	certDir, caPEM := servingCert(t)
	payloads, err := Payloads(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}

	ours := crwebhook.NewServer(crwebhook.Options{Host: "127.0.0.1", Port: freePort(t), CertDir: certDir})
	for path, hook := range webhook.Handlers(clientgoscheme.Scheme, config.Default()) {
		ours.Register(path, hook)
	}
	floorPort := freePort(t)
	servers := map[string]crwebhook.Server{
		"floor": FloorServer("127.0.0.1", floorPort, certDir),
		"ours":  ours,
	}
	for name, srv := range servers {
		done := make(chan error, 1)
		go func() { done <- srv.Start(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: %v", name, err)
			}
		})
		gomega.NewWithT(t).Eventually(func() error { return srv.StartedChecker()(nil) }).
			WithTimeout(30*time.Second).WithPolling(20*time.Millisecond).Should(gomega.Succeed(), name)
	}
	urls := map[string]string{
		"floor": "https://127.0.0.1:" + strconv.Itoa(floorPort),
		"ours":  "https://127.0.0.1:" + strconv.Itoa(ours.(*crwebhook.DefaultServer).Options.Port),
	}

	client, err := NewClient(caPEM, 4, false)
	if err != nil {
		t.Fatal(err)
	}
	var all []Result
	for _, p := range payloads {
		for _, server := range []string{"floor", "ours"} {
			target, err := p.Target(urls[server], server == "floor")
			if err != nil {
				t.Fatal(err)
			}
			t.Run(p.Name+"/"+server, func(t *testing.T) {
				// The generator checks answers by their text; decode one in full to
				// keep that check honest.
				if err := Verify(ctx, client, target); err != nil {
					t.Fatal(err)
				}
				r := Run(ctx, client, target, Options{Concurrency: 4, Requests: 25, Warmup: 1})
				t.Log(r)
				if r.Errors > 0 {
					t.Fatalf("%d errors, the first: %v", r.Errors, r.FirstError)
				}
				if r.Requests != 25 {
					t.Errorf("measured %d requests, want 25", r.Requests)
				}
				all = append(all, r)
			})
		}
	}

	r := Merge(all...)
	if r.Requests != 25*len(all) || r.Errors != 0 {
		t.Errorf("merged: %d requests, %d errors; want %d and 0", r.Requests, r.Errors, 25*len(all))
	}
	p50, p95, p99, top := r.Percentile(50), r.Percentile(95), r.Percentile(99), r.Max()
	if !(0 < p50 && p50 <= p95 && p95 <= p99 && p99 <= top) {
		t.Errorf("percentiles out of order: p50=%s p95=%s p99=%s max=%s", p50, p95, p99, top)
	}
	if r.RPS() <= 0 {
		t.Errorf("rate %f, want > 0", r.RPS())
	}
}

// TestPercentile pins the nearest-rank percentiles.
func TestPercentile(t *testing.T) {
	r := Result{}
	for i := 1; i <= 200; i++ {
		r.Latencies = append(r.Latencies, time.Duration(i))
	}
	for q, want := range map[float64]time.Duration{50: 100, 95: 190, 99: 198, 100: 200, 0.1: 1} {
		if got := r.Percentile(q); got != want {
			t.Errorf("p%g = %d, want %d", q, got, want)
		}
	}
	if got := (Result{}).Percentile(99); got != 0 {
		t.Errorf("p99 of nothing = %d, want 0", got)
	}
}

// servingCert writes a self-signed certificate for 127.0.0.1 as tls.crt and tls.key
// into a new directory, and returns the directory and the certificate as PEM.
func servingCert(t *testing.T) (string, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, certPEM
}

// freePort returns a loopback port nobody listens on.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// BenchmarkMux is each payload through the webhook server's handler (its mux, with
// controller-runtime's metrics), without TLS, the network or a client: the floor's
// webhooks against valkey-webhook's. Run it with
//
//	go test -run '^$' -bench Mux -benchmem ./test/bench
//
// The payloads are built from the examples, without the API server's defaults and
// managedFields that `make bench` adds.
func BenchmarkMux(b *testing.B) {
	payloads, err := Payloads(filepath.Join("..", ".."))
	if err != nil {
		b.Fatal(err)
	}
	crlog.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	ours := crwebhook.NewServer(crwebhook.Options{})
	for path, hook := range webhook.Handlers(clientgoscheme.Scheme, config.Default()) {
		ours.Register(path, hook)
	}
	servers := map[string]crwebhook.Server{"floor": FloorServer("", 0, ""), "serve": ours}
	for _, p := range payloads {
		body, err := Review(UID, p.Object)
		if err != nil {
			b.Fatal(err)
		}
		for _, name := range []string{"floor", "serve"} {
			mux := servers[name].WebhookMux()
			b.Run(p.Name+"/"+name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					r := httptest.NewRequest(http.MethodPost, p.Path, bytes.NewReader(body))
					r.Header.Set("Content-Type", "application/json")
					w := httptest.NewRecorder()
					mux.ServeHTTP(w, r)
					if w.Code != http.StatusOK {
						b.Fatalf("HTTP %d", w.Code)
					}
				}
			})
		}
	}
}
