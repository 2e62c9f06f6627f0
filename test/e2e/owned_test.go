package e2e

import (
	"time"

	"github.com/google/go-cmp/cmp"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/config"
)

// Through the real API server, with its defaulting: an override changed on a
// stored StatefulSet gives the pod template that a CREATE with it gives, one
// change after another, since each UPDATE starts from what the previous stored.
var _ = Describe("Overrides changed on a stored StatefulSet", Ordered, func() {
	const updated, created = "team-c", "team-d"

	AfterAll(func(ctx SpecContext) {
		for _, ns := range []string{updated, created} {
			Expect(k8s.DeleteAllOf(ctx, &appsv1.StatefulSet{}, client.InNamespace(ns))).To(Succeed())
		}
		warnings.Take()
	})

	BeforeAll(func(ctx SpecContext) {
		Expect(k8s.Create(ctx, minimal(updated))).To(Succeed())
	})

	overrides := map[string]string{}
	for _, change := range [][2]string{
		{"tls.secretName", "cache-tls"},
		{"metrics.enabled", "false"},
		{"valkey.port", "6380"},
		{"startupProbe.failureThreshold", "60"},
		{"topologySpreadConstraints.maxSkew", "2"},
		{"auth.enabled", "false"},
		{"metrics.enabled", "true"},
		{"tls.secretName", ""},
	} {
		It("gives for "+change[0]+"="+change[1]+" the template a CREATE gives", func(ctx SpecContext) {
			overrides[change[0]] = change[1]
			sts := update(ctx, client.ObjectKey{Namespace: updated, Name: "cache"}, func(s *appsv1.StatefulSet) {
				s.Annotations = map[string]string{}
				for k, v := range overrides {
					s.Annotations[config.AnnotationPrefix+k] = v
				}
			})

			fresh := minimal(created)
			fresh.Annotations = map[string]string{}
			for k, v := range overrides {
				fresh.Annotations[config.AnnotationPrefix+k] = v
			}
			Expect(client.IgnoreNotFound(k8s.Delete(ctx, minimal(created)))).To(Succeed())
			Eventually(func() bool {
				return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(fresh), &appsv1.StatefulSet{}))
			}).WithContext(ctx).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(BeTrue())
			Expect(k8s.Create(ctx, fresh)).To(Succeed())
			want := get(ctx, created, "cache")

			Expect(cmp.Diff(want.Spec.Template, sts.Spec.Template)).To(BeEmpty(), "the updated template differs from the created one (-create +update)")
			Expect(sts.Annotations[config.HardenedWithAnnotation]).To(Equal(want.Annotations[config.HardenedWithAnnotation]))
		})
	}
})
