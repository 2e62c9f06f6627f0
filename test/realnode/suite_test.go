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
	"bytes"
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
	repo       string
	kubeconfig string
	kubectlBin string
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
	up := exec.CommandContext(ctx, filepath.Join(repo, "hack/node/up.sh"))
	up.Dir = repo
	var stdout bytes.Buffer
	up.Stdout = &stdout
	up.Stderr = GinkgoWriter
	DeferCleanup(nodeDown)
	Expect(up.Run()).To(Succeed(), "hack/node/up.sh; its output is above")
	images = map[string]string{}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	for _, l := range lines[:len(lines)-1] {
		role, ref, ok := strings.Cut(strings.TrimPrefix(l, "image "), "=")
		Expect(ok && strings.HasPrefix(l, "image ")).To(BeTrue(), "node-up printed %q: want image ROLE=REF", l)
		images[role] = ref
	}
	kubeconfig = lines[len(lines)-1]
	for _, role := range []string{"valkey", "exporter", "valkey-webhook", "busybox"} {
		Expect(images).To(HaveKey(role))
	}

	build := exec.CommandContext(ctx, filepath.Join(repo, "hack/node/build.sh"))
	out, err := build.Output()
	Expect(err).NotTo(HaveOccurred())
	kubectlBin = filepath.Join(strings.TrimSpace(string(out)), "kubectl")

	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
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
	down := exec.Command(filepath.Join(repo, "hack/node/down.sh"))
	down.Stdout, down.Stderr = GinkgoWriter, GinkgoWriter
	Expect(down.Run()).To(Succeed(), "hack/node/down.sh")
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
	if kubectlBin == "" || kubeconfig == "" {
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

// kubectl runs the node's kubectl with the admin kubeconfig and returns its
// combined output (for diagnostics; specs use run).
func kubectl(ctx context.Context, args ...string) string {
	out, err := exec.CommandContext(ctx, kubectlBin, append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("%s(kubectl %s: %v)", out, strings.Join(args, " "), err)
	}
	return string(out)
}

// run runs kubectl with stdin and returns stdout, stderr and the error.
func run(ctx context.Context, stdin string, args ...string) (string, string, error) {
	cmd := exec.CommandContext(ctx, kubectlBin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// mustRun is run that must succeed.
func mustRun(ctx context.Context, stdin string, args ...string) string {
	GinkgoHelper()
	out, errOut, err := run(ctx, stdin, args...)
	Expect(err).NotTo(HaveOccurred(), "kubectl %s: %s", strings.Join(args, " "), errOut)
	return out
}

// valkeyWebhook runs the checkout's valkey-webhook command (go run) and returns
// its stdout.
func valkeyWebhook(ctx context.Context, stdin string, args ...string) string {
	GinkgoHelper()
	cmd := exec.CommandContext(ctx, "go", append([]string{"run", "./cmd/valkey-webhook"}, args...)...)
	cmd.Dir = repo
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	Expect(cmd.Run()).To(Succeed(), "valkey-webhook %s: %s", strings.Join(args, " "), stderr.String())
	return stdout.String()
}
