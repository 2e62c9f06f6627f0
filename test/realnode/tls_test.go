//go:build realnode

package realnode

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/controller"
	"github.com/valkey-webhook/valkey-webhook/defaults"
	"github.com/valkey-webhook/valkey-webhook/test/valkeyharness"
)

var _ = Describe("a labeled StatefulSet with tls.secretName and auth", Ordered, func() {
	c := &valkeyCluster{ns: "tls", name: "cache", pods: 6, keys: 200}
	headless := fmt.Sprintf("cache-headless.%s.svc.cluster.local", c.ns)
	tlsNames := []string{"*." + headless, fmt.Sprintf("cache.%s.svc.cluster.local", c.ns)}
	var files *valkeyharness.TLSFiles

	BeforeAll(func(ctx SpecContext) { createNamespace(ctx, c.ns) })

	It("forms its cluster over TLS and serves a client in a pod that verifies every certificate", func(ctx SpecContext) {
		By("a certificate the test issues for the pods' DNS names, for server and client use (the cluster bus requires both)")
		var err error
		files, err = valkeyharness.NewTLSFiles(GinkgoT().TempDir())
		Expect(err).NotTo(HaveOccurred())
		data, err := files.SecretData("cache", tlsNames)
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, Name: "cache-tls"},
			Type:       corev1.SecretTypeTLS,
			Data:       data,
		})).To(Succeed())
		manifest := strings.Replace(minimalExample(c.ns), "  labels:\n    valkey-webhook.io/cluster: enabled\n",
			"  labels:\n    valkey-webhook.io/cluster: enabled\n  annotations:\n    valkey-webhook.io/tls.secretName: cache-tls\n", 1)
		Expect(manifest).To(ContainSubstring("tls.secretName"))
		mustRun(ctx, manifest, "apply", "-f", "-")
		c.readPassword(ctx)

		// The host reaches the pods by IP and verifies the chain and the
		// certificate's wildcard name (it never resolves cluster names).
		c.tls = files.ClientConfig()
		c.tls.ServerName = "cache-0." + headless
		c.expectEvent(ctx, controller.ReasonClusterFormed)
		mustRun(ctx, "", "-n", c.ns, "rollout", "status", "statefulset/"+c.name, "--timeout=5m")
		c.expectHealthy(ctx)

		By("the exporter stand-in verifies the server's certificate for the pod's own DNS name")
		pod0 := &corev1.Pod{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: c.ns, Name: "cache-0"}, pod0)).To(Succeed())
		metrics := defaults.FindContainer(pod0.Spec.Containers, defaults.MetricsContainer)
		Expect(metrics).NotTo(BeNil())
		Expect(metrics.Env).NotTo(ContainElement(HaveField("Name", "REDIS_EXPORTER_SKIP_TLS_VERIFICATION")))
		Eventually(func() (string, error) {
			return execIn(ctx, c.ns, "cache-0", "valkey", "wget -qO- http://127.0.0.1:9121/metrics")
		}).WithContext(ctx).WithTimeout(settle).Should(ContainSubstring("redis_up 1"))

		By("a valkey-go cluster client in a pod: names through CoreDNS, each redirect's certificate verified for the pod's name")
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, Name: "tls-client"},
			Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{
					Name:  "client",
					Image: images["cluster-client"],
					Args: []string{"-seed", "cache-0." + headless + ":6379", "-ca", "/tls/ca.crt",
						"-password-file", "/auth/password", "-keys", fmt.Sprint(c.keys)},
					VolumeMounts: []corev1.VolumeMount{{Name: "tls", MountPath: "/tls"}, {Name: "auth", MountPath: "/auth"}},
				}},
				Volumes: []corev1.Volume{
					{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "cache-tls", Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}}},
					{Name: "auth", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "cache-auth", Items: []corev1.KeyToPath{{Key: "password", Path: "password"}}}}},
				},
			},
		}
		Expect(k8s.Create(ctx, pod)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(pod), pod)).To(Succeed())
			g.Expect(pod.Status.Phase).To(BeElementOf(corev1.PodSucceeded, corev1.PodFailed))
		}).WithContext(ctx).WithTimeout(settle).Should(Succeed())
		logs := mustRun(ctx, "", "-n", c.ns, "logs", pod.Name)
		AddReportEntry("the TLS client's output", logs)
		Expect(pod.Status.Phase).To(Equal(corev1.PodSucceeded), logs)
		Expect(logs).To(ContainSubstring(fmt.Sprintf("wrote and read back %d keys", c.keys)))
		verified := 0
		for _, l := range strings.Split(logs, "\n") {
			if strings.HasPrefix(l, "verified ") && strings.HasSuffix(l, "."+headless) {
				verified++
			}
		}
		Expect(verified).To(BeNumerically(">=", 3), "the client verified the certificate of every master it was redirected to, by its pod name")
	})

	It("loads a renewed certificate in place on every node: no pod restarts, every node serves it", func(ctx SpecContext) {
		before := c.podsByName(ctx)
		By("keys written from the host before the renewal (redirects to announced names dialed at the pod's IP)")
		c.writeKeys(ctx)
		By("the Secret gets a new certificate from the same CA, as a renewal writes it")
		data, err := files.SecretData("cache", tlsNames)
		Expect(err).NotTo(HaveOccurred())
		block, _ := pem.Decode(data["tls.crt"])
		Expect(block).NotTo(BeNil())
		renewed, err := x509.ParseCertificate(block.Bytes)
		Expect(err).NotTo(HaveOccurred())
		secret := &corev1.Secret{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: c.ns, Name: "cache-tls"}, secret)).To(Succeed())
		secret.Data = data
		Expect(k8s.Update(ctx, secret)).To(Succeed())
		changed := time.Now()

		By("the kubelet updates the mounted Secret, the controller loads it: every pod IP serves the new certificate, verified for its pod's name")
		Eventually(func(g Gomega) {
			for name, p := range c.podsByName(ctx) {
				cfg := files.ClientConfig()
				cfg.ServerName = name + "." + headless
				conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", net.JoinHostPort(p.Status.PodIP, strconv.Itoa(valkeyPort)), cfg)
				g.Expect(err).NotTo(HaveOccurred())
				served := conn.ConnectionState().PeerCertificates[0]
				_ = conn.Close()
				g.Expect(served.SerialNumber).To(Equal(renewed.SerialNumber), "%s serves the renewed certificate", name)
			}
		}).WithContext(ctx).WithTimeout(6 * time.Minute).WithPolling(5 * time.Second).Should(Succeed())
		AddReportEntry("the renewed certificate served by every node", fmt.Sprintf("%s after the Secret changed", time.Since(changed).Round(time.Second)))
		c.expectEvent(ctx, controller.ReasonCertificateReloaded)

		By("the same pods, never restarted")
		after := c.podsByName(ctx)
		Expect(after).To(HaveLen(len(before)))
		for name, p := range after {
			Expect(p.UID).To(Equal(before[name].UID), "%s is the same pod", name)
			for _, cs := range p.Status.ContainerStatuses {
				Expect(cs.RestartCount).To(BeZero(), "%s/%s did not restart", name, cs.Name)
			}
		}
		c.expectHealthy(ctx)
		By("every key read back over connections that verify the renewed certificate")
		c.readKeys(ctx)
	})

})
