package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/yaml"

	"github.com/valkey-webhook/valkey-webhook/config"
)

// minimalJSON is examples/minimal-statefulset.yaml as JSON.
func minimalJSON(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile("../examples/minimal-statefulset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// review wraps an object into an AdmissionReview request body.
func review(t testing.TB, op, kind, resource, subresource string, object, oldObject []byte) []byte {
	t.Helper()
	req := map[string]any{
		"uid":         "7f0b2b6e-0000-4000-8000-000000000001",
		"kind":        map[string]string{"group": "apps", "version": "v1", "kind": kind},
		"resource":    map[string]string{"group": "apps", "version": "v1", "resource": resource},
		"subResource": subresource,
		"namespace":   "team-a",
		"operation":   op,
	}
	if object != nil {
		req["object"] = json.RawMessage(object)
	}
	if oldObject != nil {
		req["oldObject"] = json.RawMessage(oldObject)
	}
	body, err := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// serve posts body to the webhook at path, as the API server does, and returns the
// HTTP status and the decoded response.
func serve(t testing.TB, path string, body []byte) (int, *admissionv1.AdmissionResponse) {
	t.Helper()
	return serveWith(t, config.Default(), path, body)
}

// serveWith is serve with the webhooks of policy p.
func serveWith(t testing.TB, p config.Policy, path string, body []byte) (int, *admissionv1.AdmissionResponse) {
	t.Helper()
	hooks := Handlers(scheme.Scheme, p)
	r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	hooks[path].ServeHTTP(w, r)
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || out.Response == nil {
		t.Fatalf("%s: the answer is not an AdmissionReview with a response: %v: %q", path, err, w.Body.String())
	}
	return w.Code, out.Response
}

type verdict struct {
	Allowed bool
	Code    int32 // 0 when the response carries no status
	Patched bool
}

func verdictOf(resp *admissionv1.AdmissionResponse) verdict {
	v := verdict{Allowed: resp.Allowed, Patched: len(resp.Patch) > 0}
	if resp.Result != nil {
		v.Code = resp.Result.Code
	}
	return v
}

// TestBadRequests sends malformed and unusual requests to each webhook: each gets a
// clear 4xx or a pass-through, never a 5xx.
func TestBadRequests(t *testing.T) {
	sts := minimalJSON(t)
	pod := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"x"}]}}`)
	scale := []byte(`{"apiVersion":"autoscaling/v1","kind":"Scale","metadata":{"name":"cache"},"spec":{"replicas":4}}`)
	cases := map[string]struct {
		body []byte
		want map[string]verdict
	}{
		"not JSON": {
			body: []byte("not json"),
			want: all(verdict{Code: 400}),
		},
		"no request": {
			body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`),
			want: all(verdict{Code: 400}),
		},
		"CREATE without object": {
			body: review(t, "CREATE", "StatefulSet", "statefulsets", "", nil, nil),
			want: all(verdict{Code: 400}),
		},
		"UPDATE without oldObject": {
			body: review(t, "UPDATE", "StatefulSet", "statefulsets", "", sts, nil),
			want: all(verdict{Code: 400}),
		},
		"a Pod under the StatefulSet kind": {
			body: review(t, "CREATE", "StatefulSet", "statefulsets", "", pod, nil),
			want: all(verdict{Code: 400}),
		},
		"another kind": {
			body: review(t, "CREATE", "Deployment", "deployments", "", pod, nil),
			want: all(verdict{Allowed: true, Code: 200}),
		},
		"the scale subresource": {
			body: review(t, "UPDATE", "Scale", "statefulsets", "scale", scale, scale),
			want: all(verdict{Allowed: true, Code: 200}),
		},
		"DELETE": {
			body: review(t, "DELETE", "StatefulSet", "statefulsets", "", nil, sts),
			want: all(verdict{Allowed: true, Code: 200}),
		},
		"a StatefulSet whose spec does not decode": {
			body: review(t, "CREATE", "StatefulSet", "statefulsets", "", []byte(`{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"x"},"spec":{"replicas":"six"}}`), nil),
			want: all(verdict{Code: 400}),
		},
		"the minimal example": {
			body: review(t, "CREATE", "StatefulSet", "statefulsets", "", sts, nil),
			want: map[string]verdict{
				MutatePath: {Allowed: true, Code: 200, Patched: true},
				// Unmutated it has no data claim template; the API server always
				// calls the mutating webhook first.
				ValidatePath: {Code: 422},
				EnforcePath:  {Allowed: true, Code: 200},
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := map[string]verdict{}
			for path := range tc.want {
				status, resp := serve(t, path, tc.body)
				if status != http.StatusOK {
					t.Errorf("%s: HTTP %d, want 200 with the verdict inside", path, status)
				}
				got[path] = verdictOf(resp)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("verdicts (-want +got):\n%s", diff)
			}
		})
	}
}

