package webhookserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/valkey-webhook/valkey-webhook/internal/selfsigned"
)

// timeScale stretches every bound of the tests under -race, which makes the
// code under test several times slower: the same attacks, against the same
// ratios of bounds, take three times as long.
var timeScale = map[bool]time.Duration{false: 1, true: 3}[raceEnabled]

// The bounds of the servers under test: short, so that every attack is cut
// within seconds. The production values are the Default constants.
var (
	testReadHeaderTimeout = 2 * time.Second * timeScale
	testReadTimeout       = 4 * time.Second * timeScale
	testWriteTimeout      = 5 * time.Second * timeScale
	testIdleTimeout       = 5 * time.Second * timeScale
	testSendPingTimeout   = 1 * time.Second * timeScale
	testPingTimeout       = 1 * time.Second * timeScale
	testShutdownTimeout   = 2 * time.Second * timeScale
	// slack is what a loaded 2-core machine may add to a timer.
	slack = 2 * time.Second * timeScale
	// answerBound is how long a valid review may take while under attack.
	answerBound = 2 * time.Second * timeScale
)

const (
	testEndpointMaxConns = 4
	// trickleEvery is the pace of a client that sends one byte at a time.
	trickleEvery = 100 * time.Millisecond
	// validEvery is the pace of each valid client during the attack.
	validEvery = 50 * time.Millisecond
	// validPath serves an admission.Webhook that allows everything.
	validPath = "/validate"
)

func TestMain(m *testing.M) {
	logf.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	os.Exit(m.Run())
}

// testServer is a webhook Server and its health and metrics Endpoints, running
// on loopback with a certificate of a CA of the test's own.
type testServer struct {
	webhook *Server
	addr    string
	health  string
	metrics string
	roots   *x509.CertPool
	certDir string
}

// allowAll is what serve registers, an admission.Webhook, with a trivial handler.
func allowAll() http.Handler {
	return &admission.Webhook{Handler: admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
		return admission.Allowed("ok")
	})}
}

// startServer starts the servers with extra hooks beside validPath, and stops
// them at the end of the test, checking that they stop within their bounds. The
// webhook server has the short test bounds, or the production ones with
// production true.
func startServer(t *testing.T, hooks map[string]http.Handler, production bool) *testServer {
	t.Helper()
	ts := &testServer{certDir: t.TempDir()}
	ts.roots = writeCertificate(t, ts.certDir)
	ln := listen(t)
	ts.addr = ln.Addr().String()
	ts.webhook = &Server{
		Listener:          ln,
		CertDir:           ts.certDir,
		ReadHeaderTimeout: testReadHeaderTimeout,
		ReadTimeout:       testReadTimeout,
		WriteTimeout:      testWriteTimeout,
		IdleTimeout:       testIdleTimeout,
		ShutdownTimeout:   testShutdownTimeout,
		SendPingTimeout:   testSendPingTimeout,
		PingTimeout:       testPingTimeout,
	}
	if production {
		ts.webhook = &Server{Listener: ln, CertDir: ts.certDir, ShutdownTimeout: testShutdownTimeout}
	}
	ts.webhook.Register(validPath, allowAll())
	for path, h := range hooks {
		ts.webhook.Register(path, h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 3)
	go func() { done <- ts.webhook.Start(ctx) }()
	for _, e := range []struct {
		addr    *string
		handler http.Handler
	}{
		{&ts.health, ProbeHandler(map[string]healthz.Checker{"ping": healthz.Ping}, map[string]healthz.Checker{"webhook": ts.webhook.StartedChecker()})},
		{&ts.metrics, MetricsHandler()},
	} {
		eln := listen(t)
		*e.addr = eln.Addr().String()
		r, err := Endpoint{
			Name:              "test",
			Listener:          eln,
			Handler:           e.handler,
			ReadHeaderTimeout: testReadHeaderTimeout,
			ReadTimeout:       testReadTimeout,
			WriteTimeout:      testWriteTimeout,
			IdleTimeout:       testIdleTimeout,
			ShutdownTimeout:   testShutdownTimeout,
			MaxConns:          testEndpointMaxConns,
		}.Runnable()
		if err != nil {
			t.Fatal(err)
		}
		go func() { done <- r.Start(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		limit := time.After(testShutdownTimeout + testReadHeaderTimeout + slack)
		for range 3 {
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("a server stopped with %v", err)
				}
			case <-limit:
				t.Errorf("the servers did not stop within %s of the end of the test", testShutdownTimeout+testReadHeaderTimeout+slack)
				return
			}
		}
	})
	poll(t, 10*time.Second, "the webhook server to serve TLS", func() error {
		return ts.webhook.StartedChecker()(httptest.NewRequest(http.MethodGet, "/readyz", nil))
	})
	return ts
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// writeCertificate writes tls.crt and tls.key for 127.0.0.1, from a new CA, and
// returns a pool that trusts the CA.
func writeCertificate(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	b, _, err := selfsigned.Renew(selfsigned.Bundle{}, []string{"127.0.0.1"}, time.Now(), selfsigned.DefaultValidity)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{"tls.crt": b.ServingCert, "tls.key": b.ServingKey} {
		tmp := filepath.Join(dir, name+".tmp")
		if err := os.WriteFile(tmp, content, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b.CABundle) {
		t.Fatal("no CA certificate in the bundle")
	}
	return pool
}

// poll calls f every 20 ms until it succeeds, failing the test after limit.
func poll(t *testing.T, limit time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s: %v", limit, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// client is an HTTPS client of the webhook server over HTTP/2 ("h2"), or over
// HTTP/1.1 with kept-alive connections ("http/1.1") or a new connection per
// request ("http/1.1, new connection").
func (ts *testServer) client(proto string) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ts.roots}, Protocols: new(http.Protocols)}
	switch proto {
	case "h2":
		tr.Protocols.SetHTTP2(true)
	case "http/1.1, new connection":
		tr.DisableKeepAlives = true
		fallthrough
	default:
		tr.Protocols.SetHTTP1(true)
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// review is a CREATE review of a StatefulSet as the API server writes it (kind,
// apiVersion, request.uid first), with an annotation that brings it to size
// bytes, if size is larger than the review without it.
func review(uid string, size int) []byte {
	const placeholder = "PAD"
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID(uid),
			Kind:      metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"},
			Resource:  metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"},
			Name:      "cache",
			Namespace: "team-a",
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: []byte(`{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"cache","namespace":"team-a","annotations":{"pad":"` + placeholder + `"}}}`)},
		},
	})
	if err != nil {
		panic(err)
	}
	// The padding goes in by hand: marshalling megabytes is slow under -race.
	return bytes.Replace(b, []byte(placeholder), bytes.Repeat([]byte("x"), max(0, size-len(b)+len(placeholder))), 1)
}

