package reliability

import (
	"errors"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/defaults"
	"github.com/valkey-webhook/valkey-webhook/webhook"
)

// unlabeled is the minimal example without the label: a Valkey cluster that did
// not opt in, which only the enforcement webhook (failing open) sees.
func unlabeled(namespace, name string) *appsv1.StatefulSet {
	sts := minimal(namespace, name)
	delete(sts.Labels, defaults.ClusterLabel)
	sts.Spec.Template.Spec.Containers[0].Args = []string{"--cluster-enabled", "yes"}
	return sts
}

// hardened reports whether admission hardened a stored StatefulSet.
func hardened(sts *appsv1.StatefulSet) bool {
	return sts.Spec.Template.Annotations[defaults.ChecksumAnnotation] != ""
}

// webhookError checks that err is the API server's error for a webhook it could not
// call: it names the webhook and says why.
func webhookError(err error, why ...string) {
	GinkgoHelper()
	Expect(err).To(HaveOccurred())
	Expect(apierrors.IsTimeout(err)).To(BeFalse(), "a timeout at the API server: %v", err)
	var status apierrors.APIStatus
	Expect(errors.As(err, &status)).To(BeTrue(), "not an API status: %v", err)
	Expect(err.Error()).To(ContainSubstring(`failed calling webhook "` + webhook.MutateWebhookName + `"`))
	for _, w := range why {
		Expect(err.Error()).To(ContainSubstring(w))
	}
}

// otherObjects are objects of other kinds, none of which the webhooks see.
func otherObjects(namespace string) []client.Object {
	labels := map[string]string{"app": "other"}
	return []client.Object{
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "other", Labels: map[string]string{defaults.ClusterLabel: defaults.ClusterLabelEnabled}}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "other"}, StringData: map[string]string{"k": "v"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "other"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}},
		&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "other", Labels: map[string]string{defaults.ClusterLabel: defaults.ClusterLabelEnabled}},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox:1.36"}}}},
			},
		},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "other", Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox:1.36"}}}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "other"}},
	}
}

var _ = Describe("An outage of the webhook", func() {
	It("admits unlabeled StatefulSets and every other object, refuses labeled ones with the API server's webhook error, and never involves kube-system or its own namespace", func(ctx SpecContext) {
		srv := startServe()
		cleanup := func(objs ...client.Object) {
			DeferCleanup(func(ctx SpecContext) {
				for _, o := range objs {
					Expect(client.IgnoreNotFound(k8s.Delete(ctx, o))).To(Succeed())
				}
			})
		}

		By("while it runs: none in kube-system or the webhook's namespace is ever sent to it, a labeled StatefulSet elsewhere is hardened")
		before := srv.requests()
		for _, namespace := range []string{"kube-system", webhookNS} {
			sts := minimal(namespace, "while-up")
			Expect(k8s.Create(ctx, sts)).To(Succeed())
			cleanup(sts)
			Expect(hardened(sts)).To(BeFalse(), "%s: the webhook hardened it", namespace)
		}
		Expect(srv.requests()).To(Equal(before), "admission requests for kube-system or %s reached the webhook", webhookNS)
		existing := minimal(ns, "existing")
		Expect(k8s.Create(ctx, existing)).To(Succeed())
		cleanup(existing)
		Expect(hardened(existing)).To(BeTrue())
		Expect(srv.requests()).To(BeNumerically(">", before), "the webhook's request counter")

		By("stopping the webhook")
		srv.session.Terminate()
		Eventually(srv.session).WithTimeout(time.Minute).Should(gexec.Exit(0))

		By("admitting unlabeled StatefulSets, their updates, and every other kind of object")
		down := unlabeled(ns, "unlabeled-while-down")
		Expect(k8s.Create(ctx, down)).To(Succeed())
		cleanup(down)
		down.Spec.Replicas = ptr.To(int32(9))
		Expect(k8s.Update(ctx, down)).To(Succeed())
		objs := otherObjects(ns)
		for _, o := range objs {
			Expect(k8s.Create(ctx, o)).To(Succeed(), "%T", o)
		}
		cleanup(objs...)

		By("refusing a labeled StatefulSet, its create and its update, with the API server's error naming the webhook")
		webhookError(k8s.Create(ctx, minimal(ns, "labeled-while-down")), "connection refused")
		update := existing.DeepCopy()
		update.Annotations = map[string]string{"example.com/touched": "yes"}
		webhookError(k8s.Update(ctx, update), "connection refused")

		By("letting through a scale (the scale guard's webhook for the scale subresource fails open) and a delete (no webhook is registered for it) of a labeled StatefulSet")
		scale := &autoscalingv1.Scale{Spec: autoscalingv1.ScaleSpec{Replicas: 9}}
		Expect(k8s.SubResource("scale").Update(ctx, existing, client.WithSubResourceBody(scale))).To(Succeed())
		Expect(k8s.Delete(ctx, existing)).To(Succeed())

		By("admitting labeled StatefulSets in kube-system and in the webhook's own namespace, unhardened")
		for _, namespace := range []string{"kube-system", webhookNS} {
			sts := minimal(namespace, "while-down")
			Expect(k8s.Create(ctx, sts)).To(Succeed(), namespace)
			cleanup(sts)
			Expect(hardened(sts)).To(BeFalse())
		}
	}, SpecTimeout(3*time.Minute))
})
