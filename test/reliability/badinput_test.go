package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/yaml"
)

// verdict is what a webhook answered, as the API server reads it.
type verdict struct {
	// HTTP is the HTTP status of the answer; the verdict itself is in the review.
	HTTP    int
	Allowed bool
	// Code is the response's status code, 0 without a status.
	Code int32
	// Message says whether the status carries a message.
	Message bool
	Patched bool
}

var (
	badRequest  = verdict{HTTP: 200, Code: 400, Message: true}
	passThrough = verdict{HTTP: 200, Allowed: true, Code: 200, Message: true}
	mutated     = verdict{HTTP: 200, Allowed: true, Code: 200, Patched: true}
	allowed     = verdict{HTTP: 200, Allowed: true, Code: 200}
	invalid     = verdict{HTTP: 200, Code: 422, Message: true}
	tooLarge    = verdict{HTTP: 200, Code: 413, Message: true}
	paths       = []string{"/mutate-statefulset", "/validate-statefulset", "/enforce-statefulset", "/scaleguard-statefulset"}
	everyPathIs = func(v verdict) map[string]verdict {
		return map[string]verdict{paths[0]: v, paths[1]: v, paths[2]: v, paths[3]: v}
	}
	// createIs is a CREATE review's verdicts: v at the webhooks that act on
	// CREATE; the scale guard acts on UPDATE only, and lets a CREATE through
	// without reading it.
	createIs = func(v verdict) map[string]verdict {
		return map[string]verdict{paths[0]: v, paths[1]: v, paths[2]: v, paths[3]: passThrough}
	}
	unmutatedIsBad = func(m verdict) map[string]verdict {
		// Unmutated, the minimal example has no data claim template, so validation
		// denies it; the API server always calls the mutating webhook first.
		return map[string]verdict{paths[0]: m, paths[1]: invalid, paths[2]: allowed, paths[3]: passThrough}
	}
)

func verdictOf(status int, r *admissionv1.AdmissionReview) verdict {
	v := verdict{HTTP: status, Allowed: r.Response.Allowed, Patched: len(r.Response.Patch) > 0}
	if r.Response.Result != nil {
		v.Code = r.Response.Result.Code
		v.Message = r.Response.Result.Message != ""
	}
	return v
}

// withRequest edits the request of the minimal example's CREATE review.
func withRequest(edit func(req map[string]any)) []byte {
	var review map[string]any
	Expect(json.Unmarshal(reviewOf("CREATE", minimalJSON(), nil, 1), &review)).To(Succeed())
	edit(review["request"].(map[string]any))
	body, err := json.Marshal(review)
	Expect(err).NotTo(HaveOccurred())
	return body
}

// withObject edits the minimal example and wraps it into a CREATE review.
func withObject(edit func(obj map[string]any)) []byte {
	var obj map[string]any
	Expect(json.Unmarshal(minimalJSON(), &obj)).To(Succeed())
	edit(obj)
	raw, err := json.Marshal(obj)
	Expect(err).NotTo(HaveOccurred())
	return reviewOf("CREATE", raw, nil, 1)
}

