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

// installPolicy is the policy the suite installs with: the node's images (no
// registry is reachable), the rest the built-in defaults. The metrics image is
// the exporter STAND-IN (hack/node/exporter-stand-in), not redis_exporter.
func installPolicy() string {
	return fmt.Sprintf("image:\n  valkey: %s\nmetrics:\n  image: %s\n", images["valkey"], images["exporter"])
}

// installWebhook installs valkey-webhook as a user does: `generate install
// --cert-mode self-managed --image IMAGE | kubectl apply -f -`, with the policy
// ConfigMap holding installPolicy (a user's own policy goes there), and waits
// until both replicas are Ready and the API server calls them through their
// Service.
func installWebhook(ctx context.Context) {
	GinkgoHelper()
	By("generate install --cert-mode self-managed --image " + images["valkey-webhook"] + " | kubectl apply -f -")
	manifests := valkeyWebhook(ctx, "", "generate", "install", "--cert-mode", "self-managed", "--image", images["valkey-webhook"])
	const generated = "    enforcement:\n      unlabeled: warn\n"
	Expect(strings.Count(manifests, generated)).To(Equal(1), "the policy ConfigMap of generate install")
	policy := generated + "    " + strings.ReplaceAll(strings.TrimSuffix(installPolicy(), "\n"), "\n", "\n    ") + "\n"
	manifests = strings.Replace(manifests, generated, policy, 1)
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
	b := readRepoFile("examples/minimal-statefulset.yaml")
	b = strings.Replace(b, "image: docker.io/valkey/valkey:8.0.1", "image: "+images["valkey"], 1)
	b = strings.Replace(b, "namespace: team-a", "namespace: "+ns, 1)
	Expect(b).To(ContainSubstring(images["valkey"]))
	return b
}
