//go:build realnode

package realnode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/valkey-webhook/valkey-webhook/test/framework"
)

var _ = Describe("the in-cluster webhook", func() {
	It("refuses every unsafe example with the field it names", func(ctx SpecContext) {
		const ns = "unsafe"
		createNamespace(ctx, ns)
		files, err := filepath.Glob(filepath.Join(repo, "examples/unsafe/*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(files).NotTo(BeEmpty())
		for _, f := range files {
			b, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			var fields []string
			for _, l := range strings.Split(string(b), "\n") {
				if field, ok := strings.CutPrefix(l, "# expect-denied: "); ok {
					fields = append(fields, field)
				}
			}
			Expect(fields).NotTo(BeEmpty(), "%s says which field is denied", f)
			manifest := strings.ReplaceAll(string(b), "namespace: team-a", "namespace: "+ns)
			_, errOut, err := run(ctx, manifest, "apply", "-f", "-")
			Expect(err).To(HaveOccurred(), "%s is refused", filepath.Base(f))
			Expect(errOut).To(Or(ContainSubstring(`StatefulSet "cache" is invalid`), ContainSubstring("denied the request")), filepath.Base(f))
			for _, field := range fields {
				Expect(errOut).To(ContainSubstring(field), "%s is denied at %s", filepath.Base(f), field)
			}
		}
		list := &appsv1.StatefulSetList{}
		Expect(k8s.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		Expect(list.Items).To(BeEmpty(), "nothing was stored")
	})

	It("answers every admission request while its own Deployment rolls", func(ctx SpecContext) {
		const ns = "webhook-roll"
		createNamespace(ctx, ns)
		// A labeled StatefulSet whose pods never schedule (no node matches): the
		// updates below go through admission without running Valkey.
		var sts appsv1.StatefulSet
		Expect(yaml.Unmarshal([]byte(minimalExample(ns)), &sts)).To(Succeed())
		sts.Spec.Template.Spec.NodeSelector = map[string]string{"valkey-webhook.io/no-such-node": "true"}
		Expect(k8s.Create(ctx, &sts)).To(Succeed())

		var sent, failed atomic.Int64
		var mu sync.Mutex
		var failures []string
		stop := make(chan struct{})
		var wg sync.WaitGroup
		request := func(name string, do func(context.Context) error) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				err := do(rctx)
				cancel()
				sent.Add(1)
				if err != nil {
					failed.Add(1)
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s %s: %v", time.Now().Format(time.StampMilli), name, err))
					mu.Unlock()
				}
			}
		}
		wg.Add(2)
		go request("dry-run create", func(ctx context.Context) error {
			var obj appsv1.StatefulSet
			if err := yaml.Unmarshal([]byte(minimalExample(ns)), &obj); err != nil {
				return err
			}
			obj.Name = "dry-run"
			return k8s.Create(ctx, &obj, client.DryRunAll)
		})
		go request("update", func(ctx context.Context) error {
			patch := fmt.Sprintf(`{"metadata":{"annotations":{"example.com/tick":"%d"}}}`, time.Now().UnixNano())
			return k8s.Patch(ctx, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sts.Name}}, client.RawPatch(types.MergePatchType, []byte(patch)))
		})
		DeferCleanup(func() {
			select {
			case <-stop:
			default:
				close(stop)
			}
			wg.Wait()
		})

		Eventually(sent.Load).WithContext(ctx).WithTimeout(time.Minute).Should(BeNumerically(">=", 20), "requests answered before the roll")
		before := webhookPodNames(ctx)
		keepWebhookLogs(ctx) // the pods about to go: their logs go with them
		mustRun(ctx, "", "-n", webhookNS, "rollout", "restart", "deployment/valkey-webhook")
		mustRun(ctx, "", "-n", webhookNS, "rollout", "status", "deployment/valkey-webhook", "--timeout=5m")
		Eventually(func(g Gomega) {
			now := webhookPodNames(ctx)
			g.Expect(now).To(HaveLen(2))
			for _, n := range now {
				g.Expect(before).NotTo(ContainElement(n), "every replica was replaced")
			}
		}).WithContext(ctx).WithTimeout(settle).Should(Succeed())
		// The last old replica keeps serving through its drain delay (10 s) after
		// it is taken out of the Service: keep asking past it.
		atRoll := sent.Load()
		Eventually(sent.Load).WithContext(ctx).WithTimeout(time.Minute).Should(BeNumerically(">=", atRoll+50))
		close(stop)
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		Expect(failures).To(BeEmpty(), "of %d admission requests during the roll", sent.Load())
		AddReportEntry("admission requests during the webhook's roll", fmt.Sprintf("%d sent, %d failed", sent.Load(), failed.Load()))
	})
})

// webhookMetric sums metric name (with labels, each `name="value"`) over every
// running valkey-webhook pod's /metrics, read through the API server's proxy:
// the lifecycle metrics are the leader's, the admission ones each replica's.
func webhookMetric(ctx context.Context, name string, labels ...string) float64 {
	GinkgoHelper()
	var sum float64
	for _, pod := range webhookPodNames(ctx) {
		// 8080: the --metrics-bind-address generate install gives serve.
		out, _, err := run(ctx, "", "get", "--raw", fmt.Sprintf("/api/v1/namespaces/%s/pods/%s:8080/proxy/metrics", webhookNS, pod))
		if err != nil {
			continue // a pod stopping meanwhile: its counts are gone with it
		}
		v, err := framework.MetricSum(out, name, labels...)
		Expect(err).NotTo(HaveOccurred())
		sum += v
	}
	return sum
}

// webhookPodNames are the running, not deleted valkey-webhook pods.
func webhookPodNames(ctx context.Context) []string {
	GinkgoHelper()
	list := &corev1.PodList{}
	Expect(k8s.List(ctx, list, client.InNamespace(webhookNS), client.MatchingLabels{"app.kubernetes.io/name": "valkey-webhook"})).To(Succeed())
	var out []string
	for _, p := range list.Items {
		if p.DeletionTimestamp.IsZero() && p.Status.Phase == corev1.PodRunning {
			out = append(out, p.Name)
		}
	}
	return out
}