// answer is the webhook's answer to one review.
type answer struct {
	proto   string
	status  int
	review  admissionv1.AdmissionReview
	latency time.Duration
}

// post sends body to path; knownLength false sends it without Content-Length
// (chunked over HTTP/1.1).
func (ts *testServer) post(c *http.Client, path string, body []byte, knownLength bool) (answer, error) {
	var r io.Reader = bytes.NewReader(body)
	if !knownLength {
		r = io.MultiReader(r) // a reader of unknown length
	}
	req, err := http.NewRequest(http.MethodPost, "https://"+ts.addr+path, r)
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	a := answer{proto: resp.Proto, status: resp.StatusCode}
	if err := json.NewDecoder(resp.Body).Decode(&a.review); err != nil {
		return a, fmt.Errorf("%s %d: not an AdmissionReview: %w", resp.Proto, resp.StatusCode, err)
	}
	a.latency = time.Since(start)
	if a.review.Response == nil {
		return a, fmt.Errorf("%s %d: an AdmissionReview without a response", resp.Proto, resp.StatusCode)
	}
	return a, nil
}

// validReview sends a valid review and checks that it is allowed with its uid.
func (ts *testServer) validReview(c *http.Client, uid string) (answer, error) {
	a, err := ts.post(c, validPath, review(uid, 0), true)
	if err != nil {
		return a, err
	}
	if a.status != http.StatusOK || !a.review.Response.Allowed || string(a.review.Response.UID) != uid {
		return a, fmt.Errorf("%s %d: allowed %t, uid %q (want %q), status %+v", a.proto, a.status, a.review.Response.Allowed, a.review.Response.UID, uid, a.review.Response.Result)
	}
	return a, nil
}

// ended is what a client saw of a connection, or a request, that it kept going
// until the server ended it. start is when the client began (before it dialed),
// so before the server's timer starts; armed is when the client had done what
// starts that timer (dialed, finished TLS, or sent the request headers), which
// is about when the server's timer starts. The server's bound is checked from
// both sides: not before start+bound, not much after armed+bound.
type ended struct {
	start, armed      time.Time
	firstData, closed time.Time
	wasClosed         bool
	err               error
}

// end is when the server ended it: its first bytes (an answer) or the close.
func (e ended) end() time.Time {
	if !e.firstData.IsZero() {
		return e.firstData
	}
	return e.closed
}

