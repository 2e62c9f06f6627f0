package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/valkey-webhook/valkey-webhook/config"
)

// Offline runs the admission webhooks on objects read from files, the way the API
// server calls them on CREATE: the same handlers, the same JSON patch, applied to
// the same JSON. What GitOps sees offline is what admission does.
type Offline struct {
	hooks map[string]*admission.Webhook
}

// NewOffline builds the webhooks for a policy.
func NewOffline(scheme *runtime.Scheme, p config.Policy) *Offline {
	return &Offline{hooks: Handlers(scheme, p)}
}

// Verdict is what one webhook said about one object.
type Verdict struct {
	// Denied is the API server's error for a denied request, nil when allowed.
	Denied *metav1.Status
	// Warnings are the admission warnings, as kubectl prints them.
	Warnings []string
	// Patch is the JSON patch a mutating webhook returned.
	Patch []byte
}

// MalformedError is returned when a webhook could not read the object at all (a
// 400): the object does not decode as its kind.
type MalformedError struct{ Message string }

func (e *MalformedError) Error() string { return e.Message }

// Mutate returns the object as the API server would store it after the mutating
// webhook, and the verdict. A denied object is returned unchanged.
func (o *Offline) Mutate(ctx context.Context, obj []byte) ([]byte, Verdict, error) {
	v, err := o.review(ctx, MutatePath, obj)
	if err != nil || v.Denied != nil || len(v.Patch) == 0 {
		return obj, v, err
	}
	patch, err := jsonpatch.DecodePatch(v.Patch)
	if err != nil {
		return nil, v, fmt.Errorf("decoding the webhook's patch: %w", err)
	}
	out, err := patch.Apply(obj)
	if err != nil {
		return nil, v, fmt.Errorf("applying the webhook's patch: %w", err)
	}
	return out, v, nil
}

// Validate returns the verdicts of the validating webhooks (labeled StatefulSets,
// and the enforcement for unlabeled ones) on an object that was already mutated.
func (o *Offline) Validate(ctx context.Context, obj []byte) ([]Verdict, error) {
	var out []Verdict
	for _, path := range []string{ValidatePath, EnforcePath} {
		v, err := o.review(ctx, path, obj)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (o *Offline) review(ctx context.Context, path string, obj []byte) (Verdict, error) {
	req, err := createRequest(obj)
	if err != nil {
		return Verdict{}, err
	}
	resp := o.hooks[path].Handle(ctx, req)
	v := Verdict{Warnings: resp.Warnings, Patch: resp.Patch}
	if resp.Allowed {
		return v, nil
	}
	status := resp.Result
	if status == nil {
		status = &metav1.Status{Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden, Message: "denied"}
	}
	if status.Code == http.StatusBadRequest {
		return v, &MalformedError{Message: status.Message}
	}
	v.Denied = status
	return v, nil
}

// createRequest builds the AdmissionRequest the API server would send for creating
// obj.
func createRequest(obj []byte) (admission.Request, error) {
	var meta struct {
		metav1.TypeMeta   `json:",inline"`
		metav1.ObjectMeta `json:"metadata"`
	}
	if err := json.Unmarshal(obj, &meta); err != nil {
		return admission.Request{}, &MalformedError{Message: err.Error()}
	}
	gvk := meta.GroupVersionKind()
	if gvk.Kind == "" || gvk.Version == "" {
		return admission.Request{}, &MalformedError{Message: "the object has no apiVersion or kind"}
	}
	resource := schema.GroupVersionResource{Group: gvk.Group, Version: gvk.Version}
	if gvk.Group == "apps" && gvk.Kind == "StatefulSet" {
		resource.Resource = "statefulsets"
	}
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       types.UID("offline"),
		Kind:      metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
		Resource:  metav1.GroupVersionResource{Group: resource.Group, Version: resource.Version, Resource: resource.Resource},
		Name:      meta.Name,
		Namespace: meta.Namespace,
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: obj},
	}}, nil
}
