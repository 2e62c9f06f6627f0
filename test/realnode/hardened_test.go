//go:build realnode

package realnode

import (
	"fmt"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/controller"
)

var _ = Describe("generate cluster --hardened, in a namespace the webhook does not act on", Ordered, func() {
	// kube-system: admission never mutates there, and the controllers leave it
	// alone, so the hardened output and its init Job do everything.
	c := &valkeyCluster{ns: "kube-system", name: "hardened", pods: 6, keys: 500, password: "hardened-password-of-the-test"}

	It("forms its cluster through its own init Job, whose first pod succeeds (it waits for the pods' names rather than failing)", func(ctx SpecContext) {
		policy := filepath.Join(GinkgoT().TempDir(), "policy.yaml")
		Expect(os.WriteFile(policy, []byte(node.Policy()), 0o600)).To(Succeed())
		manifests := valkeyWebhook(ctx, "generate", "cluster", "--config", policy, "--name", c.name, "--namespace", c.ns,
			"--hardened", "--memory", "512Mi", "--storage", "1Gi", "--init-image", images["valkey-webhook"])
		Expect(manifests).To(ContainSubstring("kind: Job"))

		By("the password Secret, as the header says to create it")
		Expect(k8s.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, Name: c.name + "-auth"},
			StringData: map[string]string{
				"password":  c.password,
				"auth.conf": fmt.Sprintf("requirepass %q\nmasterauth %q\n", c.password, c.password),
			},
		})).To(Succeed())
		mustRun(ctx, manifests, "apply", "-f", "-")

		By("the Job completes")
		Eventually(func(g Gomega) {
			job := &batchv1.Job{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: c.ns, Name: c.name + "-init"}, job)).To(Succeed())
			g.Expect(job.Status.Succeeded).To(Equal(int32(1)), "job status %+v", job.Status)
			// Before cluster init waited for names, its first pod failed on names
			// not in DNS yet and a retry formed the cluster.
			g.Expect(job.Status.Failed).To(BeZero(), "no pod of the Job failed")
		}).WithContext(ctx).WithTimeout(settle).Should(Succeed())
		logs := mustRun(ctx, "", "-n", c.ns, "logs", "job/"+c.name+"-init")
		AddReportEntry("the init Job's log", logs)

		c.expectHealthy(ctx)
		c.writeKeys(ctx)
		c.readKeys(ctx)

		By("valkey-webhook's controllers left it alone: kube-system is not theirs to manage")
		events, err := c.events(ctx)
		Expect(err).NotTo(HaveOccurred())
		for _, e := range events {
			Expect(e).NotTo(Or(HavePrefix(controller.ReasonCreated+":"), HavePrefix(controller.ReasonClusterFormed+":")), "an Event of valkey-webhook on %s/%s", c.ns, c.name)
		}
	})
})
