// Package e2e runs valkey-webhook against a real kube-apiserver and etcd (envtest):
// the `serve` binary is built and started as a process, the webhook configurations
// are registered as they are installed, and every request goes through the API
// server the way kubectl sends it. The control plane comes from test/framework.
package e2e

import (
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/test/framework"
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "valkey-webhook on a real kube-apiserver")
}

var (
	cp        *framework.ControlPlane
	k8s       client.Client
	warnings  *framework.WarningRecorder
	server    *gexec.Session
	readyzURL string
)

var _ = BeforeSuite(func(ctx SpecContext) {
	var err error
	cp, err = framework.Start(framework.Options{Webhooks: true})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cp.Stop)
	k8s, warnings = cp.Client, cp.Warnings

	By("building and starting `valkey-webhook serve`, and waiting until it serves TLS and reports ready")
	kubeconfig, err := cp.Kubeconfig(GinkgoT().TempDir(), "")
	Expect(err).NotTo(HaveOccurred())
	// One replica: no leader election for the companion controller, which would
	// need --leader-election-namespace outside a cluster.
	server, readyzURL, err = cp.Serve(kubeconfig, "--leader-elect=false")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		server.Terminate()
		Eventually(server).WithTimeout(30 * time.Second).Should(gexec.Exit(0))
	})

	for _, ns := range []string{"team-a", "team-b", "team-c", "team-d"} {
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	}
}, NodeTimeout(5*time.Minute))
