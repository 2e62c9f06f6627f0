// Package install checks the generator's output against a real kube-apiserver: every
// generated object is accepted, and the generated webhook configurations make the
// API server call a locally running webhook that really mutates and denies.
package install

import (
	"net"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
	"github.com/valkey-webhook/valkey-webhook/generator"
	"github.com/valkey-webhook/valkey-webhook/test/framework"
)

func TestInstall(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "generated manifests on a real kube-apiserver")
}

var cp *framework.ControlPlane

var _ = BeforeSuite(func(SpecContext) {
	var err error
	cp, err = framework.Start(framework.Options{Webhooks: true, CertManagerCRDs: true})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cp.Stop)
	kubeconfig, err := cp.Kubeconfig(GinkgoT().TempDir(), "")
	Expect(err).NotTo(HaveOccurred())
	server, _, err := cp.Serve(kubeconfig, "--leader-elect=false")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		server.Terminate()
		Eventually(server).WithTimeout(30 * time.Second).Should(gexec.Exit(0))
	})
}, NodeTimeout(3*time.Minute))

// acceptDryRun creates an object with dry run, or replaces the object of that name
// with dry run when one exists: the API server checks it against its schema and
// admission, and stores nothing.
func acceptDryRun(ctx SpecContext, obj client.Object) error {
	err := cp.Client.Create(ctx, obj, client.DryRunAll)
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	existing, ok := obj.DeepCopyObject().(client.Object)
	Expect(ok).To(BeTrue())
	if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(obj), existing); err != nil {
		return err
	}
	obj.SetResourceVersion(existing.GetResourceVersion())
	return cp.Client.Update(ctx, obj, client.DryRunAll)
}

var _ = Describe("Generated manifests", func() {
	It("are all accepted by the API server", func(ctx SpecContext) {
		install, err := generator.Install(generator.InstallOptions{})
		Expect(err).NotTo(HaveOccurred())
		hardened, _, err := generator.HardenedCluster(generator.ClusterOptions{Name: "cache", Namespace: "team-a", TLSIssuer: "ClusterIssuer/internal-ca"}, config.Default())
		Expect(err).NotTo(HaveOccurred())
		minimal, err := generator.MinimalCluster(generator.ClusterOptions{Name: "minimal", Namespace: "team-a"}, config.Default())
		Expect(err).NotTo(HaveOccurred())

		for _, ns := range []string{generator.DefaultNamespace, "team-a"} {
			Expect(cp.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		}
		objects := append(append(install, hardened...), minimal)
		for _, obj := range objects {
			if _, ok := obj.(*corev1.Namespace); ok {
				continue // created above: a dry run would not make its objects' namespace exist
			}
			Expect(acceptDryRun(ctx, obj)).To(Succeed(), "%T %s/%s", obj, obj.GetNamespace(), obj.GetName())
		}
	})

	It("include a cluster-init Job that the restricted Pod Security Standard admits", func(ctx SpecContext) {
		const ns = "team-restricted"
		Expect(cp.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{
			"pod-security.kubernetes.io/enforce": "restricted",
			"pod-security.kubernetes.io/warn":    "restricted",
		}}})).To(Succeed())
		// The ServiceAccount admission plugin wants the pod's account to exist; no
		// controller-manager creates it here.
		Expect(cp.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}})).To(Succeed())

		p := config.Default()
		p.TLS.AuthClients = true
		for _, o := range []generator.ClusterOptions{
			// Every mount: the password, and the CA with a client certificate.
			{Name: "mtls", Namespace: ns, TLSIssuer: "ClusterIssuer/internal-ca"},
			// No namespace: the nodes' names take the pod's own from the downward API.
			{Name: "anywhere", TLSIssuer: "ClusterIssuer/internal-ca"},
		} {
			objects, _, err := generator.HardenedCluster(o, p)
			Expect(err).NotTo(HaveOccurred())
			var job *batchv1.Job
			for _, obj := range objects {
				if j, ok := obj.(*batchv1.Job); ok {
					job = j
				}
			}
			Expect(job).NotTo(BeNil(), "the hardened output of %s has no Job", o.Name)
			job.Namespace = ns

			By("dry-running the Job " + job.Name + ": accepted, and no Pod Security warning about its template")
			cp.Warnings.Take()
			Expect(acceptDryRun(ctx, job)).To(Succeed())
			Expect(cp.Warnings.Take()).To(BeEmpty())

			By("dry-running a Pod of its template: the restricted level is enforced on pods")
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: job.Name + "-pod", Namespace: ns, Labels: job.Spec.Template.Labels},
				Spec:       job.Spec.Template.Spec,
			}
			Expect(cp.Client.Create(ctx, pod, client.DryRunAll)).To(Succeed())
			Expect(cp.Warnings.Take()).To(BeEmpty())
		}
	})

	It("register, with --dev-url, a local webhook that really mutates and denies", func(ctx SpecContext) {
		By("replacing envtest's webhook configurations with the generated ones")
		wio := cp.Env.WebhookInstallOptions
		for _, obj := range []client.Object{
			&admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "valkey-webhook"}},
			&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "valkey-webhook"}},
			&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "valkey-webhook-enforcement"}},
		} {
			Expect(cp.Client.Delete(ctx, obj)).To(Succeed(), "envtest installed %s under the generated name", obj.GetName())
		}
		configs, err := generator.Install(generator.InstallOptions{
			DevURL:   "https://" + net.JoinHostPort(wio.LocalServingHost, strconv.Itoa(wio.LocalServingPort)),
			CABundle: wio.LocalServingCAData,
		})
		Expect(err).NotTo(HaveOccurred())
		Expect(configs).To(HaveLen(3))
		for _, obj := range configs {
			Expect(cp.Client.Create(ctx, obj)).To(Succeed())
		}

		Expect(cp.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-dev"}})).To(Succeed())

		By("creating a generated minimal StatefulSet: it is hardened")
		sts, err := generator.MinimalCluster(generator.ClusterOptions{Name: "cache", Namespace: "team-dev"}, config.Default())
		Expect(err).NotTo(HaveOccurred())
		Expect(cp.Client.Create(ctx, sts)).To(Succeed())
		stored := &appsv1.StatefulSet{}
		Expect(cp.Client.Get(ctx, client.ObjectKeyFromObject(sts), stored)).To(Succeed())
		Expect(stored.Spec.Template.Annotations).To(HaveKey(defaults.ChecksumAnnotation))
		Expect(stored.Spec.PodManagementPolicy).To(Equal(appsv1.ParallelPodManagement))

		By("creating an unsafe one: it is denied")
		unsafe, err := generator.MinimalCluster(generator.ClusterOptions{Name: "unsafe", Namespace: "team-dev"}, config.Default())
		Expect(err).NotTo(HaveOccurred())
		unsafe.Spec.Template.Spec.HostNetwork = true
		err = cp.Client.Create(ctx, unsafe)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want 422, got %v", err)

		By("creating an unlabeled Valkey cluster: the enforcement webhook warns")
		cp.Warnings.Take()
		unlabeled, err := generator.MinimalCluster(generator.ClusterOptions{Name: "unlabeled", Namespace: "team-dev", Image: "docker.io/bitnami/valkey-cluster:8.0.1"}, config.Default())
		Expect(err).NotTo(HaveOccurred())
		unlabeled.Labels = nil
		unlabeled.Spec.Replicas = ptr.To(int32(1))
		Expect(cp.Client.Create(ctx, unlabeled)).To(Succeed())
		Expect(cp.Warnings.Take()).To(ContainElement(ContainSubstring("metadata.labels[valkey-webhook.io/cluster]")))
	})
})
