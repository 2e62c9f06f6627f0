package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/yaml"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// noIO is a client.Reader that fails the test on any read: the requests given to
// it must be answered without asking the cluster.
type noIO struct{ t *testing.T }

func (r noIO) Get(context.Context, client.ObjectKey, client.Object, ...client.GetOption) error {
	r.t.Error("the scale guard read an object")
	return fmt.Errorf("no reads")
}

func (r noIO) List(context.Context, client.ObjectList, ...client.ListOption) error {
	r.t.Error("the scale guard listed objects")
	return fmt.Errorf("no reads")
}

// scaleReview is an UPDATE review of the scale subresource of StatefulSet cache.
func scaleReview(t *testing.T, from, to int32) []byte {
	t.Helper()
	scale := func(n int32) []byte {
		return []byte(fmt.Sprintf(`{"apiVersion":"autoscaling/v1","kind":"Scale","metadata":{"name":"cache","namespace":"team-a"},"spec":{"replicas":%d}}`, n))
	}
	var req map[string]any
	if err := json.Unmarshal(review(t, "UPDATE", "Scale", "statefulsets", "scale", scale(to), scale(from)), &req); err != nil {
		t.Fatal(err)
	}
	r := req["request"].(map[string]any)
	r["kind"] = map[string]string{"group": "autoscaling", "version": "v1", "kind": "Scale"}
	r["name"] = "cache"
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// stsJSON is the minimal example with the given replicas, labeled or not, with
// extra annotations.
func stsJSON(t *testing.T, replicas int32, labeled bool, annotations map[string]string) []byte {
	t.Helper()
	sts := &appsv1.StatefulSet{}
	if err := yaml.Unmarshal(minimalJSON(t), sts); err != nil {
		t.Fatal(err)
	}
	sts.Spec.Replicas = ptr.To(replicas)
	if !labeled {
		delete(sts.Labels, defaults.ClusterLabel)
	}
	if len(annotations) > 0 {
		sts.Annotations = annotations
	}
	sts.SetGroupVersionKind(schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"})
	b, err := json.Marshal(sts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestScaleGuardWithoutIO covers the requests the scale guard answers without
// reading anything: scale-ups, unchanged replicas, unlabeled StatefulSets, the
// guard turned off by the object's annotation, and requests it does not act on.
func TestScaleGuardWithoutIO(t *testing.T) {
	// Allowed and passed through look alike here: both 200, allowed.
	allowed := verdict{Allowed: true, Code: http.StatusOK}
	tests := []struct {
		name string
		body func(t *testing.T) []byte
		want verdict
	}{
		{"scale subresource, up", func(t *testing.T) []byte { return scaleReview(t, 6, 8) }, allowed},
		{"scale subresource, unchanged", func(t *testing.T) []byte { return scaleReview(t, 6, 6) }, allowed},
		{"StatefulSet, up", func(t *testing.T) []byte {
			return review(t, "UPDATE", "StatefulSet", "statefulsets", "", stsJSON(t, 8, true, nil), stsJSON(t, 6, true, nil))
		}, allowed},
		{"StatefulSet, unchanged", func(t *testing.T) []byte {
			return review(t, "UPDATE", "StatefulSet", "statefulsets", "", stsJSON(t, 6, true, nil), stsJSON(t, 6, true, nil))
		}, allowed},
		{"StatefulSet, down, not labeled before or after", func(t *testing.T) []byte {
			return review(t, "UPDATE", "StatefulSet", "statefulsets", "", stsJSON(t, 3, false, nil), stsJSON(t, 6, false, nil))
		}, allowed},
		{"StatefulSet, down, the guard off by annotation", func(t *testing.T) []byte {
			off := map[string]string{"valkey-webhook.io/scaleGuard": "off"}
			return review(t, "UPDATE", "StatefulSet", "statefulsets", "", stsJSON(t, 3, true, off), stsJSON(t, 6, true, nil))
		}, allowed},
		{"StatefulSet, CREATE", func(t *testing.T) []byte {
			return review(t, "CREATE", "StatefulSet", "statefulsets", "", stsJSON(t, 6, true, nil), nil)
		}, allowed},
		{"StatefulSet, DELETE", func(t *testing.T) []byte {
			return review(t, "DELETE", "StatefulSet", "statefulsets", "", nil, stsJSON(t, 6, true, nil))
		}, allowed},
		{"status subresource", func(t *testing.T) []byte {
			return review(t, "UPDATE", "StatefulSet", "statefulsets", "status", stsJSON(t, 3, true, nil), stsJSON(t, 6, true, nil))
		}, allowed},
		{"another kind", func(t *testing.T) []byte {
			return review(t, "UPDATE", "Deployment", "deployments", "", []byte(`{}`), []byte(`{}`))
		}, allowed},
		{"UPDATE without oldObject", func(t *testing.T) []byte {
			return review(t, "UPDATE", "StatefulSet", "statefulsets", "", stsJSON(t, 3, true, nil), nil)
		}, verdict{Code: http.StatusBadRequest}},
		{"scale UPDATE without object", func(t *testing.T) []byte {
			var req map[string]any
			_ = json.Unmarshal(scaleReview(t, 6, 3), &req)
			delete(req["request"].(map[string]any), "object")
			b, _ := json.Marshal(req)
			return b
		}, verdict{Code: http.StatusBadRequest}},
		{"a Pod as the old StatefulSet", func(t *testing.T) []byte {
			return review(t, "UPDATE", "StatefulSet", "statefulsets", "", stsJSON(t, 3, true, nil), []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}`))
		}, verdict{Code: http.StatusBadRequest}},
		{"no uid", func(t *testing.T) []byte {
			var req map[string]any
			_ = json.Unmarshal(scaleReview(t, 6, 3), &req)
			delete(req["request"].(map[string]any), "uid")
			b, _ := json.Marshal(req)
			return b
		}, verdict{Code: http.StatusBadRequest}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hook := scaleGuardWebhook(scheme.Scheme, config.Default(), noIO{t}, noIO{t})
			r := httptest.NewRequest(http.MethodPost, ScaleGuardPath, bytes.NewReader(tc.body(t)))
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			hook.ServeHTTP(w, r)
			var out admissionv1.AdmissionReview
			if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || out.Response == nil {
				t.Fatalf("the answer is not an AdmissionReview with a response: %v: %q", err, w.Body.String())
			}
			got := verdict{Allowed: out.Response.Allowed, Patched: len(out.Response.Patch) > 0}
			if out.Response.Result != nil {
				got.Code = out.Response.Result.Code
			}
			if w.Code != http.StatusOK {
				t.Errorf("HTTP %d", w.Code)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("verdict mismatch (-want +got):\n%s\nresult: %+v", diff, out.Response.Result)
			}
		})
	}
}

// TestOfflineRunsNoScaleGuard: the offline commands have no cluster to ask.
func TestOfflineRunsNoScaleGuard(t *testing.T) {
	if _, ok := Handlers(scheme.Scheme, config.Default())[ScaleGuardPath]; ok {
		t.Error("Handlers, which the offline commands run, includes the scale guard")
	}
	if _, ok := NewOffline(scheme.Scheme, config.Default()).hooks[ScaleGuardPath]; ok {
		t.Error("the offline runner has the scale guard")
	}
	hooks := ServeHandlers(scheme.Scheme, config.Default(), noIO{t}, noIO{t})
	for _, path := range []string{MutatePath, ValidatePath, EnforcePath, ScaleGuardPath} {
		if hooks[path] == nil {
			t.Errorf("ServeHandlers has no %s", path)
		}
	}
}

// TestScaleGuardReads covers the scale-downs that read the StatefulSet and its
// pods but never get to ask Valkey: the cluster has no running pods here, so the
// guard cannot check and refuses (enforce) or warns. The StatefulSet is found
// past an empty cache, as right after serve starts.
func TestScaleGuardReads(t *testing.T) {
	// stored is the StatefulSet as the API server holds it, without replicas per
	// master, so that a scale to 3 pods (3 masters) passes the static replica
	// rule and reaches the live check.
	stored := func(labeled bool, annotations map[string]string) *appsv1.StatefulSet {
		sts := &appsv1.StatefulSet{}
		withMin := map[string]string{"valkey-webhook.io/cluster.replicasPerMaster": "0"}
		maps.Copy(withMin, annotations)
		if err := json.Unmarshal(stsJSON(t, 6, labeled, withMin), sts); err != nil {
			t.Fatal(err)
		}
		sts.Namespace = "team-a"
		return sts
	}
	const unchecked = `StatefulSet.apps "cache" is invalid: spec.replicas: Forbidden: scaling cache down from 6 to 3 pods cannot be checked: ` +
		`not every pod runs: cache-0 does not exist, cache-1 does not exist, cache-2 does not exist, cache-3 does not exist, cache-4 does not exist, cache-5 does not exist. ` +
		`The scale guard refuses what it cannot check: retry once every pod runs and answers. ` +
		`To scale down anyway, annotate the StatefulSet valkey-webhook.io/scaleGuard=off (or =warn, which admits it with this text as a warning).`
	type answer struct {
		Allowed  bool
		Code     int32
		Message  string
		Warnings []string
	}
	tests := []struct {
		name   string
		stored *appsv1.StatefulSet
		body   func(t *testing.T) []byte
		want   answer
	}{
		{
			name:   "scale subresource, labeled",
			stored: stored(true, nil),
			body:   func(t *testing.T) []byte { return scaleReview(t, 6, 3) },
			want:   answer{Code: http.StatusUnprocessableEntity, Message: unchecked},
		},
		{
			name:   "scale subresource, labeled, below the policy's minimum pods: refused by the static rule, before any live check",
			stored: stored(true, map[string]string{"valkey-webhook.io/cluster.replicasPerMaster": "1"}),
			body:   func(t *testing.T) []byte { return scaleReview(t, 6, 3) },
			want: answer{Code: http.StatusUnprocessableEntity, Message: `StatefulSet.apps "cache" is invalid: spec.replicas: Invalid value: 3: ` +
				`must be at least 6: 3 masters x (1 + 1 replicas per master); raise spec.replicas, or lower valkey-webhook.io/cluster.replicasPerMaster`},
		},
		{
			name:   "scale subresource, not labeled: allowed after reading it",
			stored: stored(false, nil),
			body:   func(t *testing.T) []byte { return scaleReview(t, 6, 3) },
			want:   answer{Allowed: true, Code: http.StatusOK},
		},
		{
			name:   "scale subresource, the StatefulSet is gone",
			stored: nil,
			body:   func(t *testing.T) []byte { return scaleReview(t, 6, 3) },
			want:   answer{Allowed: true, Code: http.StatusOK, Message: "StatefulSet team-a/cache does not exist"},
		},
		{
			name:   "scale subresource, warn by the stored StatefulSet's annotation",
			stored: stored(true, map[string]string{"valkey-webhook.io/scaleGuard": "warn"}),
			body:   func(t *testing.T) []byte { return scaleReview(t, 6, 3) },
			want: answer{Allowed: true, Code: http.StatusOK, Warnings: []string{"spec.replicas: scaling cache down from 6 to 3 pods cannot be checked: " +
				"not every pod runs: cache-0 does not exist, cache-1 does not exist, cache-2 does not exist, cache-3 does not exist, cache-4 does not exist, cache-5 does not exist. " +
				"The scale guard refuses what it cannot check: retry once every pod runs and answers. Admitted anyway: scaleGuard is warn."}},
		},
		{
			name:   "scale subresource, off by the stored StatefulSet's annotation",
			stored: stored(true, map[string]string{"valkey-webhook.io/scaleGuard": "off"}),
			body:   func(t *testing.T) []byte { return scaleReview(t, 6, 3) },
			want:   answer{Allowed: true, Code: http.StatusOK},
		},
		{
			name:   "an edit of spec.replicas that also removes the label",
			stored: nil,
			body: func(t *testing.T) []byte {
				return review(t, "UPDATE", "StatefulSet", "statefulsets", "", stsJSON(t, 3, false, nil), stsJSON(t, 6, true, nil))
			},
			want: answer{Code: http.StatusUnprocessableEntity, Message: unchecked},
		},
		{
			name:   "an edit of spec.replicas: the new object's annotation decides",
			stored: nil,
			body: func(t *testing.T) []byte {
				off := map[string]string{"valkey-webhook.io/scaleGuard": "off"}
				return review(t, "UPDATE", "StatefulSet", "statefulsets", "", stsJSON(t, 3, true, off), stsJSON(t, 6, true, nil))
			},
			want: answer{Allowed: true, Code: http.StatusOK},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			api := fake.NewClientBuilder().WithScheme(scheme.Scheme)
			if tc.stored != nil {
				api = api.WithObjects(tc.stored)
			}
			cache := fake.NewClientBuilder().WithScheme(scheme.Scheme).Build()
			hook := scaleGuardWebhook(scheme.Scheme, config.Default(), cache, api.Build())
			r := httptest.NewRequest(http.MethodPost, ScaleGuardPath, bytes.NewReader(tc.body(t)))
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			hook.ServeHTTP(w, r)
			var out admissionv1.AdmissionReview
			if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || out.Response == nil {
				t.Fatalf("the answer is not an AdmissionReview with a response: %v: %q", err, w.Body.String())
			}
			got := answer{Allowed: out.Response.Allowed, Warnings: out.Response.Warnings}
			if res := out.Response.Result; res != nil {
				got.Code, got.Message = res.Code, res.Message
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("answer mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
