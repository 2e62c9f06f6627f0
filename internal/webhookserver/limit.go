package webhookserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// MaxBodyBytes is the size from which a review body is refused: 7 MiB, the
// limit of controller-runtime's admission.Webhook, which refuses a body of this
// size or more (its io.LimitedReader runs out at exactly this size). The API
// server takes writes of up to 3 MiB (k8s.io/apiserver's MaxRequestBodyBytes)
// and a review holds at most the object and the old object, so a review reaches
// this size only with an object that defaulting grew past what the API server
// takes from a client, and past the 1.5 MiB etcd stores by default.
const MaxBodyBytes int64 = 7 << 20

// headBytes is how much of an over-limit body is read for the request's uid. The
// API server writes kind, apiVersion and then request.uid first, within the first
// hundred bytes.
const headBytes = 64 << 10

// limitBody answers a body of limit bytes or more itself, so that hook never sees
// one: with the request's uid when its first bytes carry one, so that the API
// server shows the message instead of reporting an invalid response.
//
// A body of known length (Go's client, the API server's, sends Content-Length
// for a body it holds) is judged by it, and only its head is read; a body of
// unknown length is read into memory up to limit, and handed to hook from
// there when it is shorter.
func limitBody(limit int64, hook http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			hook.ServeHTTP(w, r)
			return
		}
		if r.ContentLength >= 0 {
			if r.ContentLength < limit {
				hook.ServeHTTP(w, r)
				return
			}
			head, _ := io.ReadAll(io.LimitReader(r.Body, headBytes))
			tooLarge(w, r, readHead(head), r.ContentLength, limit)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, limit))
		if err != nil {
			log.Info("unable to read the body from the incoming request", "path", r.URL.Path, "read", len(body), "error", err.Error())
			writeReview(w, reviewHead{}, &metav1.Status{Code: http.StatusBadRequest, Message: err.Error()})
			return
		}
		if int64(len(body)) >= limit {
			tooLarge(w, r, readHead(body[:min(len(body), headBytes)]), int64(len(body)), limit)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		hook.ServeHTTP(w, r)
	})
}

// tooLarge answers a review of size bytes or more, over limit.
func tooLarge(w http.ResponseWriter, r *http.Request, head reviewHead, size, limit int64) {
	msg := fmt.Sprintf("the AdmissionReview of %d+ bytes is over valkey-webhook's limit of %d bytes, and was not read: "+
		"a StatefulSet this large is past what the API server can store (3 MiB per request, 1.5 MiB per object in etcd by default); "+
		"make it smaller, such as fewer containers or shorter annotations and env values", size, limit)
	log.Info("refused an AdmissionReview over the body limit", "path", r.URL.Path, "uid", head.UID, "bytes", size, "limit", limit)
	writeReview(w, head, &metav1.Status{Code: http.StatusRequestEntityTooLarge, Reason: metav1.StatusReasonRequestEntityTooLarge, Message: msg})
}

// writeReview answers a denial as an AdmissionReview, HTTP status 200: in the
// version and with the uid of head when it has a uid; otherwise without either,
// as controller-runtime answers a review it could not read (the API server then
// reports an invalid response, having no uid to match).
func writeReview(w http.ResponseWriter, head reviewHead, status *metav1.Status) {
	review := admissionv1.AdmissionReview{Response: &admissionv1.AdmissionResponse{UID: types.UID(head.UID), Result: status}}
	if head.UID != "" {
		version := admissionv1.SchemeGroupVersion.String()
		if head.APIVersion == "admission.k8s.io/v1beta1" {
			version = head.APIVersion
		}
		review.TypeMeta = metav1.TypeMeta{APIVersion: version, Kind: "AdmissionReview"}
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(review); err != nil {
		log.Info("unable to write the answer", "error", err.Error())
	}
}

// reviewHead is what the start of an AdmissionReview says.
type reviewHead struct {
	APIVersion string
	UID        string
}

// errNotString is a value that is not the string expected.
var errNotString = errors.New("not a string")

// readHead reads the top-level apiVersion and request.uid of an AdmissionReview
// from its first bytes, with a streaming decoder: whatever it found before the
// bytes run out or stop being JSON. It stops at request.uid, which the API
// server writes first in the request (after the review's kind and apiVersion).
func readHead(b []byte) reviewHead {
	var head reviewHead
	dec := json.NewDecoder(bytes.NewReader(b))
	if !openObject(dec) {
		return head
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return head
		}
		switch key {
		case "apiVersion":
			if head.APIVersion, err = stringValue(dec); err != nil {
				return head
			}
		case "request":
			head.UID = requestUID(dec)
			return head
		default:
			if !skipValue(dec) {
				return head
			}
		}
	}
	return head
}

// requestUID reads the uid of the request object the decoder is at.
func requestUID(dec *json.Decoder) string {
	if !openObject(dec) {
		return ""
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return ""
		}
		if key == "uid" {
			uid, _ := stringValue(dec)
			return uid
		}
		if !skipValue(dec) {
			return ""
		}
	}
	return ""
}

// openObject reads the '{' that starts an object.
func openObject(dec *json.Decoder) bool {
	t, err := dec.Token()
	return err == nil && t == json.Delim('{')
}

// stringValue reads a string value.
func stringValue(dec *json.Decoder) (string, error) {
	t, err := dec.Token()
	if err != nil {
		return "", err
	}
	s, ok := t.(string)
	if !ok {
		return "", errNotString
	}
	return s, nil
}

// skipValue reads past one value, token by token (a large object is never held
// whole): false when the bytes end first.
func skipValue(dec *json.Decoder) bool {
	depth := 0
	for {
		t, err := dec.Token()
		if err != nil {
			return false
		}
		switch t {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return true
		}
	}
}
