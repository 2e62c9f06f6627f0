// Package bench measures the admission webhooks the way the API server uses them:
// AdmissionReview v1 requests over HTTPS with keep-alive, at a fixed concurrency,
// against `valkey-webhook serve` and against the floor, the cheapest webhook
// controller-runtime can serve (a no-op, in test/bench/floor). `make bench` runs
// test/bench/run; docs/benchmarks.md says how and what it found.
package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
)

// Target is one kind of request: a body posted to a URL, and the answer it must get.
type Target struct {
	// URL is the webhook's https URL, path included.
	URL string
	// Body is the AdmissionReview sent, the same bytes every time.
	Body []byte
	// UID is the request's uid, which every answer must carry.
	UID string
	// Want is the verdict every answer must carry.
	Want Verdict
}

// Verdict is what an answer must say.
type Verdict struct {
	Allowed bool
	// Patched: the answer carries a JSON patch.
	Patched bool
	// Code, when not 0, is the status code inside the answer (422 for a denial).
	Code int32
}

// Options bound one run of the generator.
type Options struct {
	// Concurrency is the number of workers, each sending its next request as soon as
	// the previous one is answered; each keeps its own connection.
	Concurrency int
	// Requests is how many requests the run sends in all, after the warm-up. When 0,
	// the run lasts Duration instead.
	Requests int
	// Duration bounds the run when Requests is 0.
	Duration time.Duration
	// Warmup is how many requests each worker sends, unmeasured, before the run
	// starts: they open the connections (the TLS handshakes are not measured) and
	// warm up the server.
	Warmup int
}

// Result is what one run (or several, merged) measured.
type Result struct {
	// Requests counts the measured requests, Errors those among them whose answer was
	// missing or wrong. FirstError says what went wrong first.
	Requests, Errors int
	FirstError       error
	// Elapsed is the wall time of the measured part (summed over merged runs).
	Elapsed time.Duration
	// Latencies are the measured latencies, sorted.
	Latencies []time.Duration
}

// Percentile returns the q-th percentile (0 < q <= 100) of the latencies, by the
// nearest-rank method: the smallest latency that at least q% of the requests did
// not exceed. It is 0 when nothing was measured.
func (r Result) Percentile(q float64) time.Duration {
	n := len(r.Latencies)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(q / 100 * float64(n)))
	rank = min(max(rank, 1), n)
	return r.Latencies[rank-1]
}

// Max is the largest latency.
func (r Result) Max() time.Duration { return r.Percentile(100) }

// RPS is the number of measured requests per second of wall time.
func (r Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// String is one line: p50, p95, p99, max, requests per second and errors.
func (r Result) String() string {
	return fmt.Sprintf("n=%d p50=%s p95=%s p99=%s max=%s rps=%.0f errors=%d",
		r.Requests, ms(r.Percentile(50)), ms(r.Percentile(95)), ms(r.Percentile(99)), ms(r.Max()), r.RPS(), r.Errors)
}

// ms formats a duration in milliseconds with three decimals.
func ms(d time.Duration) string { return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond)) }

// Merge pools the requests of several runs of the same target: the percentiles of
// the result are those of all their requests together, and its rate is their total
// count over their total measured time.
func Merge(rs ...Result) Result {
	var out Result
	for _, r := range rs {
		out.Requests += r.Requests
		out.Errors += r.Errors
		out.Elapsed += r.Elapsed
		out.Latencies = append(out.Latencies, r.Latencies...)
		if out.FirstError == nil {
			out.FirstError = r.FirstError
		}
	}
	slices.Sort(out.Latencies)
	return out
}

// NewClient returns an HTTPS client that trusts the CA in caPEM and keeps up to
// concurrency connections per host alive. It speaks HTTP/1.1, one request at a
// time per connection, unless http2 is set; then all requests to a host share one
// connection, as the API server's webhook client does.
func NewClient(caPEM []byte, concurrency int, http2 bool) (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no CA certificate in the PEM data given")
	}
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 5 * time.Second,
		MaxIdleConns:        0, // no limit over all hosts
		MaxIdleConnsPerHost: concurrency,
		MaxConnsPerHost:     concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   http2,
	}
	if !http2 {
		// A non-nil, empty map turns HTTP/2 off.
		transport.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: transport, Timeout: 10 * time.Second}, nil
}

