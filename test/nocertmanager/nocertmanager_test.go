// Package nocertmanager runs `valkey-webhook serve` on a cluster without
// cert-manager's CRDs: a StatefulSet asking for a Certificate gets a clear Event,
// and everything else still works.
package nocertmanager

import (
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/controller"
	"github.com/valkey-webhook/valkey-webhook/defaults"
	"github.com/valkey-webhook/valkey-webhook/test/framework"
)

func TestNoCertManager(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "serve without cert-manager's CRDs")
}

var _ = Describe("Without cert-manager", func() {
	It("reports the missing Certificate kind and reconciles everything else", func(ctx SpecContext) {
		cp, err := framework.Start(framework.Options{Webhooks: true})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(cp.Stop)
		for _, ns := range []string{"valkey-webhook-system", "team-a"} {
			Expect(cp.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		}
		kubeconfig, err := cp.Kubeconfig(GinkgoT().TempDir(), "")
		Expect(err).NotTo(HaveOccurred())
		server, _, err := cp.Serve(kubeconfig, "--leader-election-namespace", "valkey-webhook-system")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() {
			server.Terminate()
			Eventually(server).WithTimeout(30 * time.Second).Should(gexec.Exit(0))
		})

		labels := map[string]string{"app": "secure"}
		sts := &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{
				Name: "secure", Namespace: "team-a",
				Labels:      map[string]string{defaults.ClusterLabel: defaults.ClusterLabelEnabled},
				Annotations: map[string]string{"valkey-webhook.io/tls.issuer": "ClusterIssuer/internal-ca"},
			},
			Spec: appsv1.StatefulSetSpec{
				Replicas: ptr.To(int32(6)),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{
						Name: "valkey", Image: "docker.io/valkey/valkey:8.0.7",
						Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}},
					}}},
				},
			},
		}
		Expect(cp.Client.Create(ctx, sts)).To(Succeed())

		Eventually(func() ([]string, error) {
			list := &eventsv1.EventList{}
			err := cp.Client.List(ctx, list, client.InNamespace("team-a"))
			var out []string
			for _, e := range list.Items {
				if e.Regarding.Name == "secure" {
					out = append(out, e.Reason)
				}
			}
			return out, err
		}).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(ContainElement(controller.ReasonCertManager))
		companions := []struct {
			name string
			obj  client.Object
		}{{"secure-config", &corev1.ConfigMap{}}, {"secure-auth", &corev1.Secret{}}, {"secure-headless", &corev1.Service{}}}
		for _, c := range companions {
			Eventually(func() error {
				return cp.Client.Get(ctx, types.NamespacedName{Namespace: "team-a", Name: c.name}, c.obj)
			}).WithTimeout(30*time.Second).WithPolling(100*time.Millisecond).Should(Succeed(), "%s", c.name)
		}
		Consistently(server).WithTimeout(2*time.Second).ShouldNot(gexec.Exit(), "no crash loop")
	})
})
