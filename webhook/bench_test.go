package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"gomodules.xyz/jsonpatch/v2"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"github.com/valkey-webhook/valkey-webhook/config"
)

// The benchmarks below are not run by `make test` (go test runs no benchmark
// without -bench); docs/benchmarks.md records their output. Run them with
//
//	go test -run '^$' -bench . -benchmem ./defaults ./webhook

// readStatefulSet reads a YAML example into a StatefulSet.
func readStatefulSet(b *testing.B, path string) *appsv1.StatefulSet {
	b.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	sts := &appsv1.StatefulSet{}
	if err := yaml.UnmarshalStrict(data, sts); err != nil {
		b.Fatal(err)
	}
	return sts
}

// hardenedJSON is the minimal example after the mutating webhook, as the API server
// stores it: what the validating webhook sees on CREATE, and what an UPDATE that
// changes nothing sends to the mutating webhook.
func hardenedJSON(b *testing.B, example string) []byte {
	b.Helper()
	data, err := os.ReadFile(example)
	if err != nil {
		b.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		b.Fatal(err)
	}
	out, _, err := NewOffline(scheme.Scheme, config.Default()).Mutate(context.Background(), js)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// BenchmarkMutate is the pure admission mutation of the minimal example on CREATE:
// the annotations over the policy, then the hardening. The DeepCopy that gives each
// round a fresh input is included (BenchmarkDeepCopy measures it alone).
func BenchmarkMutate(b *testing.B) {
	sts := readStatefulSet(b, "../examples/minimal-statefulset.yaml")
	p := config.Default()
	b.ReportAllocs()
	for b.Loop() {
		if err := Mutate(sts.DeepCopy(), nil, p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeepCopy is the copy BenchmarkMutate makes in each round.
func BenchmarkDeepCopy(b *testing.B) {
	sts := readStatefulSet(b, "../examples/minimal-statefulset.yaml")
	b.ReportAllocs()
	for b.Loop() {
		_ = sts.DeepCopy()
	}
}

// BenchmarkValidate is the pure validation: a hardened StatefulSet that passes, and
// a hardened one with a privileged container that is denied.
func BenchmarkValidate(b *testing.B) {
	p := config.Default()
	for _, bc := range []struct {
		name, example string
		denied        bool
	}{
		{"allowed", "../examples/minimal-statefulset.yaml", false},
		{"denied", "../examples/unsafe/privileged.yaml", true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			sts := &appsv1.StatefulSet{}
			if err := yaml.Unmarshal(hardenedJSON(b, bc.example), sts); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if errs, _ := Validate(sts, p); (len(errs) > 0) != bc.denied {
					b.Fatalf("denied=%v, want %v: %v", len(errs) > 0, bc.denied, errs)
				}
			}
		})
	}
}

// BenchmarkHandler is the whole webhook behind the HTTP handler, without TLS and
// the network: read and decode the AdmissionReview, decode the object, mutate or
// validate, compute the patch, encode the response. The objects are encoded as the
// API server encodes them (encoding/json of the typed object, with a managedFields
// entry), except in mutate/minimal-yaml, which sends the example's YAML converted to
// JSON (sorted keys), as an offline tool does.
func BenchmarkHandler(b *testing.B) {
	minimalYAML := minimalJSON(b)
	minimal := canonical(b, minimalYAML)
	unlabeled := bytes.Replace(minimal, []byte(`"valkey-webhook.io/cluster":"enabled"`), []byte(`"app":"cache"`), 1)
	if bytes.Equal(unlabeled, minimal) {
		b.Fatal("the minimal example has no cluster label to remove")
	}
	hardened := canonical(b, hardenedJSON(b, "../examples/minimal-statefulset.yaml"))
	unsafe := canonical(b, hardenedJSON(b, "../examples/unsafe/privileged.yaml"))
	// The handlers log through controller-runtime's logger, which complains when
	// nothing set it.
	crlog.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	hooks := Handlers(scheme.Scheme, config.Default())
	for _, bc := range []struct {
		name, path string
		object     []byte
		want       verdict
	}{
		{"mutate/minimal", MutatePath, minimal, verdict{Allowed: true, Code: 200, Patched: true}},
		{"mutate/minimal-yaml", MutatePath, minimalYAML, verdict{Allowed: true, Code: 200, Patched: true}},
		{"mutate/hardened", MutatePath, hardened, verdict{Allowed: true, Code: 200}},
		{"validate/hardened", ValidatePath, hardened, verdict{Allowed: true, Code: 200}},
		{"validate/unsafe", ValidatePath, unsafe, verdict{Code: 422}},
		{"enforce/unlabeled", EnforcePath, unlabeled, verdict{Allowed: true, Code: 200}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			body := review(b, "CREATE", "StatefulSet", "statefulsets", "", bc.object, nil)
			if _, resp := serve(b, bc.path, body); verdictOf(resp) != bc.want {
				b.Fatalf("verdict %+v, want %+v", verdictOf(resp), bc.want)
			}
			hook := hooks[bc.path]
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				r := httptest.NewRequest(http.MethodPost, bc.path, bytes.NewReader(body))
				r.Header.Set("Content-Type", "application/json")
				w := httptest.NewRecorder()
				hook.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("HTTP %d", w.Code)
				}
			}
		})
	}
}