// watch reads conn until the server closes it, calling send (when not nil)
// every trickleEvery, for at most limit after e.armed.
func watch(conn net.Conn, e ended, limit time.Duration, send func() error) ended {
	buf := make([]byte, 32<<10)
	for time.Since(e.armed) < limit {
		if send != nil {
			if err := send(); err != nil {
				e.closed, e.wasClosed = time.Now(), true
				return e
			}
		}
		_ = conn.SetReadDeadline(time.Now().Add(trickleEvery))
		n, err := conn.Read(buf)
		if n > 0 && e.firstData.IsZero() {
			e.firstData = time.Now()
		}
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			continue
		}
		e.closed, e.wasClosed = time.Now(), true
		return e
	}
	e.closed = time.Now()
	return e
}

// trickle returns a send func that writes data one byte per call, in a loop.
func trickle(conn net.Conn, data string) func() error {
	i := 0
	return func() error {
		_, err := conn.Write([]byte{data[i%len(data)]})
		i++
		return err
	}
}

// checkEndedAt checks that the server ended each of es at its bound: none before
// start+bound, each by armed+bound+slack.
func checkEndedAt(t *testing.T, what string, es []ended, bound time.Duration) {
	t.Helper()
	var open, early, late int
	var lo, hi time.Duration
	for i, e := range es {
		if e.err != nil {
			t.Fatalf("%s %d: %v", what, i, e.err)
		}
		after := e.end().Sub(e.armed)
		if i == 0 || after < lo {
			lo = after
		}
		hi = max(hi, after)
		switch {
		case !e.wasClosed && e.firstData.IsZero():
			open++
		case e.end().Sub(e.start) < bound-10*time.Millisecond:
			early++
		case after > bound+slack:
			late++
		}
	}
	t.Logf("%s: %d, ended by the server %s to %s after they were under way (bound %s)", what, len(es), lo.Round(time.Millisecond), hi.Round(time.Millisecond), bound)
	if open+early+late > 0 {
		t.Errorf("%s: of %d, %d still going after %s, %d ended before the bound, %d after it with %s to spare", what, len(es), open, bound+slack, early, late, slack)
	}
}

// attackConn is a connection an attack has set up, and what it then sends.
type attackConn struct {
	conn  net.Conn
	e     ended
	limit time.Duration
	send  func() error
	// noAnswer: what the server sends on it (HTTP/2 SETTINGS and PING) is not
	// an answer; only the close ends it.
	noAnswer bool
}

// run sends until the server closes the connection.
func (a attackConn) run() ended {
	if a.e.err != nil {
		return a.e
	}
	defer a.conn.Close()
	e := watch(a.conn, a.e, a.limit, a.send)
	if a.noAnswer {
		e.firstData = time.Time{}
	}
	return e
}

