package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"slices"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// mutatingHandler answers the mutating webhook's requests as admission.WithDefaulter
// does (decode the object, call Default, answer with a JSON patch from the request's
// JSON to the defaulted object), with the patch limited to the intended changes.
// The object is decoded once. Only CREATEs and UPDATEs of StatefulSets reach it
// (statefulSetsOnly), so unlike the framework's handler it has no case for DELETE.
// The answer carries the encoded patch (Patch), not the operations (Patches).
//
// The framework's patch diffs the request's JSON against the marshalled Go object,
// so it also carries what a decode and encode alone produce: removals of fields this
// build's API types do not know (sent by a newer Kubernetes) and additions of empty
// fields such as status. Those operations are dropped, so the patch never removes
// what the mutation did not mean to change and stays small.
type mutatingHandler struct {
	mutator *Mutator
}

func (h *mutatingHandler) Handle(ctx context.Context, req admission.Request) admission.Response {
	ctx = admission.NewContextWithRequest(ctx, req)
	sts := &appsv1.StatefulSet{}
	if err := h.mutator.Decoder.Decode(req, sts); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	original := sts.DeepCopy()
	if err := h.mutator.Default(ctx, sts); err != nil {
		var apiStatus apierrors.APIStatus
		if errors.As(err, &apiStatus) {
			status := apiStatus.Status()
			return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: false, Result: &status}}
		}
		return admission.Denied(err.Error())
	}
	// Nothing changed: no patch to compute.
	if reflect.DeepEqual(original, sts) {
		return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: true}}
	}
	patch, status, err := intendedPatch(req.Object.Raw, original, sts)
	if err != nil {
		return admission.Errored(status, err)
	}
	resp := admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: true}}
	if len(patch) > 0 {
		// Encoded here rather than by Response.Complete: the same bytes, in one pass.
		if resp.Patch, err = encodePatch(patch); err != nil {
			return admission.Errored(http.StatusInternalServerError, err)
		}
		resp.PatchType = new(admissionv1.PatchTypeJSONPatch)
	}
	return resp
}

// intendedPatch is the JSON patch from raw, the request's object, to mutated,
// without the operations that a decode and encode of raw alone would produce
// (those from raw to original, the object raw decoded into, marshalled). On error
// it returns the HTTP status to answer with.
func intendedPatch(raw []byte, original, mutated *appsv1.StatefulSet) ([]jsonpatch.JsonPatchOperation, int32, error) {
	current, err := json.Marshal(mutated)
	if err != nil {
		return nil, http.StatusInternalServerError, err
	}
	patch, err := jsonpatch.CreatePatch(raw, current)
	if err != nil {
		return nil, http.StatusInternalServerError, err
	}
	roundTrip, err := json.Marshal(original)
	if err != nil {
		return nil, http.StatusInternalServerError, err
	}
	// The API server encodes the object as encoding/json does, so when its API
	// types are this build's, raw is exactly roundTrip and there is no noise.
	if bytes.Equal(raw, roundTrip) {
		return patch, 0, nil
	}
	noise, err := jsonpatch.CreatePatch(raw, roundTrip)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	// Noise indexed by operation and path: a large object (thousands of containers
	// or env entries) has tens of thousands of operations on both sides, and
	// scanning all of noise for each operation took minutes for a 3 MiB object, far
	// past the API server's timeout for the webhook.
	byPath := make(map[[2]string][]jsonpatch.JsonPatchOperation, len(noise))
	for _, n := range noise {
		k := [2]string{n.Operation, n.Path}
		byPath[k] = append(byPath[k], n)
	}
	return slices.DeleteFunc(patch, func(op jsonpatch.JsonPatchOperation) bool {
		return slices.ContainsFunc(byPath[[2]string{op.Operation, op.Path}], func(n jsonpatch.JsonPatchOperation) bool { return sameOperation(op, n) })
	}), 0, nil
}

func sameOperation(a, b jsonpatch.JsonPatchOperation) bool {
	if a.Operation != b.Operation || a.Path != b.Path {
		return false
	}
	av, errA := json.Marshal(a.Value)
	bv, errB := json.Marshal(b.Value)
	return errA == nil && errB == nil && string(av) == string(bv)
}

// encodePatch encodes a patch exactly as json.Marshal does through
// jsonpatch.Operation's MarshalJSON (value null in an add or replace of null, no
// value in a remove), without that method: encoding/json re-scans and compacts
// whatever a MarshalJSON method returns, which costs as much again.
func encodePatch(patch []jsonpatch.JsonPatchOperation) ([]byte, error) {
	type withValue struct {
		Operation string `json:"op"`
		Path      string `json:"path"`
		Value     any    `json:"value"`
	}
	type optionalValue struct {
		Operation string `json:"op"`
		Path      string `json:"path"`
		Value     any    `json:"value,omitempty"`
	}
	ops := make([]any, len(patch))
	for i, op := range patch {
		if op.Value == nil && (op.Operation == "add" || op.Operation == "replace") {
			ops[i] = withValue{op.Operation, op.Path, nil}
		} else {
			ops[i] = optionalValue{op.Operation, op.Path, op.Value}
		}
	}
	return json.Marshal(ops)
}