// canonical encodes a StatefulSet as the API server sends it: with the
// managedFields entry of the client that created it, and the typed object through
// encoding/json.
func canonical(b *testing.B, object []byte) []byte {
	b.Helper()
	sts := &appsv1.StatefulSet{}
	if err := json.Unmarshal(object, sts); err != nil {
		b.Fatal(err)
	}
	sts.ManagedFields = []metav1.ManagedFieldsEntry{{
		Manager:    "kubectl-create",
		Operation:  metav1.ManagedFieldsOperationUpdate,
		APIVersion: "apps/v1",
		Time:       &metav1.Time{Time: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)},
		FieldsType: "FieldsV1",
		FieldsV1:   &metav1.FieldsV1{Raw: []byte(kubectlCreateFields)},
	}}
	out, err := json.Marshal(sts)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// kubectlCreateFields are the fields kubectl create owns in the minimal example,
// as the API server records them.
const kubectlCreateFields = `{"f:metadata":{"f:labels":{".":{},"f:valkey-webhook.io/cluster":{}}},"f:spec":{"f:persistentVolumeClaimRetentionPolicy":{".":{},"f:whenDeleted":{},"f:whenScaled":{}},"f:podManagementPolicy":{},"f:replicas":{},"f:revisionHistoryLimit":{},"f:selector":{},"f:template":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"valkey\"}":{".":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{".":{},"f:limits":{".":{},"f:memory":{}}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{}}},"f:dnsPolicy":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}},"f:updateStrategy":{"f:rollingUpdate":{".":{},"f:maxUnavailable":{},"f:partition":{}},"f:type":{}}}}`

// TestEncodePatch keeps encodePatch, which the mutating handler uses for speed,
// byte for byte equal to what controller-runtime's Response.Complete writes
// (json.Marshal of the operations), on the patch of the minimal example and on
// values of every kind, null included.
func TestEncodePatch(t *testing.T) {
	minimal := minimalJSON(t)
	sts := &appsv1.StatefulSet{}
	if err := json.Unmarshal(minimal, sts); err != nil {
		t.Fatal(err)
	}
	original := sts.DeepCopy()
	if err := Mutate(sts, nil, config.Default()); err != nil {
		t.Fatal(err)
	}
	patch, _, err := intendedPatch(minimal, original, sts)
	if err != nil || len(patch) == 0 {
		t.Fatalf("no patch for the minimal example: %v", err)
	}
	patch = append(patch,
		jsonpatch.NewOperation("add", "/a", nil),
		jsonpatch.NewOperation("replace", "/b", nil),
		jsonpatch.NewOperation("remove", "/c", nil),
		jsonpatch.NewOperation("add", "/d", ""),
		jsonpatch.NewOperation("replace", "/e~1f", json.Number("0")),
		jsonpatch.NewOperation("add", "/g", false),
		jsonpatch.NewOperation("add", "/h", []any{}),
		jsonpatch.NewOperation("add", "/i", map[string]any{"<&>": "\u2028"}),
	)
	want, err := json.Marshal(patch)
	if err != nil {
		t.Fatal(err)
	}
	got, err := encodePatch(patch)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("encodePatch differs from json.Marshal:\n got %s\nwant %s", got, want)
	}
}
