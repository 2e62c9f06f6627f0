// Package matrix runs labeled StatefulSets for real: a real kube-apiserver with
// the webhook, the companion and lifecycle controllers of `valkey-webhook serve`
// (as a user bound to exactly controller.ClusterRole), kube-controller-manager's
// StatefulSet controller making the pods, and test/valkeyharness's kubelet
// running each pod as a valkey-server process on its own loopback IP, with the
// files the pod mounts and its readiness probe.
//
// Each mode ({no auth, auth, TLS and auth}) goes through four scenarios, each
// writing keys before and reading every one after: the cluster forms by itself,
// a killed master's replica takes over, a full restart on all-new IPs heals by
// itself, and a config change rolls one pod at a time.
//
// The cert-manager CRDs are installed, and the test plays cert-manager where a
// StatefulSet sets tls.issuer: it writes the Secret and records the
// Certificate's revision.
package matrix

import (
	"os/exec"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/test/framework"
)

func TestMatrix(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "labeled StatefulSets run as real Valkey clusters: form, failover, heal, roll")
}

const (
	controllerUser = "valkey-webhook"
	systemNS       = "valkey-webhook-system"
)

var (
	cp  *framework.ControlPlane
	k8s client.Client
)

var _ = BeforeSuite(func(ctx SpecContext) {
	_, err := exec.LookPath("valkey-server")
	Expect(err).NotTo(HaveOccurred(), "valkey-server 8 must be installed (.ci/run installs it from bookworm-backports)")

	cp, err = framework.Start(framework.Options{Webhooks: true, CertManagerCRDs: true})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cp.Stop)
	k8s = cp.Client

	kcm, err := cp.ControllerManager("statefulset", "garbagecollector")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		kcm.Terminate()
		Eventually(kcm).WithTimeout(30 * time.Second).Should(gexec.Exit())
	})

	By("binding the controller's user to exactly controller.ClusterRole and controller.Role")
	kubeconfig, err := cp.ControllerUser(ctx, GinkgoT().TempDir(), controllerUser, systemNS)
	Expect(err).NotTo(HaveOccurred())
	server, _, err := cp.Serve(kubeconfig, "--leader-election-namespace", systemNS)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		server.Terminate()
		Eventually(server).WithTimeout(30 * time.Second).Should(gexec.Exit(0))
	})
}, NodeTimeout(5*time.Minute))
