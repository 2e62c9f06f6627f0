package e2e

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-cmp/cmp"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/config"
)

// restartServe replaces the running serve by one started with args, and puts
// back one with the suite's arguments when the spec (or, called from BeforeAll,
// the container) ends.
func restartServe(args ...string) {
	GinkgoHelper()
	kubeconfig := serveKubeconfig()
	replaceServe(kubeconfig, args...)
	DeferCleanup(func() { replaceServe(kubeconfig) })
}

// serveKubeconfig is a kubeconfig for serve, in a directory of the current node.
func serveKubeconfig() string {
	GinkgoHelper()
	kubeconfig, err := cp.Kubeconfig(GinkgoT().TempDir(), "")
	Expect(err).NotTo(HaveOccurred())
	return kubeconfig
}

// replaceServe stops the running serve and starts one with args.
func replaceServe(kubeconfig string, args ...string) {
	GinkgoHelper()
	server.Terminate()
	Eventually(server).WithTimeout(30 * time.Second).Should(gexec.Exit(0))
	var err error
	server, readyzURL, err = cp.Serve(kubeconfig, append([]string{"--leader-elect=false"}, args...)...)
	Expect(err).NotTo(HaveOccurred())
}

// update reads the StatefulSet, changes it with f and writes it back, again on a
// conflict (the companion controller writes too), and returns what was stored.
func update(ctx context.Context, key client.ObjectKey, f func(*appsv1.StatefulSet)) *appsv1.StatefulSet {
	GinkgoHelper()
	sts := &appsv1.StatefulSet{}
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(ctx, key, sts); err != nil {
			return err
		}
		f(sts)
		return k8s.Update(ctx, sts)
	})).To(Succeed())
	return sts
}

var _ = Describe("Day-2 updates after the policy tightened under a stored StatefulSet", Ordered, func() {
	const ns = "team-b"
	var key client.ObjectKey

	BeforeAll(func(ctx SpecContext) {
		By("storing the minimal example (6 pods) under the default policy")
		sts := minimal(ns)
		Expect(k8s.Create(ctx, sts)).To(Succeed())
		key = client.ObjectKeyFromObject(sts)
		DeferCleanup(func(ctx SpecContext) {
			Expect(client.IgnoreNotFound(k8s.Delete(ctx, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: key.Name}}))).To(Succeed())
		})

		By("restarting serve with cluster.minMasters 4: the policy now wants 8 pods")
		policy := filepath.Join(GinkgoT().TempDir(), "policy.yaml")
		Expect(os.WriteFile(policy, []byte("cluster:\n  minMasters: 4\n"), 0o600)).To(Succeed())
		restartServe("--config", policy)

		By("starting the garbage collector, which removes the orphan finalizer")
		kcm, err := cp.ControllerManager("garbagecollector")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() {
			kcm.Terminate()
			Eventually(kcm).WithTimeout(30 * time.Second).Should(gexec.Exit(0))
		})
		warnings.Take()
	}, NodeTimeout(3*time.Minute))

	It("refuses a create that breaks the new policy", func(ctx SpecContext) {
		sts := minimal(ns)
		sts.Name = "fresh"
		err := k8s.Create(ctx, sts)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want 422 Invalid, got %v", err)
		Expect(err).To(MatchError(ContainSubstring("spec.replicas: Invalid value: 6: must be at least 8")))
	})

	It("admits a label-only update, warning about the rule the stored object already breaks", func(ctx SpecContext) {
		var before corev1.PodTemplateSpec
		sts := update(ctx, key, func(s *appsv1.StatefulSet) {
			before = *s.Spec.Template.DeepCopy()
			s.Labels["team"] = "payments"
		})
		Expect(warnings.Take()).To(ContainElement(And(
			ContainSubstring("spec.replicas: Invalid value: 6: must be at least 8"),
			ContainSubstring("the stored object breaks this rule already"),
		)))
		// sts is now what the API server stored for this update (the response):
		// a write of the controller in between would have made it a conflict.
		Expect(cmp.Diff(before, sts.Spec.Template)).To(BeEmpty(), "a label-only update leaves the pod template as stored (-before +after)")
	})

	It("admits adding and removing a finalizer", func(ctx SpecContext) {
		sts := update(ctx, key, func(s *appsv1.StatefulSet) { s.Finalizers = append(s.Finalizers, "example.com/backup") })
		Expect(sts.Finalizers).To(ContainElement("example.com/backup"))
		sts = update(ctx, key, func(s *appsv1.StatefulSet) { s.Finalizers = nil })
		Expect(sts.Finalizers).To(BeEmpty())
	})

	It("refuses an update that makes the violation worse, naming the field", func(ctx SpecContext) {
		sts := get(ctx, ns, key.Name)
		sts.Spec.Replicas = new(int32(5))
		// The scale guard would refuse too (no pod runs here), and the API server
		// reports whichever denial comes first: this spec is about validation.
		sts.Annotations[config.AnnotationPrefix+"scaleGuard"] = config.ScaleGuardOff
		err := k8s.Update(ctx, sts)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want 422 Invalid, got %v", err)
		Expect(err).To(MatchError(ContainSubstring("spec.replicas: Invalid value: 5: must be at least 8")))
	})

	It("deletes with --cascade=orphan: the garbage collector's update removing its finalizer is admitted", func(ctx SpecContext) {
		sts := get(ctx, ns, key.Name)
		Expect(k8s.Delete(ctx, sts, client.PropagationPolicy(metav1.DeletePropagationOrphan))).To(Succeed())
		Eventually(func(g Gomega) {
			err := k8s.Get(ctx, key, &appsv1.StatefulSet{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the StatefulSet is still there: %v", err)
		}).WithContext(ctx).WithTimeout(60 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
	}, SpecTimeout(2*time.Minute))
})