// slowLorisHTTP1 finishes TLS (HTTP/1.1), to send request headers that never
// end, one byte every trickleEvery.
func (ts *testServer) slowLorisHTTP1() attackConn {
	a := attackConn{e: ended{start: time.Now()}, limit: testReadHeaderTimeout + slack}
	conn, err := tls.Dial("tcp", ts.addr, &tls.Config{RootCAs: ts.roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		return attackConn{e: ended{err: err}}
	}
	a.conn, a.e.armed = conn, time.Now()
	a.send = trickle(conn, "POST "+validPath+" HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\nX-Padding: "+strings.Repeat("a", 4096))
	return a
}

// slowLorisHTTP2 finishes TLS (h2) and sends the connection preface and
// SETTINGS, to send then a HEADERS frame one byte every trickleEvery: the server
// sees no whole frame, pings, and gets no answer, since a client cannot send a
// PING in the middle of a frame.
func (ts *testServer) slowLorisHTTP2() attackConn {
	a := attackConn{e: ended{start: time.Now()}, limit: testSendPingTimeout + testPingTimeout + slack, noAnswer: true}
	conn, err := tls.Dial("tcp", ts.addr, &tls.Config{RootCAs: ts.roots, NextProtos: []string{"h2"}})
	if err != nil {
		return attackConn{e: ended{err: err}}
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		conn.Close()
		return attackConn{e: ended{err: fmt.Errorf("negotiated %q, not h2", p)}}
	}
	preface := "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + "\x00\x00\x00\x04\x00\x00\x00\x00\x00"
	if _, err := conn.Write([]byte(preface)); err != nil {
		conn.Close()
		return attackConn{e: ended{err: err}}
	}
	a.conn, a.e.armed = conn, time.Now()
	// A HEADERS frame (type 1, END_HEADERS) of 200 bytes on stream 1.
	a.send = trickle(conn, "\x00\x00\xc8\x01\x04\x00\x00\x00\x01"+strings.Repeat("\x00", 200))
	return a
}

// endlessBodyHTTP1 sends whole headers and then a body one byte every
// trickleEvery, chunked or of a Content-Length it never reaches.
func (ts *testServer) endlessBodyHTTP1(chunked bool) ended {
	e := ended{start: time.Now()}
	conn, err := tls.Dial("tcp", ts.addr, &tls.Config{RootCAs: ts.roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		return ended{err: err}
	}
	defer conn.Close()
	framing := "Content-Length: 1048576\r\n\r\n"
	if chunked {
		framing = "Transfer-Encoding: chunked\r\n\r\n100000\r\n"
	}
	e.armed = time.Now()
	if _, err := conn.Write([]byte("POST " + validPath + " HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\n" + framing)); err != nil {
		return ended{err: err}
	}
	return watch(conn, e, testReadTimeout+slack, trickle(conn, string(review("endless", 0))))
}

// endlessBodyHTTP2 posts over HTTP/2 a body that trickles one byte every
// trickleEvery, of unknown length or of a declared one it never reaches, and
// returns when the answer (a 400) came.
func (ts *testServer) endlessBodyHTTP2(knownLength bool) ended {
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() {
		data := review("endless", 0)
		tick := time.NewTicker(trickleEvery)
		defer tick.Stop()
		for i := 0; ; i++ {
			if _, err := pw.Write(data[i%len(data) : i%len(data)+1]); err != nil {
				return
			}
			<-tick.C
		}
	}()
	e := ended{start: time.Now()}
	trace := &httptrace.ClientTrace{WroteHeaders: func() { e.armed = time.Now() }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodPost, "https://"+ts.addr+validPath, pr)
	if err != nil {
		return ended{err: err}
	}
	if knownLength {
		req.ContentLength = 1 << 20
	}
	req.Header.Set("Content-Type", "application/json")
	c := ts.client("h2")
	c.Timeout = time.Minute
	resp, err := c.Do(req)
	if err != nil {
		return ended{err: err}
	}
	defer resp.Body.Close()
	e.firstData, e.wasClosed = time.Now(), true
	var got admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || got.Response == nil || got.Response.Result == nil || got.Response.Result.Code != http.StatusBadRequest {
		return ended{err: fmt.Errorf("%s %d: want a review with code 400: %v %+v", resp.Proto, resp.StatusCode, err, got.Response)}
	}
	return e
}

// idleTCP opens a TCP connection, to never start TLS.
func idleTCP(addr string) (net.Conn, ended, error) {
	e := ended{start: time.Now()}
	conn, err := net.Dial("tcp", addr)
	e.armed = time.Now()
	return conn, e, err
}

// waitIdleClosed waits until the server closes an idle connection.
func waitIdleClosed(conn net.Conn, e ended, limit time.Duration) ended {
	defer conn.Close()
	_ = conn.SetReadDeadline(e.armed.Add(limit))
	n, err := conn.Read(make([]byte, 1))
	if n > 0 {
		return ended{err: errors.New("the server sent data on a connection that never started TLS")}
	}
	e.closed = time.Now()
	var ne net.Error
	e.wasClosed = !errors.As(err, &ne) || !ne.Timeout()
	return e
}

// capResult is what a client of an endpoint saw once slow-loris connections
// held all of its MaxConns.
type capResult struct {
	loris    []ended
	answered time.Time
	waited   time.Duration
	status   int
	err      error
}

// fillEndpoint opens MaxConns slow-loris connections to an endpoint, then asks
// it for path on a new connection, and returns how long that waited.
func fillEndpoint(addr, path string) capResult {
	var r capResult
	r.loris = make([]ended, testEndpointMaxConns)
	var wg sync.WaitGroup
	for i := range testEndpointMaxConns {
		e := ended{start: time.Now()}
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			return capResult{err: err}
		}
		e.armed = time.Now()
		wg.Go(func() {
			defer conn.Close()
			r.loris[i] = watch(conn, e, testReadHeaderTimeout+slack, trickle(conn, "GET "+path+" HTTP/1.1\r\nHost: endpoint\r\nX-Padding: "+strings.Repeat("a", 4096)))
		})
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Minute}
	start := time.Now()
	resp, err := c.Get("http://" + addr + path)
	r.answered = time.Now()
	r.waited = r.answered.Sub(start)
	if err != nil {
		r.err = err
	} else {
		r.status = resp.StatusCode
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	wg.Wait()
	return r
}

// validLoad is the valid reviews one client sent while the attack ran.
type validLoad struct {
	proto      string
	n          int
	maxLatency time.Duration
	errs       []error
	protoSeen  string
}

// sendValid sends a valid review over client proto every validEvery until stop
// is closed.
func (ts *testServer) sendValid(proto string, stop <-chan struct{}) validLoad {
	l := validLoad{proto: proto}
	c := ts.client(proto)
	tick := time.NewTicker(validEvery)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return l
		case <-tick.C:
		}
		a, err := ts.validReview(c, fmt.Sprintf("%s-%d", proto, i))
		l.n++
		if err != nil {
			l.errs = append(l.errs, err)
			continue
		}
		l.maxLatency = max(l.maxLatency, a.latency)
		l.protoSeen = a.proto
	}
}

