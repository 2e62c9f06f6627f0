package framework

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
)

// startTimeout bounds each wait for a started process to serve.
const startTimeout = 60 * time.Second

// pollInterval is how often a wait looks again.
const pollInterval = 100 * time.Millisecond

// running counts the ControlPlanes of this process that have not stopped yet, so
// that the last one to stop removes the binary Serve built.
var running refCount

type refCount struct {
	mu sync.Mutex
	n  int
}

func (r *refCount) add() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
}

func (r *refCount) done() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n--
	if r.n == 0 {
		forgetBinary()
	}
}

// eventually polls f until it returns nil, for at most timeout, and returns an error
// saying what it waited for, wrapping f's last error, if it never did. f may return
// gomega.StopTrying to give up at once, e.g. when the process it waits for exited.
func eventually(what string, timeout time.Duration, f func() error) error {
	var last error
	g := gomega.NewGomega(func(string, ...int) {})
	ok := g.Eventually(func() error {
		err := f()
		if err != nil {
			last = err
		}
		return err
	}).WithTimeout(timeout).WithPolling(pollInterval).Should(gomega.Succeed())
	if !ok {
		return fmt.Errorf("waiting %s for %s: %w", timeout, what, last)
	}
	return nil
}

// exited is a gomega.StopTrying error when the session's process has exited, and
// nil while it runs.
func exited(s *gexec.Session, name string) error {
	if code := s.ExitCode(); code != -1 {
		return gomega.StopTrying(fmt.Sprintf("%s exited with code %d (its output is in the GinkgoWriter log)", name, code))
	}
	return nil
}

// freeLocalAddr returns a loopback address with a port nobody listens on and
// none of avoid. A port handed out earlier and not bound yet (envtest's webhook
// port, until serve starts) is free too, and the kernel can hand it out again:
// once the health probe got the webhook's port and serve could not bind it.
func freeLocalAddr(avoid ...int) (string, error) {
	for range 10 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", fmt.Errorf("finding a free loopback port: %w", err)
		}
		addr := l.Addr().(*net.TCPAddr)
		_ = l.Close()
		if !slices.Contains(avoid, addr.Port) {
			return addr.String(), nil
		}
	}
	return "", fmt.Errorf("finding a free loopback port other than %v: ten tries gave only those", avoid)
}

// dialTLS succeeds when addr completes a TLS handshake; it checks only that TLS is
// served, not by whom.
func dialTLS(addr string) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr,
		&tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only checks that TLS is served
	if err != nil {
		return err
	}
	return conn.Close()
}

// insecureHTTP is a client for the health endpoints of the started processes, which
// serve self-signed certificates.
var insecureHTTP = &http.Client{
	Timeout:   2 * time.Second,
	Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // health checks of local test processes
}

// getOK succeeds when a GET of url answers 200.
func getOK(url string) error {
	resp, err := insecureHTTP.Get(url)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// stopFailed kills a session that did not come up and returns err.
func stopFailed(s *gexec.Session, err error) error {
	if s.ExitCode() == -1 {
		s.Kill()
		<-s.Exited
	}
	return err
}