func all(v verdict) map[string]verdict {
	return map[string]verdict{MutatePath: v, ValidatePath: v, EnforcePath: v}
}

// TestPatchKeepsUnknownFields sends a StatefulSet carrying fields this build's API
// types do not know, as a newer API server would: the patch must not remove them,
// and applying it keeps them.
func TestPatchKeepsUnknownFields(t *testing.T) {
	var obj map[string]any
	if err := json.Unmarshal(minimalJSON(t), &obj); err != nil {
		t.Fatal(err)
	}
	obj["spec"].(map[string]any)["futureField"] = map[string]any{"mode": "fast"}
	containers := obj["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)
	containers[0].(map[string]any)["futureContainerField"] = true
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}

	_, resp := serve(t, MutatePath, review(t, "CREATE", "StatefulSet", "statefulsets", "", raw, nil))
	if !resp.Allowed || len(resp.Patch) == 0 {
		t.Fatalf("want an allowed response with a patch, got %+v", resp)
	}
	if strings.Contains(string(resp.Patch), `"remove"`) {
		t.Errorf("the patch removes something: %s", resp.Patch)
	}
	if strings.Contains(string(resp.Patch), `"/status"`) {
		t.Errorf("the patch carries the empty status a decode and encode adds: %s", resp.Patch)
	}
	patch, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := patch.Apply(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"futureField":{"mode":"fast"}`, `"futureContainerField":true`} {
		if !strings.Contains(string(patched), field) {
			t.Errorf("the patched object lost %s", field)
		}
	}
}

// FuzzAdmissionHandler sends arbitrary bytes to each webhook that serve
// registers: the answer is always an AdmissionReview, and never a 5xx (a
// recovered panic is a 500). The scale guard reads from an empty cluster: a
// scale-down it cannot check is refused with a 422, one of a StatefulSet that does
// not exist is allowed.
func FuzzAdmissionHandler(f *testing.F) {
	sts := minimalJSON(f)
	f.Add(review(f, "CREATE", "StatefulSet", "statefulsets", "", sts, nil))
	f.Add(review(f, "UPDATE", "StatefulSet", "statefulsets", "", sts, sts))
	f.Add(review(f, "UPDATE", "StatefulSet", "statefulsets", "", []byte(strings.Replace(string(sts), `"replicas":6`, `"replicas":3`, 1)), sts))
	f.Add(review(f, "UPDATE", "Scale", "statefulsets", "scale", []byte(`{"apiVersion":"autoscaling/v1","kind":"Scale","metadata":{"name":"cache"},"spec":{"replicas":3}}`), []byte(`{"apiVersion":"autoscaling/v1","kind":"Scale","metadata":{"name":"cache"},"spec":{"replicas":6}}`)))
	f.Add(review(f, "CREATE", "StatefulSet", "statefulsets", "", []byte(`{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"labels":{"valkey-webhook.io/cluster":"enabled"},"annotations":{"valkey-webhook.io/valkey.maxmemory":"1Gi"}},"spec":{"template":{"spec":{"containers":[{"name":"valkey","resources":{"limits":{"memory":"1Gi"}}}]}}}}`), nil))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1"}}`))
	f.Add([]byte("{"))
	empty := fake.NewClientBuilder().WithScheme(scheme.Scheme).Build()
	hooks := ServeHandlers(scheme.Scheme, config.Default(), empty, empty)
	f.Fuzz(func(t *testing.T, body []byte) {
		for path, hook := range hooks {
			r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			hook.ServeHTTP(w, r)
			var out admissionv1.AdmissionReview
			if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || out.Response == nil {
				t.Fatalf("%s: not an AdmissionReview: %v: %q", path, err, w.Body.String())
			}
			if w.Code >= 500 || (out.Response.Result != nil && out.Response.Result.Code >= 500) {
				t.Fatalf("%s: 5xx for %q: %+v", path, body, out.Response.Result)
			}
		}
	})
}
