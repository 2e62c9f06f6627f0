// Package reliability runs `valkey-webhook serve` as a process behind a real
// kube-apiserver (envtest) and checks that it stays up and correct under what
// production throws at it: malformed and oversized AdmissionReviews over HTTPS,
// certificate rotation under load, SIGTERM under load, its own outage, the
// generated passwords, and time budgets. docs/reliability.md lists each spec with
// its figures and the command that reproduces it.
package reliability

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/valkey-webhook/valkey-webhook/test/framework"
)

func TestReliability(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "valkey-webhook reliability: bad input, rotation, shutdown, outage, secrets, time budgets")
}

const (
	ns        = "team-a"
	webhookNS = "valkey-webhook-system"
	// timeoutSeconds is the webhooks' timeoutSeconds as the framework installs them.
	timeoutSeconds = 5
	poll           = 50 * time.Millisecond
)

var (
	cp         *framework.ControlPlane
	k8s        client.Client
	kubeconfig string

	// sessions are every serve process the suite started, for the log checks.
	sessionsMu sync.Mutex
	sessions   []*gexec.Session
)

var _ = BeforeSuite(func(ctx SpecContext) {
	var err error
	cp, err = framework.Start(framework.Options{Webhooks: true})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cp.Stop)
	k8s = cp.Client
	kubeconfig, err = cp.Kubeconfig(GinkgoT().TempDir(), "")
	Expect(err).NotTo(HaveOccurred())
	for _, name := range []string{ns, webhookNS} {
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})).To(Succeed())
	}
}, NodeTimeout(5*time.Minute))

// server is one running `valkey-webhook serve`.
type server struct {
	session *gexec.Session
	readyz  string
	metrics string
	// addr is the webhook's host:port.
	addr string
}

// startServe starts `valkey-webhook serve` as the admin, on the webhook port the
// API server calls, with /metrics on a free port and the companion controller
// without leader election; extra flags win. It is stopped at the end of the spec
// (SIGTERM, exit code 0) unless the spec stopped it.
func startServe(extra ...string) *server {
	return startServeAs(kubeconfig, extra...)
}

// startServeAs is startServe with the credentials of another kubeconfig.
func startServeAs(kubeconfig string, extra ...string) *server {
	metricsAddr, err := framework.FreeLocalAddr()
	Expect(err).NotTo(HaveOccurred())
	args := append([]string{"--leader-elect=false", "--metrics-bind-address", metricsAddr}, extra...)
	session, readyz, err := cp.Serve(kubeconfig, args...)
	Expect(err).NotTo(HaveOccurred())
	sessionsMu.Lock()
	sessions = append(sessions, session)
	sessionsMu.Unlock()
	DeferCleanup(func() {
		if session.ExitCode() == -1 {
			_ = session.Command.Process.Signal(syscall.SIGCONT)
			session.Terminate()
			Eventually(session).WithTimeout(60 * time.Second).Should(gexec.Exit(0))
		}
	})
	wio := &cp.Env.WebhookInstallOptions
	addr := framework.HostPort(wio.LocalServingHost, wio.LocalServingPort)
	for i, a := range args {
		if a == "--port" && i+1 < len(args) {
			addr = framework.HostPort(wio.LocalServingHost, mustAtoi(args[i+1]))
		}
	}
	return &server{session: session, readyz: readyz, metrics: "http://" + metricsAddr + "/metrics", addr: addr}
}

func mustAtoi(s string) int {
	n, err := strconv.Atoi(s)
	Expect(err).NotTo(HaveOccurred())
	return n
}

// ready reports whether /readyz answers 200.
func (s *server) ready() bool {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(s.readyz)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// metric sums the samples of a Prometheus counter whose labels contain every one
// of labels (written as `name="value"`).
func (s *server) metric(name string, labels ...string) float64 {
	resp, err := http.Get(s.metrics)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	sum, err := framework.MetricSum(string(body), name, labels...)
	Expect(err).NotTo(HaveOccurred())
	return sum
}

// requests is how many admission requests the webhooks received.
func (s *server) requests() float64 {
	return s.metric("controller_runtime_webhook_requests_total")
}

// panics is how many panics the webhooks recovered from.
func (s *server) panics() float64 {
	return s.metric("controller_runtime_webhook_panics_total")
}

// log is everything the process wrote so far.
func (s *server) log() string {
	return string(s.session.Out.Contents()) + string(s.session.Err.Contents())
}

// httpsClient trusts the given CAs, as the API server trusts the caBundle. Without
// keep-alive every request makes a new TLS handshake, which is what sees a rotated
// certificate.
func httpsClient(keepAlive bool, cas ...[]byte) *http.Client {
	pool := x509.NewCertPool()
	for _, ca := range cas {
		Expect(pool.AppendCertsFromPEM(ca)).To(BeTrue())
	}
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2: true,
			DisableKeepAlives: !keepAlive,
		},
	}
}

