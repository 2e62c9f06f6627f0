package e2e

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// deleteIgnoringNotFound deletes obj at the end of a spec, whether or not it is
// still there.
func deleteIgnoringNotFound(obj client.Object) {
	DeferCleanup(func(ctx SpecContext) {
		Expect(client.IgnoreNotFound(k8s.Delete(ctx, obj))).To(Succeed())
	})
}

var _ = Describe("The control plane of the test framework", func() {
	It("collects the dependents of a deleted owner with the real garbage collector", func(ctx SpecContext) {
		kcm, err := cp.ControllerManager("garbagecollector")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() {
			kcm.Terminate()
			Eventually(kcm).WithTimeout(30 * time.Second).Should(gexec.Exit(0))
		})

		owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "gc-owner"}}
		Expect(k8s.Create(ctx, owner)).To(Succeed())
		deleteIgnoringNotFound(owner)
		dependent := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
			Namespace: "team-a",
			Name:      "gc-dependent",
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion:         "v1",
				Kind:               "ConfigMap",
				Name:               owner.Name,
				UID:                owner.UID,
				Controller:         ptr.To(true),
				BlockOwnerDeletion: ptr.To(true),
			}},
		}}
		Expect(k8s.Create(ctx, dependent)).To(Succeed())
		deleteIgnoringNotFound(dependent)

		Expect(k8s.Delete(ctx, owner, client.PropagationPolicy(metav1.DeletePropagationBackground))).To(Succeed())
		Eventually(func(g Gomega) {
			err := k8s.Get(ctx, client.ObjectKeyFromObject(dependent), &corev1.ConfigMap{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the dependent is still there: %v", err)
		}).WithContext(ctx).WithTimeout(60 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
	}, SpecTimeout(3*time.Minute))

	It("applies RBAC to the users it creates", func(ctx SpecContext) {
		kubeconfig, err := cp.Kubeconfig(GinkgoT().TempDir(), "nobody")
		Expect(err).NotTo(HaveOccurred())
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		Expect(err).NotTo(HaveOccurred())
		nobody, err := client.New(cfg, client.Options{Scheme: k8s.Scheme()})
		Expect(err).NotTo(HaveOccurred())

		err = nobody.List(ctx, &corev1.ConfigMapList{}, client.InNamespace("team-a"))
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want 403 Forbidden without any binding, got %v", err)

		role := &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "list-configmaps"},
			Rules: []rbacv1.PolicyRule{{
				APIGroups: []string{""},
				Resources: []string{"configmaps"},
				Verbs:     []string{"list"},
			}},
		}
		Expect(k8s.Create(ctx, role)).To(Succeed())
		deleteIgnoringNotFound(role)
		binding := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "nobody-lists-configmaps"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "nobody"}},
		}
		Expect(k8s.Create(ctx, binding)).To(Succeed())
		deleteIgnoringNotFound(binding)

		Eventually(func() error {
			return nobody.List(ctx, &corev1.ConfigMapList{}, client.InNamespace("team-a"))
		}).WithContext(ctx).WithTimeout(30 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
		err = nobody.List(ctx, &corev1.ConfigMapList{}, client.InNamespace("team-b"))
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "the Role binds in team-a only; want 403 Forbidden in team-b, got %v", err)
	})
})
