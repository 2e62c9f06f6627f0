// Package companions runs the companion controller of `valkey-webhook serve`
// against a real kube-apiserver, with the real garbage collector of
// kube-controller-manager and the cert-manager CRDs installed. The serve process
// runs as a user bound to exactly controller.ClusterRole, so the role is proven to
// be enough.
package companions

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

func TestCompanions(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "companion objects on a real kube-apiserver and garbage collector")
}

const controllerUser = "valkey-webhook"

var (
	cp     *framework.ControlPlane
	k8s    client.Client
	server *gexec.Session
)

var _ = BeforeSuite(func(ctx SpecContext) {
	var err error
	cp, err = framework.Start(framework.Options{Webhooks: true, CertManagerCRDs: true})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cp.Stop)
	k8s = cp.Client

	gc, err := cp.ControllerManager("garbagecollector")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		gc.Terminate()
		Eventually(gc).WithTimeout(30 * time.Second).Should(gexec.Exit())
	})

	By("binding the controller's user to exactly controller.ClusterRole and controller.Role")
	kubeconfig, err := cp.ControllerUser(ctx, GinkgoT().TempDir(), controllerUser, "valkey-webhook-system")
	Expect(err).NotTo(HaveOccurred())
	Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}})).To(Succeed())
	server, _, err = cp.Serve(kubeconfig, "--leader-election-namespace", "valkey-webhook-system", "--namespace", "valkey-webhook-system")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		server.Terminate()
		Eventually(server).WithTimeout(30 * time.Second).Should(gexec.Exit(0))
	})
}, NodeTimeout(5*time.Minute))