// defaultClient trusts the CA of the certificate the framework serves with.
func defaultClient() *http.Client {
	return httpsClient(true, cp.Env.WebhookInstallOptions.LocalServingCAData)
}

// post sends body to a webhook path as the API server does, and returns the HTTP
// status and the AdmissionReview answered.
func post(ctx context.Context, c *http.Client, addr, path string, body []byte) (int, *admissionv1.AdmissionReview, error) {
	return postWithType(ctx, c, addr, path, "application/json", body)
}

func postWithType(ctx context.Context, c *http.Client, addr, path, contentType string, body []byte) (int, *admissionv1.AdmissionReview, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+path+"?timeout="+strconv.Itoa(timeoutSeconds)+"s", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	review := &admissionv1.AdmissionReview{}
	if err := json.Unmarshal(data, review); err != nil || review.Response == nil {
		return resp.StatusCode, nil, fmt.Errorf("HTTP %d, not an AdmissionReview with a response: %v: %.300q", resp.StatusCode, err, data)
	}
	return resp.StatusCode, review, nil
}

// admitted posts a CREATE of the minimal example to the mutating webhook and fails
// unless it is allowed with a patch; it is the request the load generators send.
func admitted(ctx context.Context, c *http.Client, addr string, n int64) error {
	status, review, err := post(ctx, c, addr, "/mutate-statefulset", reviewOf("CREATE", minimalJSON(), nil, n))
	if err != nil {
		return err
	}
	if status != http.StatusOK || !review.Response.Allowed || len(review.Response.Patch) == 0 {
		return fmt.Errorf("request %d: HTTP %d, %+v", n, status, review.Response.Result)
	}
	return nil
}

// reviewOf wraps an object into an AdmissionReview for a StatefulSet.
func reviewOf(op string, object, oldObject []byte, n int64) []byte {
	req := map[string]any{
		"uid":       fmt.Sprintf("00000000-0000-4000-8000-%012d", n),
		"kind":      map[string]string{"group": "apps", "version": "v1", "kind": "StatefulSet"},
		"resource":  map[string]string{"group": "apps", "version": "v1", "resource": "statefulsets"},
		"name":      "cache",
		"namespace": ns,
		"operation": op,
		"userInfo":  map[string]any{"username": "reliability"},
	}
	if object != nil {
		req["object"] = json.RawMessage(object)
	}
	if oldObject != nil {
		req["oldObject"] = json.RawMessage(oldObject)
	}
	body, err := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
	Expect(err).NotTo(HaveOccurred())
	return body
}

// repoFile is a path inside the repository.
func repoFile(rel string) string {
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(here), "..", "..", rel)
}

var minimalOnce = sync.OnceValue(func() []byte {
	data, err := os.ReadFile(repoFile("examples/minimal-statefulset.yaml"))
	if err != nil {
		panic(err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		panic(err)
	}
	return js
})

// minimalJSON is examples/minimal-statefulset.yaml as JSON.
func minimalJSON() []byte { return minimalOnce() }

// minimal is examples/minimal-statefulset.yaml, named name, in namespace.
func minimal(namespace, name string) *appsv1.StatefulSet {
	sts := &appsv1.StatefulSet{}
	Expect(json.Unmarshal(minimalJSON(), sts)).To(Succeed())
	sts.Namespace, sts.Name = namespace, name
	return sts
}

// servedSerial makes a new TLS handshake with addr and returns the serial number of
// the certificate it presents (not verified: the check is which one it is).
func servedSerial(addr string) (*big.Int, error) {
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reads the served certificate
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber, nil
}

// objectMeta names an object of the suite's namespace.
func objectMeta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name}
}

// key is the key of an object of the suite's namespace.
func key(name string) client.ObjectKey {
	return client.ObjectKey{Namespace: ns, Name: name}
}
