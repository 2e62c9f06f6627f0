package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"

	"gomodules.xyz/jsonpatch/v2"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// onlyIntendedChanges keeps, of a mutating handler's patch, only what the mutation
// meant to change. The framework diffs the request's JSON against the marshalled Go
// object, so the patch also carries what a decode and encode alone produce: removals
// of fields this build's API types do not know (sent by a newer Kubernetes) and
// additions of empty fields such as status. Those operations are dropped, so the
// patch never removes what the mutation did not mean to change and stays small.
func onlyIntendedChanges(decoder admission.Decoder, h admission.Handler) admission.Handler {
	return admission.HandlerFunc(func(ctx context.Context, req admission.Request) admission.Response {
		resp := h.Handle(ctx, req)
		if !resp.Allowed || len(resp.Patches) == 0 {
			return resp
		}
		decoded := &appsv1.StatefulSet{}
		if err := decoder.DecodeRaw(req.Object, decoded); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		roundTrip, err := json.Marshal(decoded)
		if err != nil {
			return admission.Errored(http.StatusInternalServerError, err)
		}
		noise, err := jsonpatch.CreatePatch(req.Object.Raw, roundTrip)
		if err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		resp.Patches = slices.DeleteFunc(resp.Patches, func(op jsonpatch.JsonPatchOperation) bool {
			return slices.ContainsFunc(noise, func(n jsonpatch.JsonPatchOperation) bool { return sameOperation(op, n) })
		})
		if len(resp.Patches) == 0 {
			resp.PatchType = nil
		}
		return resp
	})
}

func sameOperation(a, b jsonpatch.JsonPatchOperation) bool {
	if a.Operation != b.Operation || a.Path != b.Path {
		return false
	}
	av, errA := json.Marshal(a.Value)
	bv, errB := json.Marshal(b.Value)
	return errA == nil && errB == nil && string(av) == string(bv)
}
