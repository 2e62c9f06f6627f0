// Package e2e runs valkey-webhook against a real kube-apiserver and etcd (envtest):
// the `serve` binary is built and started as a process, the webhook configurations
// are registered as they are installed, and every request goes through the API
// server the way kubectl sends it.
package e2e

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/valkey-webhook/valkey-webhook/webhook"
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "valkey-webhook on a real kube-apiserver")
}

var (
	testEnv   *envtest.Environment
	k8s       client.Client
	warnings  *warningRecorder
	server    *gexec.Session
	readyzURL string
)

// warningRecorder keeps the admission warnings the API server passes on, as kubectl
// would print them.
type warningRecorder struct {
	mu   sync.Mutex
	seen []string
}

func (w *warningRecorder) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = append(w.seen, text)
}

// Take returns the warnings seen since the last call and forgets them.
func (w *warningRecorder) Take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.seen
	w.seen = nil
	return out
}

var _ = BeforeSuite(func(ctx SpecContext) {
	Expect(os.Getenv("KUBEBUILDER_ASSETS")).NotTo(BeEmpty(),
		"KUBEBUILDER_ASSETS is not set: run the tests with `make test`, which builds the control plane with hack/envtest-assets.sh")

	opts := webhook.ConfigurationOptions{
		Name:           "valkey-webhook",
		Namespace:      "valkey-webhook-system",
		ServiceName:    "valkey-webhook",
		Port:           443,
		TimeoutSeconds: 5,
	}
	testEnv = &envtest.Environment{
		WebhookInstallOptions: envtest.WebhookInstallOptions{
			MutatingWebhooks:   []*admissionregistrationv1.MutatingWebhookConfiguration{webhook.MutatingConfiguration(opts)},
			ValidatingWebhooks: []*admissionregistrationv1.ValidatingWebhookConfiguration{webhook.ValidatingConfiguration(opts)},
		},
	}
	cfg, err := testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(testEnv.Stop)

	warnings = &warningRecorder{}
	clientCfg := rest.CopyConfig(cfg)
	clientCfg.WarningHandlerWithContext = nil
	clientCfg.WarningHandler = warnings
	k8s, err = client.New(clientCfg, client.Options{Scheme: scheme.Scheme})
	Expect(err).NotTo(HaveOccurred())

	By("building and starting `valkey-webhook serve`")
	binary, err := gexec.Build("github.com/valkey-webhook/valkey-webhook/cmd/valkey-webhook")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(gexec.CleanupBuildArtifacts)

	kubeconfig := filepath.Join(GinkgoT().TempDir(), "kubeconfig")
	Expect(writeKubeconfig(cfg, kubeconfig)).To(Succeed())
	probeAddr := freeLocalAddr()
	readyzURL = "http://" + probeAddr + "/readyz"
	wio := &testEnv.WebhookInstallOptions
	cmd := exec.Command(binary, "serve",
		"--port", fmt.Sprint(wio.LocalServingPort),
		"--cert-dir", wio.LocalServingCertDir,
		"--kubeconfig", kubeconfig,
		"--health-probe-bind-address", probeAddr,
		"--metrics-bind-address", "0",
		"--shutdown-drain-delay", "0s",
	)
	server, err = gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		server.Terminate()
		Eventually(server).WithTimeout(30 * time.Second).Should(gexec.Exit(0))
	})

	By("waiting until the webhook serves TLS and reports ready")
	Eventually(func() error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp",
			net.JoinHostPort(wio.LocalServingHost, fmt.Sprint(wio.LocalServingPort)),
			&tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test only checks that TLS is served
		if err != nil {
			return err
		}
		return conn.Close()
	}).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	Eventually(func() (int, error) {
		resp, err := http.Get(readyzURL)
		if err != nil {
			return 0, err
		}
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Equal(http.StatusOK))

	for _, ns := range []string{"team-a", "team-b"} {
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	}
}, NodeTimeout(5*time.Minute))

// writeKubeconfig writes a kubeconfig for the envtest API server, for the webhook
// process.
func writeKubeconfig(cfg *rest.Config, path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["envtest"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "envtest"}
	kc.CurrentContext = "envtest"
	return clientcmd.WriteToFile(*kc, path)
}

// freeLocalAddr returns a loopback address with a port nobody listens on.
func freeLocalAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer l.Close()
	return l.Addr().String()
}
