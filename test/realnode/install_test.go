//go:build realnode

package realnode

import (
	"context"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// installWebhook installs valkey-webhook as a user does
// (framework.Node.InstallManifests: generate install --cert-mode self-managed with
// the node's policy) and waits until both replicas are Ready and the API server
// calls them through their Service.
func installWebhook(ctx context.Context) {
	GinkgoHelper()
	By("generate install --cert-mode self-managed --image " + images["valkey-webhook"] + " | kubectl apply -f -")
	manifests, err := node.InstallManifests(ctx)
	Expect(err).NotTo(HaveOccurred())
	mustRun(ctx, manifests, "apply", "-f", "-")

	By("two replicas Ready, started together, neither restarted")
	Eventually(func(g Gomega) {
		d := &appsv1.Deployment{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: webhookNS, Name: "valkey-webhook"}, d)).To(Succeed())
		g.Expect(d.Status.ReadyReplicas).To(Equal(int32(2)))
	}).WithContext(ctx).WithTimeout(settle).Should(Succeed())
	pods := &corev1.PodList{}
	Expect(k8s.List(ctx, pods, client.InNamespace(webhookNS), client.MatchingLabels{"app.kubernetes.io/name": "valkey-webhook"})).To(Succeed())
	Expect(pods.Items).To(HaveLen(2))
	for _, p := range pods.Items {
		for _, c := range p.Status.ContainerStatuses {
			Expect(c.RestartCount).To(BeZero(), "%s restarted: %s", p.Name, kubectl(ctx, "-n", webhookNS, "logs", p.Name, "--previous"))
		}
	}

	By("the configurations carry the self-managed CA, and the API server calls the webhook through its Service")
	Eventually(func(g Gomega) {
		m := &admissionregistrationv1.MutatingWebhookConfiguration{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: "valkey-webhook"}, m)).To(Succeed())
		for _, w := range m.Webhooks {
			g.Expect(w.ClientConfig.CABundle).NotTo(BeEmpty(), "caBundle of %s", w.Name)
			g.Expect(w.ClientConfig.Service).NotTo(BeNil(), "%s calls a Service", w.Name)
		}
		out, errOut, err := run(ctx, minimalExample("default"), "apply", "--dry-run=server", "-o", "yaml", "-f", "-")
		g.Expect(err).NotTo(HaveOccurred(), errOut)
		g.Expect(out).To(ContainSubstring("valkey-webhook.io/config-checksum"), "a server-side dry run is mutated")
	}).WithContext(ctx).WithTimeout(settle).WithPolling(2 * time.Second).Should(Succeed())
}

// minimalExample is examples/minimal-statefulset.yaml in namespace ns, with the
// node's Valkey image.
func minimalExample(ns string) string {
	GinkgoHelper()
	s, err := node.MinimalExample(ns)
	Expect(err).NotTo(HaveOccurred())
	return s
}

// webhookLogs holds the logs of valkey-webhook's pods replaced during the run
// (keepWebhookLogs), for the check after the suite.
var webhookLogs strings.Builder

// keepWebhookLogs keeps the whole logs of the webhook's pods running now.
func keepWebhookLogs(ctx context.Context) {
	GinkgoHelper()
	webhookLogs.WriteString(mustRun(ctx, "", "-n", webhookNS, "logs", "-l", "app.kubernetes.io/name=valkey-webhook",
		"--all-containers", "--prefix", "--tail=-1", "--max-log-requests=10"))
}

// After every spec (init, heal, join, forget, the scale guard, companions, the
// webhook's own roll), valkey-webhook ran with exactly the roles `generate
// install` gives it: no request was forbidden, in the logs of any of its pods.
var _ = AfterSuite(func(ctx SpecContext) {
	if node == nil {
		return
	}
	keepWebhookLogs(ctx)
	var forbidden []string
	for line := range strings.Lines(webhookLogs.String()) {
		// The API server's RBAC refusal: `pods is forbidden: User "system:..." cannot ...`
		if strings.Contains(line, "is forbidden: User") {
			forbidden = append(forbidden, line)
		}
	}
	Expect(forbidden).To(BeEmpty(), "valkey-webhook was refused by RBAC; its ClusterRole (controller/rbac.go) lacks a permission")
	AddReportEntry("valkey-webhook's logs", fmt.Sprintf("%d lines, none forbidden", strings.Count(webhookLogs.String(), "\n")))
})