// TestServerUnderAttack runs every attack at once against one server, while
// valid reviews are sent over HTTP/2 and HTTP/1.1, then checks what each
// attack and each valid client saw.
func TestServerUnderAttack(t *testing.T) {
	const (
		lorisHTTP1   = 100
		lorisHTTP2   = 20
		lorisDialers = 4
		idleConns    = 2000
	)
	ts := startServer(t, nil, false)
	attackStart := time.Now()
	var attacks sync.WaitGroup
	var (
		loris1    = make([]ended, lorisHTTP1)
		loris2    = make([]ended, lorisHTTP2)
		idle      = make([]ended, idleConns)
		bodies    = map[string]*ended{}
		overLimit answer
		overErr   error
		endpoints = map[string]*capResult{}
	)
	for i := range idleConns {
		conn, e, err := idleTCP(ts.addr)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		attacks.Go(func() { idle[i] = waitIdleClosed(conn, e, testReadHeaderTimeout+slack) })
	}
	// A few dialers set up the slow-loris connections, one handshake after
	// another, as an attacker would to get them all through.
	for w := range lorisDialers {
		attacks.Go(func() {
			for i := w; i < lorisHTTP1+lorisHTTP2; i += lorisDialers {
				if i < lorisHTTP1 {
					c := ts.slowLorisHTTP1()
					attacks.Go(func() { loris1[i] = c.run() })
				} else {
					c := ts.slowLorisHTTP2()
					attacks.Go(func() { loris2[i-lorisHTTP1] = c.run() })
				}
			}
		})
	}
	for name, send := range map[string]func() ended{
		"HTTP/1.1 chunked":        func() ended { return ts.endlessBodyHTTP1(true) },
		"HTTP/1.1 Content-Length": func() ended { return ts.endlessBodyHTTP1(false) },
		"HTTP/2 unknown length":   func() ended { return ts.endlessBodyHTTP2(false) },
		"HTTP/2 Content-Length":   func() ended { return ts.endlessBodyHTTP2(true) },
	} {
		e := new(ended)
		bodies[name] = e
		attacks.Go(func() { *e = send() })
	}
	attacks.Go(func() {
		overLimit, overErr = ts.post(ts.client("h2"), validPath, review("over-limit", int(MaxBodyBytes)+1), true)
	})
	for path, addr := range map[string]string{"/healthz": ts.health, "/metrics": ts.metrics} {
		r := new(capResult)
		endpoints[path] = r
		attacks.Go(func() { *r = fillEndpoint(addr, path) })
	}

	stop := make(chan struct{})
	go func() { attacks.Wait(); close(stop) }()
	loads := make([]validLoad, 3)
	var valid sync.WaitGroup
	for i, proto := range []string{"h2", "http/1.1", "http/1.1, new connection"} {
		valid.Go(func() { loads[i] = ts.sendValid(proto, stop) })
	}
	select {
	case <-stop:
	case <-time.After(time.Minute):
		t.Fatal("the attacks did not end within a minute")
	}
	valid.Wait()
	attackDuration := time.Since(attackStart)
	t.Logf("attack: %d idle TCP connections, %d HTTP/1.1 and %d HTTP/2 slow-loris connections, %d endless bodies, 1 over-limit review, %d slow-loris connections on each endpoint; it ran %s",
		idleConns, lorisHTTP1, lorisHTTP2, len(bodies), testEndpointMaxConns, attackDuration.Round(time.Millisecond))

	t.Run("slow-loris HTTP/1.1 headers are cut at ReadHeaderTimeout", func(t *testing.T) {
		checkEndedAt(t, "HTTP/1.1 slow-loris connections", loris1, testReadHeaderTimeout)
	})
	t.Run("slow-loris HTTP/2 frames are cut after an unanswered ping", func(t *testing.T) {
		checkEndedAt(t, "HTTP/2 slow-loris connections", loris2, testSendPingTimeout+testPingTimeout)
	})
	t.Run("idle TCP connections that never start TLS are cut at the handshake bound", func(t *testing.T) {
		// Go's server bounds the handshake by the least of its timeouts.
		checkEndedAt(t, "idle TCP connections", idle, testReadHeaderTimeout)
	})
	t.Run("bodies that never end are answered or cut at ReadTimeout", func(t *testing.T) {
		for name, e := range bodies {
			checkEndedAt(t, name+" body", []ended{*e}, testReadTimeout)
		}
	})
	t.Run("an over-limit review is denied with its uid and code 413", func(t *testing.T) {
		if overErr != nil {
			t.Fatal(overErr)
		}
		checkOverLimit(t, overLimit, "over-limit", MaxBodyBytes+1)
	})
	t.Run("health and metrics past their connection cap: new connections wait", func(t *testing.T) {
		for path, r := range endpoints {
			if r.err != nil {
				t.Fatalf("%s: %v", path, r.err)
			}
			checkEndedAt(t, path+" slow-loris connections", r.loris, testReadHeaderTimeout)
			// The server cuts no slow-loris connection before the first one
			// started dialing plus ReadHeaderTimeout; a new connection served
			// before that would have been served past the cap.
			firstCut := r.loris[0].start.Add(testReadHeaderTimeout)
			t.Logf("%s: a new connection past the cap of %d was answered %d after %s, %s after the first slow-loris connection could be cut", path, testEndpointMaxConns, r.status, r.waited.Round(time.Millisecond), r.answered.Sub(firstCut).Round(time.Millisecond))
			if r.status != http.StatusOK || r.answered.Before(firstCut.Add(-10*time.Millisecond)) || r.waited > testReadHeaderTimeout+slack {
				t.Errorf("%s: answered %d after %s, %s after the first slow-loris connection could be cut; want 200, not before that, within %s", path, r.status, r.waited, r.answered.Sub(firstCut), testReadHeaderTimeout+slack)
			}
		}
	})
	t.Run("valid reviews over HTTP/2 and HTTP/1.1 are answered within 2s meanwhile", func(t *testing.T) {
		if attackDuration < 2*answerBound {
			t.Fatalf("the attack ran %s, too short to compare with the bound of %s", attackDuration, answerBound)
		}
		for _, l := range loads {
			t.Logf("%s: %d valid reviews during the attack, longest %s, %d failed (%s)", l.proto, l.n, l.maxLatency.Round(time.Millisecond), len(l.errs), l.protoSeen)
			for _, err := range l.errs[:min(len(l.errs), 3)] {
				t.Errorf("%s: %v", l.proto, err)
			}
			if l.n < 3 || l.maxLatency > answerBound {
				t.Errorf("%s: %d reviews, longest %s; want at least 3, each within %s, while the attack ran %s", l.proto, l.n, l.maxLatency, answerBound, attackDuration)
			}
			want := "HTTP/1.1"
			if l.proto == "h2" {
				want = "HTTP/2.0"
			}
			if l.protoSeen != want {
				t.Errorf("%s: answered over %s, want %s", l.proto, l.protoSeen, want)
			}
		}
	})
}

