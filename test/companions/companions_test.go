package companions

import (
	"context"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/controller"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

const (
	ns      = "team-a"
	timeout = 30 * time.Second
	poll    = 100 * time.Millisecond
)

// labeled is the minimal labeled StatefulSet of examples/, named name.
func labeled(name string, annotations map[string]string) *appsv1.StatefulSet {
	labels := map[string]string{"app": name}
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns, Annotations: annotations,
			Labels: map[string]string{defaults.ClusterLabel: defaults.ClusterLabelEnabled},
		},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To(int32(6)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:  "valkey",
					Image: "docker.io/valkey/valkey:8.0.7",
					Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{
						corev1.ResourceMemory: resource.MustParse("1Gi"),
					}},
				}}},
			},
		},
	}
}

func key(name string) types.NamespacedName { return types.NamespacedName{Namespace: ns, Name: name} }

// fetch returns a function for Eventually that reads an object of that name.
func fetch[T client.Object](ctx context.Context, obj T, name string) func() (T, error) {
	return func() (T, error) {
		err := k8s.Get(ctx, key(name), obj)
		return obj, err
	}
}

// exists returns a function for Eventually that succeeds once the object exists.
func exists(ctx context.Context, obj client.Object, name string) func() error {
	return func() error { return k8s.Get(ctx, key(name), obj) }
}

func stsOf(ctx context.Context, name string) *appsv1.StatefulSet {
	sts := &appsv1.StatefulSet{}
	Expect(k8s.Get(ctx, key(name), sts)).To(Succeed())
	return sts
}

// reasons lists the reasons of the Events about a StatefulSet.
func reasons(ctx context.Context, sts string) func() ([]string, error) {
	return func() ([]string, error) {
		list := &eventsv1.EventList{}
		if err := k8s.List(ctx, list, client.InNamespace(ns)); err != nil {
			return nil, err
		}
		var out []string
		for _, e := range list.Items {
			if e.Regarding.Kind == "StatefulSet" && e.Regarding.Name == sts {
				out = append(out, e.Reason)
			}
		}
		return out, nil
	}
}

func ownedBy(sts *appsv1.StatefulSet) OmegaMatcher {
	return HaveField("ObjectMeta.OwnerReferences", ConsistOf(And(
		HaveField("UID", sts.UID),
		HaveField("Controller", ptr.To(true)),
		HaveField("Kind", "StatefulSet"),
	)))
}

