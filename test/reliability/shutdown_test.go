package reliability

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/valkey-webhook/valkey-webhook/test/framework"
)

// slowRequest is a request whose body is sent in two halves, the second when the
// test says: the server is in its handler, reading, until then.
type slowRequest struct {
	rest   []byte
	writer *io.PipeWriter
	done   chan error
}

// startSlowRequest sends the first half of body to path and returns at once.
func startSlowRequest(c *http.Client, addr, path string, body []byte) *slowRequest {
	r, w := io.Pipe()
	s := &slowRequest{rest: body[len(body)/2:], writer: w, done: make(chan error, 1)}
	go func() {
		defer GinkgoRecover()
		req, err := http.NewRequest(http.MethodPost, "https://"+addr+path+"?timeout="+strconv.Itoa(timeoutSeconds)+"s", r)
		if err != nil {
			s.done <- err
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.ContentLength = int64(len(body))
		resp, err := c.Do(req)
		if err != nil {
			s.done <- err
			return
		}
		defer resp.Body.Close()
		review := &admissionv1.AdmissionReview{}
		if err := json.NewDecoder(resp.Body).Decode(review); err != nil || review.Response == nil {
			s.done <- fmt.Errorf("HTTP %d, not an AdmissionReview: %v", resp.StatusCode, err)
			return
		}
		if !review.Response.Allowed {
			s.done <- fmt.Errorf("denied: %+v", review.Response.Result)
			return
		}
		s.done <- nil
	}()
	go func() {
		defer GinkgoRecover()
		_, _ = w.Write(body[:len(body)/2])
	}()
	return s
}

// finish sends the second half of the body.
func (s *slowRequest) finish() {
	go func() {
		defer GinkgoRecover()
		_, _ = s.writer.Write(s.rest)
		_ = s.writer.Close()
	}()
}

var _ = Describe("Graceful shutdown", func() {
	It("on SIGTERM is not ready at once, serves in-flight and new requests for the drain delay, then exits 0", func(ctx SpecContext) {
		const drain = 8 * time.Second
		// The loads stop this long before the drain delay ends: by then the API
		// server and the Service have stopped sending requests to a pod that is not
		// ready, which is what the delay is for.
		const margin = 2 * time.Second
		srv := startServe("--shutdown-drain-delay", drain.String())
		https := defaultClient()
		slowBody := reviewOf("CREATE", minimalJSON(), nil, 7)

		By("running a load through the API server and straight to the webhook over kept-alive connections")
		loads := []*framework.Load{
			apiServerLoad(3, 20000),
			directLoad(2, 50000, srv.addr, true, cp.Env.WebhookInstallOptions.LocalServingCAData),
		}
		stop := runLoads(ctx, loads...)
		progressed(loads, 10)

		By("sending SIGTERM")
		sent := make([]int64, len(loads))
		for i, l := range loads {
			sent[i] = l.Sent()
		}
		signalled := time.Now()
		srv.session.Signal(syscall.SIGTERM)
		Eventually(srv.ready).WithTimeout(5*time.Second).WithPolling(10*time.Millisecond).Should(BeFalse(), "/readyz turns false")
		notReadyAfter := time.Since(signalled)

		By("starting a request that stays in the handler until the server shuts down")
		// The enforcement webhook: the load's labeled StatefulSets never reach it,
		// so its in-flight gauge counts this request alone.
		slow := startSlowRequest(https, srv.addr, "/enforce-statefulset", slowBody)
		Eventually(func() float64 {
			return srv.metric("controller_runtime_webhook_requests_in_flight", `webhook="/enforce-statefulset"`)
		}).WithTimeout(drain-margin).WithPolling(poll).Should(Equal(1.0), "the slow request is in the handler")

		By("still running and serving until shortly before the drain delay is over")
		Consistently(srv.session.ExitCode).WithTimeout(drain-margin-time.Since(signalled)).WithPolling(poll).
			Should(Equal(-1), "serve exited before the drain delay was over")
		results := stop()

		By("finishing the slow request once the server has closed its listener")
		Eventually(func() error {
			conn, err := net.DialTimeout("tcp", srv.addr, time.Second)
			if err != nil {
				return nil
			}
			_ = conn.Close()
			return fmt.Errorf("%s still accepts connections", srv.addr)
		}).WithTimeout(drain + time.Minute).WithPolling(poll).Should(Succeed())
		closedAfter := time.Since(signalled)
		Expect(closedAfter).To(BeNumerically(">=", drain), "the server closed its listener before the drain delay was over")
		Expect(srv.session.ExitCode()).To(Equal(-1), "serve exited with a request under way")
		slow.finish()
		Eventually(slow.done).WithTimeout(time.Minute).Should(Receive(BeNil()), "the request under way when the server shut down")

		Eventually(srv.session).WithTimeout(time.Minute).Should(gexec.Exit(0))
		exitedAfter := time.Since(signalled)

		total, after := int64(1), int64(1)
		for i, r := range results {
			GinkgoWriter.Printf("shutdown load %d: %s; %d after SIGTERM\n", i, r, r.Sent-sent[i])
			Expect(r.Failed).To(BeZero(), "load %d: %s", i, r)
			total += r.Sent
			after += r.Sent - sent[i]
		}
		Expect(after).To(BeNumerically(">", 1), "requests were sent after SIGTERM")
		report := fmt.Sprintf("%d requests, %d of them after SIGTERM, 0 failed; not ready %s after SIGTERM; listener closed %s after SIGTERM (drain delay %s) with one request under way, which was answered; exited 0 %s after SIGTERM",
			total, after, notReadyAfter.Round(time.Millisecond), closedAfter.Round(time.Millisecond), drain, exitedAfter.Round(time.Millisecond))
		AddReportEntry("graceful shutdown", report)
		GinkgoWriter.Println("graceful shutdown:", report)
		Expect(srv.log()).To(ContainSubstring("not ready any more"))
	}, SpecTimeout(3*time.Minute))
})