func podSpecOf(obj map[string]any) map[string]any {
	return obj["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
}

// containers3MiB replaces the containers by as many small ones as fit in 3 MiB,
// the API server's limit on a request body.
func containers3MiB(obj map[string]any) {
	var cs []any
	for i := range 80000 {
		cs = append(cs, map[string]any{"name": fmt.Sprintf("c%d", i), "image": "busybox:1.36"})
	}
	podSpecOf(obj)["containers"] = cs
}

// nested is n levels of JSON arrays.
func nested(n int) json.RawMessage {
	return json.RawMessage(strings.Repeat("[", n) + strings.Repeat("]", n))
}

func hardenedJSON() []byte {
	data, err := os.ReadFile(repoFile("examples/hardened-statefulset.yaml"))
	Expect(err).NotTo(HaveOccurred())
	js, err := yaml.YAMLToJSON(data)
	Expect(err).NotTo(HaveOccurred())
	return js
}

var _ = Describe("Bad AdmissionReviews sent to the running server over HTTPS", Ordered, func() {
	var srv *server
	var https *http.Client
	answered := 0
	BeforeAll(func() {
		srv = startServe()
		https = defaultClient()
	})

	// stillServing checks that a good request still gets a good answer and that the
	// server reports ready.
	stillServing := func(ctx context.Context) {
		Expect(admitted(ctx, https, srv.addr, 2)).To(Succeed())
		Expect(srv.ready()).To(BeTrue(), "/readyz")
		Expect(srv.session.ExitCode()).To(Equal(-1), "the process exited")
	}

	DescribeTable("each gets a clear 4xx or an allowed pass-through with a message, never a 5xx",
		func(ctx SpecContext, body func() []byte, contentType string, want map[string]verdict) {
			b := body()
			got := map[string]verdict{}
			for path := range want {
				status, review, err := postAs(ctx, https, srv.addr, path, contentType, b)
				Expect(err).NotTo(HaveOccurred(), path)
				got[path] = verdictOf(status, review)
				Expect(got[path].Code).To(BeNumerically("<", 500), "%s: %+v", path, review.Response.Result)
				answered++
			}
			Expect(got).To(Equal(want))
			stillServing(ctx)
		},
		Entry("not JSON", func() []byte { return []byte("not json") }, "", everyPathIs(badRequest)),
		Entry("truncated", func() []byte { b := reviewOf("CREATE", minimalJSON(), nil, 1); return b[:len(b)/2] }, "", everyPathIs(badRequest)),
		Entry("empty body", func() []byte { return nil }, "", everyPathIs(badRequest)),
		Entry("not application/json", func() []byte { return reviewOf("CREATE", minimalJSON(), nil, 1) }, "text/plain", everyPathIs(badRequest)),
		Entry("wrong apiVersion (admission.k8s.io/v2)", func() []byte {
			return []byte(strings.Replace(string(reviewOf("CREATE", minimalJSON(), nil, 1)), "admission.k8s.io/v1", "admission.k8s.io/v2", 1))
		}, "", everyPathIs(badRequest)),
		Entry("no apiVersion and kind", func() []byte {
			return []byte(strings.Replace(string(reviewOf("CREATE", minimalJSON(), nil, 1)), `"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",`, "", 1))
		}, "", everyPathIs(badRequest)),
		Entry("an object of a wrong apiVersion (apps/v1beta2)", func() []byte {
			return withObject(func(obj map[string]any) { obj["apiVersion"] = "apps/v1beta2" })
		}, "", createIs(badRequest)),
		Entry("the older admission.k8s.io/v1beta1, still answered", func() []byte {
			return []byte(strings.Replace(string(reviewOf("CREATE", minimalJSON(), nil, 1)), "admission.k8s.io/v1", "admission.k8s.io/v1beta1", 1))
		}, "", unmutatedIsBad(mutated)),
		Entry("no request", func() []byte { return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`) }, "", everyPathIs(badRequest)),
		Entry("no object", func() []byte { return reviewOf("CREATE", nil, nil, 1) }, "", createIs(badRequest)),
		Entry("a Pod under the StatefulSet resource", func() []byte {
			return reviewOf("CREATE", []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"x"}]}}`), nil, 1)
		}, "", createIs(badRequest)),
		Entry("a Pod under the StatefulSet resource, UPDATE", func() []byte {
			pod := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"x"}]}}`)
			return reviewOf("UPDATE", pod, pod, 1)
		}, "", everyPathIs(badRequest)),
		Entry("a request of another kind", func() []byte {
			return withRequest(func(req map[string]any) {
				req["kind"] = map[string]string{"group": "", "version": "v1", "kind": "Pod"}
				req["resource"] = map[string]string{"group": "", "version": "v1", "resource": "pods"}
			})
		}, "", everyPathIs(passThrough)),
		Entry("UPDATE without oldObject", func() []byte { return reviewOf("UPDATE", minimalJSON(), nil, 1) }, "", everyPathIs(badRequest)),
		Entry("DELETE", func() []byte { return reviewOf("DELETE", nil, minimalJSON(), 1) }, "", everyPathIs(passThrough)),
		Entry("dry-run, answered as any CREATE", func() []byte {
			return withRequest(func(req map[string]any) { req["dryRun"] = true })
		}, "", unmutatedIsBad(mutated)),
		Entry("dry-run of the hardened example, admitted", func() []byte {
			var review map[string]any
			Expect(json.Unmarshal(reviewOf("CREATE", hardenedJSON(), nil, 1), &review)).To(Succeed())
			review["request"].(map[string]any)["dryRun"] = true
			b, _ := json.Marshal(review)
			return b
		}, "", createIs(allowed)),
		Entry("the scale subresource", func() []byte {
			return withRequest(func(req map[string]any) {
				scale := json.RawMessage(`{"apiVersion":"autoscaling/v1","kind":"Scale","metadata":{"name":"cache"},"spec":{"replicas":4}}`)
				req["operation"], req["subResource"], req["object"], req["oldObject"] = "UPDATE", "scale", scale, scale
				req["kind"] = map[string]string{"group": "autoscaling", "version": "v1", "kind": "Scale"}
			})
			// The scale guard reads the Scales, sees no scale-down and allows at once.
		}, "", map[string]verdict{paths[0]: passThrough, paths[1]: passThrough, paths[2]: passThrough, paths[3]: allowed}),
		Entry("the scale subresource, a Pod as its object", func() []byte {
			return withRequest(func(req map[string]any) {
				pod := json.RawMessage(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}`)
				req["operation"], req["subResource"], req["object"], req["oldObject"] = "UPDATE", "scale", pod, pod
				req["kind"] = map[string]string{"group": "autoscaling", "version": "v1", "kind": "Scale"}
			})
		}, "", map[string]verdict{paths[0]: passThrough, paths[1]: passThrough, paths[2]: passThrough, paths[3]: badRequest}),
		Entry("a quantity whose exponent would take minutes to parse", func() []byte {
			return withObject(func(obj map[string]any) {
				obj["metadata"].(map[string]any)["annotations"] = map[string]any{"valkey-webhook.io/valkey.maxmemory": ".0000100E0008010000001000"}
			})
		}, "", map[string]verdict{paths[0]: invalid, paths[1]: invalid, paths[2]: allowed, paths[3]: passThrough}),
		Entry("a 3 MiB object: one large annotation", func() []byte {
			return withObject(func(obj map[string]any) {
				obj["metadata"].(map[string]any)["annotations"] = map[string]any{"example.com/blob": strings.Repeat("x", 3<<20-1024)}
			})
		}, "", unmutatedIsBad(mutated)),
		Entry("a 3 MiB object: 80000 containers", func() []byte { return withObject(containers3MiB) }, "", unmutatedIsBad(mutated)),
		Entry("an 8 MiB body, over the server's limit", func() []byte {
			return withObject(func(obj map[string]any) {
				obj["metadata"].(map[string]any)["annotations"] = map[string]any{"example.com/blob": strings.Repeat("x", 8<<20)}
			})
		}, "", everyPathIs(tooLarge)),
		Entry("JSON nested 9000 deep in an unknown field", func() []byte {
			return withObject(func(obj map[string]any) { obj["spec"].(map[string]any)["futureField"] = nested(9000) })
		}, "", unmutatedIsBad(mutated)),
		Entry("JSON nested 10001 deep, past the decoder's limit", func() []byte {
			b := reviewOf("CREATE", minimalJSON(), nil, 1)
			return []byte(strings.Replace(string(b), `"spec":{`, `"spec":{"futureField":`+string(nested(10001))+`,`, 1))
		}, "", everyPathIs(badRequest)),
		Entry("unknown fields in the review, the request and the object", func() []byte {
			var review map[string]any
			Expect(json.Unmarshal(withObject(func(obj map[string]any) {
				obj["spec"].(map[string]any)["futureField"] = map[string]any{"mode": "fast"}
				podSpecOf(obj)["containers"].([]any)[0].(map[string]any)["futureContainerField"] = true
			}), &review)).To(Succeed())
			review["futureReviewField"] = 1
			review["request"].(map[string]any)["futureRequestField"] = "x"
			b, _ := json.Marshal(review)
			return b
		}, "", unmutatedIsBad(mutated)),
	)

	It("kept serving throughout, without a restart or a recovered panic", func(ctx SpecContext) {
		stillServing(ctx)
		Expect(srv.panics()).To(BeZero())
		Expect(srv.log()).NotTo(ContainSubstring("panic"))
		AddReportEntry("bad AdmissionReviews answered", answered)
		GinkgoWriter.Printf("bad AdmissionReviews: %d answers, no 5xx, no panic\n", answered)
	})

	It("keeps unknown fields: the mutating webhook's patch removes nothing", func(ctx SpecContext) {
		body := withObject(func(obj map[string]any) { obj["spec"].(map[string]any)["futureField"] = map[string]any{"mode": "fast"} })
		_, review, err := post(ctx, https, srv.addr, paths[0], body)
		Expect(err).NotTo(HaveOccurred())
		Expect(review.Response.Allowed).To(BeTrue())
		Expect(string(review.Response.Patch)).NotTo(ContainSubstring(`"remove"`))
	})

	It("answers the request's uid", func(ctx SpecContext) {
		_, review, err := post(ctx, https, srv.addr, paths[0], reviewOf("CREATE", minimalJSON(), nil, 42))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(review.Response.UID)).To(Equal("00000000-0000-4000-8000-000000000042"))
	})
})

// postAs is post with a content type ("" is application/json).
func postAs(ctx context.Context, c *http.Client, addr, path, contentType string, body []byte) (int, *admissionv1.AdmissionReview, error) {
	if contentType == "" {
		return post(ctx, c, addr, path, body)
	}
	return postWithType(ctx, c, addr, path, contentType, body)
}