// checkOverLimit checks the answer to a review of size bytes or more.
func checkOverLimit(t *testing.T, a answer, uid string, size int64) {
	t.Helper()
	r := a.review.Response
	if a.status != http.StatusOK || string(r.UID) != uid || r.Allowed || r.Result == nil || r.Result.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("%s %d: uid %q allowed %t status %+v; want 200, uid %q, denied, code 413", a.proto, a.status, r.UID, r.Allowed, r.Result, uid)
	}
	if a.review.APIVersion != "admission.k8s.io/v1" || a.review.Kind != "AdmissionReview" {
		t.Errorf("answered as %q %q, want admission.k8s.io/v1 AdmissionReview", a.review.APIVersion, a.review.Kind)
	}
	if want := fmt.Sprintf("the AdmissionReview of %d+ bytes is over valkey-webhook's limit of %d bytes", size, MaxBodyBytes); !strings.Contains(r.Result.Message, want) {
		t.Errorf("message %q, want it to say %q", r.Result.Message, want)
	}
}

// TestBodyLimit sends reviews at, over and just under MaxBodyBytes over HTTP/2
// and HTTP/1.1, with and without Content-Length, to a server of production
// bounds (under -race, a 7 MiB review takes seconds to decode).
func TestBodyLimit(t *testing.T) {
	ts := startServer(t, nil, true)
	for _, proto := range []string{"h2", "http/1.1"} {
		c := ts.client(proto)
		for _, known := range []bool{true, false} {
			name := fmt.Sprintf("%s, Content-Length %t", proto, known)
			t.Run(name+": at the limit, denied with its uid and code 413", func(t *testing.T) {
				a, err := ts.post(c, validPath, review("at-limit", int(MaxBodyBytes)), known)
				if err != nil {
					t.Fatal(err)
				}
				checkOverLimit(t, a, "at-limit", MaxBodyBytes)
			})
			t.Run(name+": twice the limit, denied with its uid and code 413", func(t *testing.T) {
				size := 2 * MaxBodyBytes
				a, err := ts.post(c, validPath, review("twice", int(size)), known)
				if err != nil {
					t.Fatal(err)
				}
				if !known {
					size = MaxBodyBytes // all that is read of a body of unknown length
				}
				checkOverLimit(t, a, "twice", size)
			})
			t.Run(name+": one byte under the limit, answered by the hook", func(t *testing.T) {
				if _, err := ts.validReviewOfSize(c, "under", int(MaxBodyBytes)-1, known); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
	t.Run("over the limit without a uid: code 413 without one", func(t *testing.T) {
		body := []byte(`{"request":{"object":"` + strings.Repeat("x", int(MaxBodyBytes)) + `"}}`)
		a, err := ts.post(ts.client("h2"), validPath, body, true)
		if err != nil {
			t.Fatal(err)
		}
		if r := a.review.Response; a.status != http.StatusOK || r.UID != "" || r.Allowed || r.Result == nil || r.Result.Code != http.StatusRequestEntityTooLarge {
			t.Errorf("%d: %+v; want 200, no uid, denied, code 413", a.status, r)
		}
	})
}

func (ts *testServer) validReviewOfSize(c *http.Client, uid string, size int, known bool) (answer, error) {
	a, err := ts.post(c, validPath, review(uid, size), known)
	if err != nil {
		return a, err
	}
	if !a.review.Response.Allowed || string(a.review.Response.UID) != uid {
		return a, fmt.Errorf("%s %d: allowed %t uid %q status %+v", a.proto, a.status, a.review.Response.Allowed, a.review.Response.UID, a.review.Response.Result)
	}
	return a, nil
}

// TestTLSRefusesOldVersionsAndNonAEADSuites dials with one TLS version or
// suite at a time.
func TestTLSRefusesOldVersionsAndNonAEADSuites(t *testing.T) {
	ts := startServer(t, nil, false)
	for _, tc := range []struct {
		name    string
		min     uint16
		max     uint16
		suite   uint16
		refused bool
	}{
		{"TLS 1.3", tls.VersionTLS13, tls.VersionTLS13, 0, false},
		{"TLS 1.2 ECDHE-ECDSA AES-128-GCM", tls.VersionTLS12, tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, false},
		{"TLS 1.2 ECDHE-ECDSA AES-256-GCM", tls.VersionTLS12, tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, false},
		{"TLS 1.2 ECDHE-ECDSA ChaCha20-Poly1305", tls.VersionTLS12, tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, false},
		{"TLS 1.2 ECDHE-ECDSA AES-128-CBC-SHA", tls.VersionTLS12, tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, true},
		{"TLS 1.2 ECDHE-ECDSA AES-256-CBC-SHA", tls.VersionTLS12, tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, true},
		{"TLS 1.2 ECDHE-ECDSA AES-128-CBC-SHA256", tls.VersionTLS12, tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, true},
		{"TLS 1.1", tls.VersionTLS10, tls.VersionTLS11, 0, true},
		{"TLS 1.0", tls.VersionTLS10, tls.VersionTLS10, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &tls.Config{RootCAs: ts.roots, MinVersion: tc.min, MaxVersion: tc.max, NextProtos: []string{"h2", "http/1.1"}}
			if tc.suite != 0 {
				cfg.CipherSuites = []uint16{tc.suite}
			}
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ts.addr, cfg)
			if tc.refused {
				if err == nil {
					conn.Close()
					t.Fatal("the handshake succeeded, want it refused")
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			defer conn.Close()
			if s := conn.ConnectionState(); s.NegotiatedProtocol != "h2" || tc.suite != 0 && s.CipherSuite != tc.suite {
				t.Errorf("negotiated %q with %s, want h2 with %s", s.NegotiatedProtocol, tls.CipherSuiteName(s.CipherSuite), tls.CipherSuiteName(tc.suite))
			}
		})
	}
}

// TestMetricsCountEveryReview reads controller-runtime's webhook metrics off the
// metrics endpoint, before and after valid and over-limit reviews.
func TestMetricsCountEveryReview(t *testing.T) {
	ts := startServer(t, map[string]http.Handler{"/counted": allowAll()}, false)
	before := ts.metric(t, `controller_runtime_webhook_requests_total{code="200",webhook="/counted"}`)
	c := ts.client("h2")
	const valid = 5
	for i := range valid {
		if _, err := ts.post(c, "/counted", review(fmt.Sprint(i), 0), true); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ts.post(c, "/counted", review("over", int(MaxBodyBytes)), true); err != nil {
		t.Fatal(err)
	}
	after := ts.metric(t, `controller_runtime_webhook_requests_total{code="200",webhook="/counted"}`)
	if after-before != valid+1 {
		t.Errorf("requests_total of /counted went from %v to %v, want +%d (the over-limit answer counts too)", before, after, valid+1)
	}
	for _, name := range []string{`controller_runtime_webhook_latency_seconds_count{webhook="/counted"}`, `controller_runtime_webhook_requests_in_flight{webhook="/counted"}`} {
		ts.metric(t, name)
	}
}

// metric returns the value of the series name from the metrics endpoint.
func (ts *testServer) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + ts.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("no series %s on /metrics", name)
	return 0
}

// TestProbes checks /healthz and /readyz (and a check under it) on the health
// endpoint.
func TestProbes(t *testing.T) {
	ts := startServer(t, nil, false)
	for _, path := range []string{"/healthz", "/readyz", "/readyz/webhook", "/healthz/ping"} {
		resp, err := http.Get("http://" + ts.health + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d, want 200", path, resp.StatusCode)
		}
	}
	notStarted := (&Server{}).StartedChecker()(httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if notStarted == nil {
		t.Error("a server not started reports started")
	}
}

// TestShutdownWaitsForRequestsWithinItsBound stops the server with one request
// that finishes during the shutdown and one that never does.
func TestShutdownWaitsForRequestsWithinItsBound(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan string, 2)
	hold := func(forever bool) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			entered <- r.URL.Path
			if forever {
				<-r.Context().Done() // until the connection is closed
				return
			}
			<-release
			allowAll().ServeHTTP(w, r)
		})
	}
	ts := &testServer{certDir: t.TempDir()}
	ts.roots = writeCertificate(t, ts.certDir)
	ln := listen(t)
	ts.addr = ln.Addr().String()
	ts.webhook = &Server{Listener: ln, CertDir: ts.certDir, ShutdownTimeout: testShutdownTimeout}
	ts.webhook.Register("/finishes", hold(false))
	ts.webhook.Register("/never", hold(true))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ts.webhook.Start(ctx) }()
	poll(t, 10*time.Second, "the webhook server to serve TLS", func() error {
		return ts.webhook.StartedChecker()(httptest.NewRequest(http.MethodGet, "/readyz", nil))
	})

	answered := make(chan error, 1)
	go func() {
		a, err := ts.post(ts.client("h2"), "/finishes", review("finishes", 0), true)
		if err == nil && !a.review.Response.Allowed {
			err = fmt.Errorf("not allowed: %+v", a.review.Response)
		}
		answered <- err
	}()
	go func() { _, _ = ts.post(ts.client("http/1.1"), "/never", review("never", 0), true) }()
	for range 2 {
		<-entered
	}
	stopped := time.Now()
	cancel()
	close(release)
	if err := <-answered; err != nil {
		t.Errorf("the request that finished during the shutdown: %v", err)
	}
	select {
	case err := <-done:
		took := time.Since(stopped)
		t.Logf("Start returned %v after %s (ShutdownTimeout %s), one request still in flight", err, took.Round(time.Millisecond), testShutdownTimeout)
		if err != nil || took < testShutdownTimeout-50*time.Millisecond || took > testShutdownTimeout+slack {
			t.Errorf("Start returned %v after %s, want nil between %s and %s", err, took, testShutdownTimeout, testShutdownTimeout+slack)
		}
	case <-time.After(testShutdownTimeout + 2*slack):
		t.Fatalf("Start did not return within %s of the shutdown", testShutdownTimeout+2*slack)
	}
}

// TestServesTheRenewedCertificate replaces tls.crt and tls.key and waits until
// a new handshake presents the new certificate.
func TestServesTheRenewedCertificate(t *testing.T) {
	ts := startServer(t, nil, false)
	serial := func(roots *x509.CertPool) (string, error) {
		conn, err := tls.Dial("tcp", ts.addr, &tls.Config{RootCAs: roots})
		if err != nil {
			return "", err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
	}
	old, err := serial(ts.roots)
	if err != nil {
		t.Fatal(err)
	}
	roots := writeCertificate(t, ts.certDir)
	poll(t, 30*time.Second, "the new certificate to be served", func() error {
		s, err := serial(roots)
		if err == nil && s == old {
			err = errors.New("still the old certificate")
		}
		return err
	})
}