var _ = Describe("Companion objects", func() {
	p := config.Default()

	It("appear beside a minimal StatefulSet, owned by it, except the Secret", func(ctx SpecContext) {
		Expect(k8s.Create(ctx, labeled("cache", nil))).To(Succeed())
		sts := stsOf(ctx, "cache")

		cm := &corev1.ConfigMap{}
		Eventually(fetch(ctx, cm, "cache-config")).WithTimeout(timeout).WithPolling(poll).Should(ownedBy(sts))
		Expect(cm.Data).To(Equal(map[string]string{"valkey.conf": defaults.ValkeyConf(sts, &p)}))
		Expect(sts.Spec.Template.Annotations[defaults.ChecksumAnnotation]).To(Equal(defaults.Checksum(cm.Data["valkey.conf"])),
			"the checksum admission injected is the hash of the ConfigMap's valkey.conf")

		headless := &corev1.Service{}
		Eventually(fetch(ctx, headless, "cache-headless")).WithTimeout(timeout).WithPolling(poll).Should(ownedBy(sts))
		Expect(headless.Spec.ClusterIP).To(Equal(corev1.ClusterIPNone))
		Expect(headless.Spec.PublishNotReadyAddresses).To(BeTrue())
		Expect(headless.Spec.Selector).To(Equal(map[string]string{"app": "cache"}))
		Expect(headless.Spec.Ports).To(ConsistOf(
			HaveField("Port", int32(6379)), HaveField("Port", int32(16379)), HaveField("Port", int32(9121))))

		client := &corev1.Service{}
		Eventually(fetch(ctx, client, "cache")).WithTimeout(timeout).WithPolling(poll).Should(ownedBy(sts))
		Expect(client.Spec.Ports).To(ConsistOf(HaveField("Port", int32(6379))))

		pdb := &policyv1.PodDisruptionBudget{}
		Eventually(fetch(ctx, pdb, "cache")).WithTimeout(timeout).WithPolling(poll).Should(ownedBy(sts))
		Expect(pdb.Spec.MaxUnavailable).To(Equal(ptr.To(intstr.FromInt32(1))))
		Expect(pdb.Spec.UnhealthyPodEvictionPolicy).To(Equal(ptr.To(policyv1.IfHealthyBudget)))

		np := &networkingv1.NetworkPolicy{}
		Eventually(fetch(ctx, np, "cache")).WithTimeout(timeout).WithPolling(poll).Should(ownedBy(sts))
		Expect(np.Spec.PodSelector.MatchLabels).To(Equal(map[string]string{"app": "cache"}))
		Expect(np.Spec.Ingress).To(HaveLen(4))
		Expect(np.Spec.Ingress[0].From).To(ConsistOf(HaveField("PodSelector.MatchLabels", map[string]string{"app": "cache"})))
		Expect(np.Spec.Ingress[0].Ports).To(ConsistOf(
			HaveField("Port", ptr.To(intstr.FromString("valkey"))), HaveField("Port", ptr.To(intstr.FromString("cluster-bus")))))
		Expect(np.Spec.Ingress[1].From).To(ConsistOf(And(
			HaveField("PodSelector", Equal(&metav1.LabelSelector{})),
			HaveField("NamespaceSelector", BeNil()))), "clients: every pod of the own namespace")
		Expect(np.Spec.Ingress[1].Ports).To(ConsistOf(HaveField("Port", ptr.To(intstr.FromString("valkey")))))
		Expect(np.Spec.Ingress[2].From).To(ConsistOf(HaveField("NamespaceSelector.MatchLabels", map[string]string{"kubernetes.io/metadata.name": "monitoring"})))
		Expect(np.Spec.Ingress[2].Ports).To(ConsistOf(HaveField("Port", ptr.To(intstr.FromString("metrics")))))
		Expect(np.Spec.Ingress[3].From).To(ConsistOf(And(
			HaveField("PodSelector.MatchLabels", map[string]string{"app.kubernetes.io/name": "valkey-webhook"}),
			HaveField("NamespaceSelector.MatchLabels", map[string]string{"kubernetes.io/metadata.name": "valkey-webhook-system"}))),
			"the lifecycle controller, from serve's namespace")
		Expect(np.Spec.Ingress[3].Ports).To(ConsistOf(HaveField("Port", ptr.To(intstr.FromString("valkey")))))

		secret := &corev1.Secret{}
		Eventually(fetch(ctx, secret, "cache-auth")).WithTimeout(timeout).WithPolling(poll).Should(
			HaveField("ObjectMeta.OwnerReferences", BeEmpty()))
		password := string(secret.Data["password"])
		Expect(len(password)).To(BeNumerically(">=", 32), "at least 192 bits in URL-safe base64")
		Expect(string(secret.Data["auth.conf"])).To(Equal("requirepass \"" + password + "\"\nmasterauth \"" + password + "\"\n"))

		Eventually(reasons(ctx, "cache")).WithTimeout(timeout).WithPolling(poll).Should(ContainElement(controller.ReasonCreated))
	})

	It("puts back companions that are edited or deleted", func(ctx SpecContext) {
		Expect(k8s.Create(ctx, labeled("drift", nil))).To(Succeed())
		cm := &corev1.ConfigMap{}
		Eventually(fetch(ctx, cm, "drift-config")).WithTimeout(timeout).WithPolling(poll).Should(HaveField("Data", HaveKey("valkey.conf")))
		want := cm.Data["valkey.conf"]

		cm.Data["valkey.conf"] = "appendonly no\n"
		Expect(k8s.Update(ctx, cm)).To(Succeed())
		Eventually(fetch(ctx, &corev1.ConfigMap{}, "drift-config")).WithTimeout(timeout).WithPolling(poll).Should(
			HaveField("Data", HaveKeyWithValue("valkey.conf", want)))

		pdb := &policyv1.PodDisruptionBudget{}
		Eventually(exists(ctx, pdb, "drift")).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
		pdb.Spec.MaxUnavailable = ptr.To(intstr.FromInt32(3))
		Expect(k8s.Update(ctx, pdb)).To(Succeed())
		Eventually(fetch(ctx, &policyv1.PodDisruptionBudget{}, "drift")).WithTimeout(timeout).WithPolling(poll).Should(
			HaveField("Spec.MaxUnavailable", ptr.To(intstr.FromInt32(1))))

		svc := &corev1.Service{}
		Expect(k8s.Get(ctx, key("drift-headless"), svc)).To(Succeed())
		Expect(k8s.Delete(ctx, svc)).To(Succeed())
		Eventually(fetch(ctx, &corev1.Service{}, "drift-headless")).WithTimeout(timeout).WithPolling(poll).Should(
			HaveField("ObjectMeta.UID", Not(Equal(svc.UID))))

		np := &networkingv1.NetworkPolicy{}
		Expect(k8s.Get(ctx, key("drift"), np)).To(Succeed())
		Expect(k8s.Delete(ctx, np)).To(Succeed())
		Eventually(fetch(ctx, &networkingv1.NetworkPolicy{}, "drift")).WithTimeout(timeout).WithPolling(poll).Should(
			HaveField("ObjectMeta.UID", Not(Equal(np.UID))))

		Eventually(reasons(ctx, "drift")).WithTimeout(timeout).WithPolling(poll).Should(ContainElement(controller.ReasonCorrected))
	})

	It("lets the garbage collector take the owned companions, keeps the Secret, and reuses it", func(ctx SpecContext) {
		Expect(k8s.Create(ctx, labeled("gc", nil))).To(Succeed())
		secret := &corev1.Secret{}
		Eventually(exists(ctx, secret, "gc-auth")).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
		Eventually(exists(ctx, &networkingv1.NetworkPolicy{}, "gc")).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

		Expect(k8s.Delete(ctx, stsOf(ctx, "gc"), client.PropagationPolicy(metav1.DeletePropagationBackground))).To(Succeed())
		owned := []struct {
			name string
			obj  client.Object
		}{
			{"gc-config", &corev1.ConfigMap{}}, {"gc-headless", &corev1.Service{}}, {"gc", &corev1.Service{}},
			{"gc", &policyv1.PodDisruptionBudget{}}, {"gc", &networkingv1.NetworkPolicy{}},
		}
		for _, o := range owned {
			Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, key(o.name), o.obj)) }).
				WithTimeout(60*time.Second).WithPolling(200*time.Millisecond).Should(BeTrue(), "%T %s is garbage-collected", o.obj, o.name)
		}
		kept := &corev1.Secret{}
		Expect(k8s.Get(ctx, key("gc-auth"), kept)).To(Succeed())
		Expect(kept.ResourceVersion).To(Equal(secret.ResourceVersion))

		By("re-creating the StatefulSet")
		Expect(k8s.Create(ctx, labeled("gc", nil))).To(Succeed())
		Eventually(fetch(ctx, &corev1.ConfigMap{}, "gc-config")).WithTimeout(timeout).WithPolling(poll).Should(ownedBy(stsOf(ctx, "gc")))
		Consistently(fetch(ctx, &corev1.Secret{}, "gc-auth")).WithTimeout(2*time.Second).WithPolling(200*time.Millisecond).Should(And(
			HaveField("ObjectMeta.ResourceVersion", secret.ResourceVersion),
			HaveField("Data", Equal(secret.Data)),
		), "the same password, untouched")
	})

	It("rolls the pods when valkey.conf changes, and on nothing else: not on a renewed TLS certificate", func(ctx SpecContext) {
		roll := labeled("roll", map[string]string{"valkey-webhook.io/tls.issuer": "ClusterIssuer/internal-ca"})
		// What an earlier release stamped on the template: left as it is found,
		// since removing it would roll the pods.
		const earlier = "sha256:stamped-by-an-earlier-release"
		roll.Spec.Template.Annotations = map[string]string{defaults.TLSChecksumAnnotation: earlier}
		Expect(k8s.Create(ctx, roll)).To(Succeed())

		By("a Certificate with the DNS names of every pod and of the client Service")
		cert := &cmapi.Certificate{}
		Eventually(fetch(ctx, cert, "roll-tls")).WithTimeout(timeout).WithPolling(poll).Should(ownedBy(stsOf(ctx, "roll")))
		Expect(cert.Spec.SecretName).To(Equal("roll-tls"))
		Expect(cert.Spec.IssuerRef.Kind).To(Equal("ClusterIssuer"))
		Expect(cert.Spec.IssuerRef.Name).To(Equal("internal-ca"))
		Expect(cert.Spec.DNSNames).To(ContainElements(
			"*.roll-headless.team-a.svc", "*.roll-headless.team-a.svc.cluster.local",
			"roll", "roll.team-a", "roll.team-a.svc", "roll.team-a.svc.cluster.local"))
		Expect(cert.Spec.Usages).To(ContainElements(cmapi.UsageServerAuth, cmapi.UsageClientAuth))

		// What cert-manager does on each issuance: write the Secret, then record
		// the new revision in the Certificate's status.
		issued := func(revision int) {
			GinkgoHelper()
			Expect(k8s.Get(ctx, key("roll-tls"), cert)).To(Succeed())
			cert.Status.Revision = ptr.To(revision)
			cert.Status.Conditions = []cmapi.CertificateCondition{{Type: cmapi.CertificateConditionReady, Status: cmmeta.ConditionTrue, Reason: "Ready"}}
			Expect(k8s.Status().Update(ctx, cert)).To(Succeed())
		}
		Eventually(func() (map[string]string, error) {
			sts := &appsv1.StatefulSet{}
			err := k8s.Get(ctx, key("roll"), sts)
			return sts.Spec.Template.Annotations, err
		}).WithTimeout(timeout).WithPolling(poll).Should(HaveKey(defaults.ChecksumAnnotation))
		template := stsOf(ctx, "roll").Spec.Template

		By("cert-manager writing the Secret, then renewing it: the template stays as it is")
		tls := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "roll-tls", Namespace: ns, Labels: cert.Spec.SecretTemplate.Labels},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{"tls.crt": []byte("cert-1"), "tls.key": []byte("key-1"), "ca.crt": []byte("ca")},
		}
		Expect(k8s.Create(ctx, tls)).To(Succeed())
		issued(1)
		tls.Data["tls.crt"], tls.Data["tls.key"] = []byte("cert-2"), []byte("key-2")
		Expect(k8s.Update(ctx, tls)).To(Succeed())
		issued(2)
		Consistently(func() (corev1.PodTemplateSpec, error) {
			sts := &appsv1.StatefulSet{}
			err := k8s.Get(ctx, key("roll"), sts)
			return sts.Spec.Template, err
		}).WithTimeout(3*time.Second).WithPolling(200*time.Millisecond).Should(Equal(template),
			"no TLS checksum written, and the earlier release's left as found")
		Expect(template.Annotations).To(HaveKeyWithValue(defaults.TLSChecksumAnnotation, earlier))

		By("a valkey.conf change, through an override")
		sts := stsOf(ctx, "roll")
		sts.Annotations["valkey-webhook.io/cluster.nodeTimeout"] = "15000"
		Expect(k8s.Update(ctx, sts)).To(Succeed())
		Eventually(fetch(ctx, &corev1.ConfigMap{}, "roll-config")).WithTimeout(timeout).WithPolling(poll).Should(
			HaveField("Data", HaveKeyWithValue("valkey.conf", ContainSubstring("cluster-node-timeout 15000"))))
		cm := &corev1.ConfigMap{}
		Expect(k8s.Get(ctx, key("roll-config"), cm)).To(Succeed())
		Expect(stsOf(ctx, "roll").Spec.Template.Annotations).To(HaveKeyWithValue(defaults.ChecksumAnnotation, defaults.Checksum(cm.Data["valkey.conf"])))

		By("a scale: no change of the template at all")
		settled := stsOf(ctx, "roll")
		settled.Spec.Replicas = ptr.To(int32(8))
		Expect(k8s.Update(ctx, settled)).To(Succeed())
		generation := stsOf(ctx, "roll").Generation
		Consistently(func() (*appsv1.StatefulSet, error) {
			sts := &appsv1.StatefulSet{}
			err := k8s.Get(ctx, key("roll"), sts)
			return sts, err
		}).WithTimeout(3 * time.Second).WithPolling(200 * time.Millisecond).Should(And(
			HaveField("Generation", generation),
			HaveField("Spec.Template", Equal(settled.Spec.Template)),
		))
	})

	It("never overwrites an object of a companion's name that it does not own", func(ctx SpecContext) {
		theirs := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "taken-config", Namespace: ns},
			Data:       map[string]string{"valkey.conf": "theirs"},
		}
		Expect(k8s.Create(ctx, theirs)).To(Succeed())
		Expect(k8s.Create(ctx, labeled("taken", nil))).To(Succeed())

		Eventually(reasons(ctx, "taken")).WithTimeout(timeout).WithPolling(poll).Should(ContainElement(controller.ReasonNameTaken))
		Eventually(exists(ctx, &corev1.Service{}, "taken-headless")).WithTimeout(timeout).WithPolling(poll).Should(Succeed(), "the other companions are still made")
		Expect(k8s.Get(ctx, key("taken-config"), theirs)).To(Succeed())
		Expect(theirs.Data).To(Equal(map[string]string{"valkey.conf": "theirs"}))
		Expect(theirs.OwnerReferences).To(BeEmpty())
	})

	It("stops managing a StatefulSet whose label is removed, and leaves its objects", func(ctx SpecContext) {
		Expect(k8s.Create(ctx, labeled("freed", nil))).To(Succeed())
		Eventually(exists(ctx, &corev1.ConfigMap{}, "freed-config")).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

		sts := stsOf(ctx, "freed")
		delete(sts.Labels, defaults.ClusterLabel)
		Expect(k8s.Update(ctx, sts)).To(Succeed())
		Eventually(reasons(ctx, "freed")).WithTimeout(timeout).WithPolling(poll).Should(ContainElement(controller.ReasonUnmanaged))

		cm := &corev1.ConfigMap{}
		Expect(k8s.Get(ctx, key("freed-config"), cm)).To(Succeed())
		cm.Data["valkey.conf"] = "edited by the team"
		Expect(k8s.Update(ctx, cm)).To(Succeed())
		Consistently(fetch(ctx, &corev1.ConfigMap{}, "freed-config")).WithTimeout(2*time.Second).WithPolling(200*time.Millisecond).Should(
			HaveField("Data", HaveKeyWithValue("valkey.conf", "edited by the team")), "no longer reconciled")
	})

	It("removes a companion the policy turns off", func(ctx SpecContext) {
		Expect(k8s.Create(ctx, labeled("lean", nil))).To(Succeed())
		Eventually(exists(ctx, &networkingv1.NetworkPolicy{}, "lean")).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
		sts := stsOf(ctx, "lean")
		sts.Annotations = map[string]string{"valkey-webhook.io/networkPolicy.enabled": "false"}
		Expect(k8s.Update(ctx, sts)).To(Succeed())
		Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, key("lean"), &networkingv1.NetworkPolicy{})) }).
			WithTimeout(timeout).WithPolling(poll).Should(BeTrue())
		Eventually(reasons(ctx, "lean")).WithTimeout(timeout).WithPolling(poll).Should(ContainElement(controller.ReasonRemoved))
	})
})
