package webhookserver

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
)

func TestReadHead(t *testing.T) {
	// As the API server writes a review: kind, apiVersion, then the request
	// with uid first.
	apiServer := `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","kind":{"group":"apps","version":"v1","kind":"StatefulSet"},"object":{"metadata":{"name":"x"}}}}`
	for _, tc := range []struct {
		name string
		in   string
		want reviewHead
	}{
		{"the API server's order: uid first", apiServer, reviewHead{APIVersion: "admission.k8s.io/v1", UID: "705ab4f5-6393-11e8-b7cc-42010a800002"}},
		{"cut right after the uid", apiServer[:strings.Index(apiServer, `,"kind":{`)], reviewHead{APIVersion: "admission.k8s.io/v1", UID: "705ab4f5-6393-11e8-b7cc-42010a800002"}},
		{"v1beta1", `{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"a"}}`, reviewHead{APIVersion: "admission.k8s.io/v1beta1", UID: "a"}},
		{"uid after other fields, objects and arrays", `{"request":{"kind":{"kind":"StatefulSet"},"dryRun":false,"options":{"a":[1,{"uid":"not this"},[]]},"resource":null,"uid":"b"}}`, reviewHead{UID: "b"}},
		{"uid after an object holding a uid", `{"request":{"object":{"metadata":{"uid":"the object's"}},"uid":"c"}}`, reviewHead{UID: "c"}},
		{"fields before the request", `{"futureField":{"uid":"no"},"apiVersion":"admission.k8s.io/v1","request":{"uid":"d"}}`, reviewHead{APIVersion: "admission.k8s.io/v1", UID: "d"}},
		{"no uid", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"kind":"StatefulSet"},"object":{}}}`, reviewHead{APIVersion: "admission.k8s.io/v1"}},
		{"no request", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, reviewHead{APIVersion: "admission.k8s.io/v1"}},
		{"a uid outside the request", `{"uid":"e","response":{"uid":"f"}}`, reviewHead{}},
		{"uid not a string", `{"request":{"uid":42}}`, reviewHead{}},
		{"request not an object", `{"request":"uid"}`, reviewHead{}},
		{"truncated inside the uid", apiServer[:strings.Index(apiServer, `-6393`)], reviewHead{APIVersion: "admission.k8s.io/v1"}},
		{"truncated before the request", `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","requ`, reviewHead{APIVersion: "admission.k8s.io/v1"}},
		{"truncated inside an object before the uid", `{"request":{"kind":{"group":"apps","versi`, reviewHead{}},
		{"not JSON", `uid: "g"`, reviewHead{}},
		{"not an object", `["request",{"uid":"h"}]`, reviewHead{}},
		{"empty", ``, reviewHead{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, readHead([]byte(tc.in))); diff != "" {
				t.Errorf("readHead(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

// TestLimitBody sends bodies below, at and over a small limit, with and without
// Content-Length, and checks what the hook sees and what is answered.
func TestLimitBody(t *testing.T) {
	const max = 1000
	review := func(size int) string {
		r := `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u-1","object":{"pad":"`
		return r + strings.Repeat("x", size-len(r)-len(`"}}}`)) + `"}}}`
	}
	for _, tc := range []struct {
		name       string
		body       string
		length     bool
		wantHook   bool
		wantUID    string
		wantCode   int32
		wantTypeOK bool
	}{
		{"below the limit, with Content-Length", review(max - 1), true, true, "", 0, false},
		{"below the limit, without", review(max - 1), false, true, "", 0, false},
		{"at the limit, with Content-Length", review(max), true, false, "u-1", 413, true},
		{"at the limit, without", review(max), false, false, "u-1", 413, true},
		{"over it, with Content-Length", review(3 * max), true, false, "u-1", 413, true},
		{"over it, without", review(3 * max), false, false, "u-1", 413, true},
		{"over it, no uid", `{"request":{"object":"` + strings.Repeat("x", max) + `"}}`, true, false, "", 413, false},
		{"over it, not JSON", strings.Repeat("x", max), false, false, "", 413, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sawBody string
			hook := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, err := io.ReadAll(r.Body)
				if err != nil {
					t.Errorf("hook read: %v", err)
				}
				sawBody = string(b)
				w.WriteHeader(http.StatusTeapot)
			})
			req := httptest.NewRequest(http.MethodPost, "/validate", strings.NewReader(tc.body))
			if !tc.length {
				req.ContentLength = -1
			}
			rec := httptest.NewRecorder()
			limitBody(max, hook).ServeHTTP(rec, req)
			if tc.wantHook {
				if rec.Code != http.StatusTeapot || sawBody != tc.body {
					t.Fatalf("the hook was not given the whole body: status %d, %d of %d bytes", rec.Code, len(sawBody), len(tc.body))
				}
				return
			}
			if sawBody != "" {
				t.Fatalf("the hook saw a body of %d bytes", len(sawBody))
			}
			if rec.Code != http.StatusOK {
				t.Fatalf("HTTP status %d, want 200", rec.Code)
			}
			var got admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Response == nil || got.Response.Result == nil {
				t.Fatalf("not an AdmissionReview with a status: %v: %s", err, rec.Body)
			}
			if string(got.Response.UID) != tc.wantUID || got.Response.Allowed || got.Response.Result.Code != tc.wantCode {
				t.Errorf("uid %q allowed %t code %d, want uid %q, denied, code %d", got.Response.UID, got.Response.Allowed, got.Response.Result.Code, tc.wantUID, tc.wantCode)
			}
			if typed := got.APIVersion == "admission.k8s.io/v1" && got.Kind == "AdmissionReview"; typed != tc.wantTypeOK {
				t.Errorf("apiVersion %q kind %q; want typed %t (only with a uid)", got.APIVersion, got.Kind, tc.wantTypeOK)
			}
			if msg := got.Response.Result.Message; !strings.Contains(msg, "+ bytes is over valkey-webhook's limit of 1000 bytes") {
				t.Errorf("message %q does not give the size and the limit", msg)
			}
		})
	}
}