// Run sends t's request with o.Concurrency workers until o.Requests have been
// measured (or o.Duration has passed), after each worker's o.Warmup requests. It
// stops early when ctx is done.
func Run(ctx context.Context, client *http.Client, t Target, o Options) Result {
	if o.Concurrency < 1 {
		o.Concurrency = 1
	}
	check := newChecker(t)

	// Warm-up: every worker at once, so that every connection gets opened.
	var wg sync.WaitGroup
	for range o.Concurrency {
		wg.Go(func() {
			var buf bytes.Buffer
			for range o.Warmup {
				if ctx.Err() != nil {
					return
				}
				_ = send(ctx, client, t, check, &buf)
			}
		})
	}
	wg.Wait()

	var (
		next     atomic.Int64 // requests claimed, in count mode
		mu       sync.Mutex
		all      []time.Duration
		errCount int
		firstErr error
	)
	deadline := time.Time{}
	if o.Requests == 0 {
		deadline = time.Now().Add(o.Duration)
	}
	perWorker := o.Requests/o.Concurrency + 1
	start := time.Now()
	for range o.Concurrency {
		wg.Go(func() {
			var buf bytes.Buffer
			latencies := make([]time.Duration, 0, perWorker)
			var errs int
			var first error
			for ctx.Err() == nil {
				if o.Requests > 0 {
					if next.Add(1) > int64(o.Requests) {
						break
					}
				} else if !time.Now().Before(deadline) {
					break
				}
				begin := time.Now()
				err := send(ctx, client, t, check, &buf)
				latencies = append(latencies, time.Since(begin))
				if err != nil {
					errs++
					if first == nil {
						first = err
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			all = append(all, latencies...)
			errCount += errs
			if firstErr == nil {
				firstErr = first
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(all)
	return Result{Requests: len(all), Errors: errCount, FirstError: firstErr, Elapsed: elapsed, Latencies: all}
}

// send posts one request and checks its answer; buf is the worker's reusable
// buffer for the answer.
func send(ctx context.Context, client *http.Client, t Target, check *checker, buf *bytes.Buffer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(t.Body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	buf.Reset()
	_, err = buf.ReadFrom(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s: %.200s", resp.Status, buf.Bytes())
	}
	return check.answer(buf.Bytes())
}

// checker tells a right answer from a wrong one by looking for the fields
// encoding/json writes into an AdmissionReview response (the webhook server's
// encoder): cheap enough not to load the machine it shares with the server. The
// smoke test decodes the same answers in full, to keep this honest.
type checker struct {
	want       Verdict
	uid        []byte
	allowed    []byte
	patched    []byte
	code       []byte
	wantString string
}

func newChecker(t Target) *checker {
	return &checker{
		want:       t.Want,
		uid:        fmt.Appendf(nil, `"uid":%q`, t.UID),
		allowed:    fmt.Appendf(nil, `"allowed":%t`, t.Want.Allowed),
		patched:    []byte(`"patch":"`),
		code:       fmt.Appendf(nil, `"code":%d`, t.Want.Code),
		wantString: fmt.Sprintf("%+v", t.Want),
	}
}

func (c *checker) answer(body []byte) error {
	switch {
	case !bytes.Contains(body, c.uid):
		return fmt.Errorf("the answer does not carry the request's uid: %.300s", body)
	case !bytes.Contains(body, c.allowed),
		bytes.Contains(body, c.patched) != c.want.Patched,
		c.want.Code != 0 && !bytes.Contains(body, c.code):
		return fmt.Errorf("want an answer %s, got: %.300s", c.wantString, body)
	}
	return nil
}

// Verify sends t's request once and decodes the whole answer: it must be an
// AdmissionReview answering t's uid with t.Want. The generator's own check only
// looks for the fields in the answer's text; Verify keeps that honest.
func Verify(ctx context.Context, client *http.Client, t Target) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(t.Body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Response == nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s, not an AdmissionReview with a response (%v): %.300s", resp.Status, err, body)
	}
	got := Verdict{Allowed: review.Response.Allowed, Patched: len(review.Response.Patch) > 0}
	if t.Want.Code != 0 && review.Response.Result != nil {
		got.Code = review.Response.Result.Code
	}
	if string(review.Response.UID) != t.UID || got != t.Want {
		return fmt.Errorf("want an answer %+v to uid %s, got %+v to uid %s: %.300s", t.Want, t.UID, got, review.Response.UID, body)
	}
	if err := newChecker(t).answer(body); err != nil {
		return fmt.Errorf("the generator's check disagrees: %w", err)
	}
	return nil
}
