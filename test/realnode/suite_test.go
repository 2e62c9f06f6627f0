//go:build realnode

// Package realnode proves on a real single-node Kubernetes (hack/node/up.sh:
// kubelet, containerd, runc, the CNI bridge, kube-proxy, CoreDNS, kube-router,
// local-path-provisioner) what the webhook promises about pods: valkey-webhook
// installed in-cluster exactly as `generate install` installs it, the minimal
// example forming its cluster by itself, what a hardened pod runs with, the
// companion NetworkPolicy enforced, a full restart healed, the in-cluster webhook
// denying, and its own roll costing no admission request. It needs root and Linux;
// `make test` runs it after the other suites (build tag realnode). The metrics
// sidecar runs a stand-in image (hack/node/exporter-stand-in), named as one.
package realnode

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/test/framework"
)

func TestRealNode(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "a real node: the webhook in-cluster, hardened pods under a real kubelet")
}

const (
	// webhookNS is where `generate install` puts valkey-webhook.
	webhookNS = "valkey-webhook-system"
	// settle bounds each wait for the node or a cluster to reach a state by itself.
	settle = 3 * time.Minute
)

var (
	repo string
	node *framework.Node
	// images maps each role of hack/node/images (valkey, exporter, valkey-webhook,
	// ...) to the reference node-up imported.
	images map[string]string
	k8s    client.Client
)

var _ = BeforeSuite(func(ctx SpecContext) {
	var err error
	repo, err = filepath.Abs("../..")
	Expect(err).NotTo(HaveOccurred())

	By("starting the node (make node-up)")
	DeferCleanup(nodeDown)
	node, err = framework.NodeUp(ctx, repo, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	images = node.Images

	cfg, err := clientcmd.BuildConfigFromFlags("", node.Kubeconfig)
	Expect(err).NotTo(HaveOccurred())
	scheme, err := framework.Scheme()
	Expect(err).NotTo(HaveOccurred())
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	installWebhook(ctx)
}, NodeTimeout(20*time.Minute))

// nodeDown stops the node; when a spec failed it first reports the pods' logs,
// the Events and the node's own logs.
func nodeDown(ctx context.Context) {
	if CurrentSpecReport().Failed() || suiteFailed {
		reportDiagnostics(ctx)
	}
	Expect(framework.NodeDown(repo, GinkgoWriter)).To(Succeed(), "hack/node/down.sh")
}

var suiteFailed bool

var _ = ReportAfterEach(func(r SpecReport) {
	if r.Failed() {
		suiteFailed = true
	}
})

// reportDiagnostics attaches what a failed run needs: every pod's logs (also of
// the previous container), the Events of every namespace, the node components'
// log tails.
func reportDiagnostics(ctx context.Context) {
	if node == nil {
		return
	}
	var b strings.Builder
	fmt.Fprintln(&b, kubectl(ctx, "get", "pods", "-A", "-o", "wide"))
	fmt.Fprintln(&b, kubectl(ctx, "get", "events", "-A", "--sort-by=.lastTimestamp"))
	pods := kubectl(ctx, "get", "pods", "-A", "-o", `jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}{"\n"}{end}`)
	sc := bufio.NewScanner(strings.NewReader(pods))
	for sc.Scan() {
		ns, name, ok := strings.Cut(sc.Text(), "/")
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "---- logs of %s/%s\n%s\n", ns, name, kubectl(ctx, "-n", ns, "logs", name, "--all-containers", "--tail=60"))
		fmt.Fprintf(&b, "---- previous logs of %s/%s\n%s\n", ns, name, kubectl(ctx, "-n", ns, "logs", name, "--all-containers", "--previous", "--tail=30"))
	}
	AddReportEntry("pods, events and pod logs", b.String())
	logs, _ := filepath.Glob("/var/lib/valkey-webhook-node/logs/*.log")
	var n strings.Builder
	for _, f := range logs {
		out, _ := exec.Command("tail", "-n", "40", f).Output()
		fmt.Fprintf(&n, "---- %s\n%s\n", f, out)
	}
	AddReportEntry("node logs", n.String())
}

// kubectl runs the node's kubectl and returns its output, or the error's text
// (for diagnostics; specs use run and mustRun).
func kubectl(ctx context.Context, args ...string) string {
	out, _, err := node.Kubectl(ctx, "", args...)
	if err != nil {
		return out + err.Error()
	}
	return out
}

// run runs kubectl with stdin and returns stdout, stderr and the error.
func run(ctx context.Context, stdin string, args ...string) (string, string, error) {
	return node.Kubectl(ctx, stdin, args...)
}

// mustRun is run that must succeed.
func mustRun(ctx context.Context, stdin string, args ...string) string {
	GinkgoHelper()
	out, _, err := node.Kubectl(ctx, stdin, args...)
	Expect(err).NotTo(HaveOccurred())
	return out
}

// valkeyWebhook runs the checkout's valkey-webhook command (go run) and returns
// its stdout.
func valkeyWebhook(ctx context.Context, args ...string) string {
	GinkgoHelper()
	out, err := node.ValkeyWebhook(ctx, args...)
	Expect(err).NotTo(HaveOccurred())
	return out
}
