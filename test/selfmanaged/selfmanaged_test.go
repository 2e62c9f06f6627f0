// Package selfmanaged runs `serve --cert-mode self-managed` against a real
// kube-apiserver, as a user bound to exactly the RBAC `generate install --cert-mode
// self-managed` prints: it issues its certificate into a Secret, injects the CA into
// the webhook configurations, and the API server then calls it over TLS.
package selfmanaged

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
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
	"github.com/valkey-webhook/valkey-webhook/generator"
	"github.com/valkey-webhook/valkey-webhook/test/framework"
	"github.com/valkey-webhook/valkey-webhook/webhook"
)

func TestSelfManaged(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "self-managed serving certificates on a real kube-apiserver")
}

const (
	ns   = generator.DefaultNamespace
	user = "valkey-webhook"
)

var _ = Describe("serve --cert-mode self-managed", func() {
	It("issues its certificate, injects the CA, is called over TLS, and keeps the Secret across restarts", func(ctx SpecContext) {
		cp, err := framework.Start(framework.Options{})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(cp.Stop)
		k8s := cp.Client
		for _, name := range []string{ns, "team-a"} {
			Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})).To(Succeed())
		}

		By("binding the user to the ClusterRole and Role the generator prints")
		install, err := generator.Install(generator.InstallOptions{CertMode: generator.CertModeSelfManaged})
		Expect(err).NotTo(HaveOccurred())
		for _, obj := range install {
			switch role := obj.(type) {
			case *rbacv1.ClusterRole:
				Expect(k8s.Create(ctx, role)).To(Succeed())
				Expect(k8s.Create(ctx, &rbacv1.ClusterRoleBinding{
					ObjectMeta: metav1.ObjectMeta{Name: role.Name},
					RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
					Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
				})).To(Succeed())
			case *rbacv1.Role:
				Expect(k8s.Create(ctx, role)).To(Succeed())
				Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
					ObjectMeta: metav1.ObjectMeta{Name: role.Name, Namespace: role.Namespace},
					RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
					Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
				})).To(Succeed())
			}
		}

		By("registering the webhooks at a local URL, without a CA")
		wio := cp.Env.WebhookInstallOptions
		opts := webhook.ConfigurationOptions{
			Name: generator.InstallName, Namespace: ns, TimeoutSeconds: 5,
			URL: "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(wio.LocalServingPort)),
		}
		Expect(k8s.Create(ctx, webhook.MutatingConfiguration(opts))).To(Succeed())
		Expect(k8s.Create(ctx, webhook.ValidatingConfiguration(opts))).To(Succeed())
		Expect(k8s.Create(ctx, webhook.EnforcementConfiguration(opts))).To(Succeed())

		kubeconfig, err := cp.Kubeconfig(GinkgoT().TempDir(), user)
		Expect(err).NotTo(HaveOccurred())
		certDir := GinkgoT().TempDir()
		args := []string{"--cert-mode", "self-managed", "--namespace", ns, "--cert-hosts", "127.0.0.1",
			"--cert-dir", certDir, "--leader-election-namespace", ns}
		server, _, err := cp.Serve(kubeconfig, args...)
		Expect(err).NotTo(HaveOccurred())

		secret := &corev1.Secret{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "valkey-webhook-tls"}, secret)).To(Succeed())
		Expect(secret.Data).To(HaveKey("ca.crt"))
		mutating := &admissionregistrationv1.MutatingWebhookConfiguration{}
		Expect(k8s.Get(ctx, client.ObjectKey{Name: generator.InstallName}, mutating)).To(Succeed())
		Expect(mutating.Webhooks[0].ClientConfig.CABundle).To(Equal(secret.Data["ca-bundle.crt"]))
		for _, name := range []string{generator.InstallName, generator.InstallName + "-enforcement"} {
			validating := &admissionregistrationv1.ValidatingWebhookConfiguration{}
			Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, validating)).To(Succeed())
			Expect(validating.Webhooks[0].ClientConfig.CABundle).To(Equal(secret.Data["ca-bundle.crt"]), name)
		}

		By("the API server calls it over TLS: a labeled StatefulSet is hardened")
		sts, err := generator.MinimalCluster(generator.ClusterOptions{Name: "cache", Namespace: "team-a"}, config.Default())
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Create(ctx, sts)).To(Succeed())
		stored := &appsv1.StatefulSet{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(sts), stored)).To(Succeed())
		Expect(stored.Spec.Template.Annotations).To(HaveKey(defaults.ChecksumAnnotation))

		By("restarting: the same Secret is used, untouched")
		server.Terminate()
		Eventually(server).WithTimeout(30 * time.Second).Should(gexec.Exit(0))
		server, _, err = cp.Serve(kubeconfig, args...)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() {
			server.Terminate()
			Eventually(server).WithTimeout(30 * time.Second).Should(gexec.Exit(0))
		})
		again := &corev1.Secret{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(secret), again)).To(Succeed())
		Expect(again.ResourceVersion).To(Equal(secret.ResourceVersion))
		second, err := generator.MinimalCluster(generator.ClusterOptions{Name: "queue", Namespace: "team-a"}, config.Default())
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Create(ctx, second)).To(Succeed())
	})
})
