package reliability

import (
	"encoding/json"
	"net/http"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/utils/ptr"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/webhook"
)

// The webhooks' own metrics, scraped from serve's /metrics after requests sent
// to it as the API server sends them: each count grows by exactly the requests
// of its kind.
var _ = Describe("The webhooks' metrics", func() {
	It("count the requests by webhook, operation and verdict, the denials and warnings by rule, and the patches", func(ctx SpecContext) {
		srv := startServe()
		Expect(srv.ready()).To(BeTrue(), "/readyz")
		https := defaultClient()

		hardened := func(edit func(sts *appsv1.StatefulSet)) []byte {
			sts := minimal(ns, "cache")
			Expect(webhook.Mutate(sts, nil, config.Default())).To(Succeed())
			if edit != nil {
				edit(sts)
			}
			raw, err := json.Marshal(sts)
			Expect(err).NotTo(HaveOccurred())
			return reviewOf("CREATE", raw, nil, 1)
		}
		type count struct {
			name   string
			labels []string
		}
		counts := []count{
			{"valkey_webhook_admission_requests_total", []string{`webhook="mutate"`, `operation="CREATE"`, `verdict="patched"`}},
			{"valkey_webhook_mutation_patch_bytes_count", nil},
			{"valkey_webhook_admission_requests_total", []string{`webhook="validate"`, `operation="CREATE"`, `verdict="allowed"`}},
			{"valkey_webhook_admission_requests_total", []string{`webhook="validate"`, `operation="CREATE"`, `verdict="denied"`}},
			{"valkey_webhook_admission_denials_total", []string{`webhook="validate"`, `rule="replicas"`}},
			{"valkey_webhook_admission_warnings_total", []string{`webhook="validate"`, `rule="onDelete"`}},
			{"valkey_webhook_admission_requests_total", []string{`webhook="enforce"`, `operation="CREATE"`, `verdict="error"`}},
		}
		read := func() []float64 {
			out := make([]float64, len(counts))
			for i, c := range counts {
				out[i] = srv.metric(c.name, c.labels...)
			}
			return out
		}
		before := read()

		send := func(path string, body []byte, wantCode int32, n int) {
			for range n {
				status, review, err := post(ctx, https, srv.addr, path, body)
				Expect(err).NotTo(HaveOccurred())
				Expect(status).To(Equal(http.StatusOK))
				code := int32(http.StatusOK)
				if review.Response.Result != nil {
					code = review.Response.Result.Code
				}
				Expect(code).To(Equal(wantCode), "%s: %+v", path, review.Response.Result)
			}
		}
		By("3 CREATEs of the minimal example to mutate, patched")
		send(paths[0], reviewOf("CREATE", minimalJSON(), nil, 1), 200, 3)
		By("1 CREATE of the hardened object to validate, allowed; 2 with 4 replicas, denied; 1 with OnDelete, allowed with a warning")
		send(paths[1], hardened(nil), 200, 1)
		send(paths[1], hardened(func(sts *appsv1.StatefulSet) { sts.Spec.Replicas = ptr.To(int32(4)) }), 422, 2)
		send(paths[1], hardened(func(sts *appsv1.StatefulSet) {
			sts.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
		}), 200, 1)
		By("1 review without a uid to enforce, an error")
		send(paths[2], withRequest(func(req map[string]any) { delete(req, "uid") }), 400, 1)

		after := read()
		grown := make([]float64, len(counts))
		for i := range counts {
			grown[i] = after[i] - before[i]
		}
		Expect(grown).To(Equal([]float64{3, 3, 2, 2, 2, 1, 1}), "in the order of %v", counts)
	})
})
