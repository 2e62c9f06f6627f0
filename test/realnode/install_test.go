//go:build realnode

package realnode

import (
	"context"
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
