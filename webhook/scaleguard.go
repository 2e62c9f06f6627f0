package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
	"github.com/valkey-webhook/valkey-webhook/scaleguard"
)

// scaleGuard is the scale guard webhook: on UPDATE of a labeled StatefulSet, or
// of the scale subresource of one, that lowers replicas, it asks the live cluster
// whether the pods that would go still serve slots.
type scaleGuard struct {
	decoder admission.Decoder
	policy  config.Policy
	// reader reads StatefulSets and their pods (serve's cache); apiReader the
	// Secrets, and what the cache does not hold yet.
	reader, apiReader client.Reader
	budget            time.Duration
}

func scaleGuardWebhook(scheme *runtime.Scheme, p config.Policy, reader, apiReader client.Reader) *admission.Webhook {
	g := &scaleGuard{decoder: admission.NewDecoder(scheme), policy: p, reader: reader, apiReader: apiReader, budget: scaleguard.Budget}
	return &admission.Webhook{Handler: counted("scaleguard", g), WithContextFunc: withReviewVersion}
}

// isScale reports whether a request is for the scale subresource of a
// StatefulSet.
func isScale(req admission.Request) bool {
	return req.Resource.Group == appsv1.GroupName && req.Resource.Resource == "statefulsets" && req.SubResource == "scale"
}

// Handle answers one request. Only an UPDATE that lowers replicas does any I/O.
func (g *scaleGuard) Handle(ctx context.Context, req admission.Request) admission.Response {
	if resp, bad := badReview(ctx, req); bad {
		return resp
	}
	statefulSet := req.Kind.Group == appsv1.GroupName && req.Kind.Version == "v1" && req.Kind.Kind == "StatefulSet" && req.SubResource == ""
	scale := isScale(req) && req.Kind.Group == autoscalingv1.GroupName && req.Kind.Version == "v1" && req.Kind.Kind == "Scale"
	switch {
	case !statefulSet && !scale:
		return admission.Allowed(fmt.Sprintf("the scale guard acts on apps/v1 StatefulSets and their scale subresource only; %s %s/%s passes unchanged", req.Kind.Kind, req.Resource.Resource, req.SubResource))
	case req.Operation != admissionv1.Update:
		return admission.Allowed(fmt.Sprintf("the scale guard acts on UPDATE only, not on %s", req.Operation))
	case len(req.Object.Raw) == 0:
		return admission.Errored(http.StatusBadRequest, errors.New("the UPDATE request has no object"))
	case len(req.OldObject.Raw) == 0:
		return admission.Errored(http.StatusBadRequest, errors.New("the UPDATE request has no oldObject"))
	}
	if scale {
		return g.handleScale(ctx, req)
	}
	return g.handleStatefulSet(ctx, req)
}

// handleStatefulSet guards an edit of spec.replicas: the old object is the
// stored StatefulSet, the new one's annotations give the policy.
func (g *scaleGuard) handleStatefulSet(ctx context.Context, req admission.Request) admission.Response {
	sts, old := &appsv1.StatefulSet{}, &appsv1.StatefulSet{}
	if err := g.decoder.DecodeRaw(req.Object, sts); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding object: %w", err))
	}
	if err := g.decoder.DecodeRaw(req.OldObject, old); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding oldObject: %w", err))
	}
	from, to := replicasOf(old), replicasOf(sts)
	// Removing the label in the same edit does not dodge the guard.
	if to >= from || (!defaults.IsLabeled(old) && !defaults.IsLabeled(sts)) {
		return admission.Allowed("")
	}
	ctx, cancel := context.WithTimeout(ctx, g.budget)
	defer cancel()
	return g.guard(ctx, old, sts.Annotations, from, to)
}

// handleScale guards the scale subresource (kubectl scale, autoscalers): the
// Scale objects carry the replicas; the StatefulSet is read for its pods,
// label and annotations.
func (g *scaleGuard) handleScale(ctx context.Context, req admission.Request) admission.Response {
	scale, old := &autoscalingv1.Scale{}, &autoscalingv1.Scale{}
	if err := g.decoder.DecodeRaw(req.Object, scale); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding object: %w", err))
	}
	if err := g.decoder.DecodeRaw(req.OldObject, old); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding oldObject: %w", err))
	}
	from, to := old.Spec.Replicas, scale.Spec.Replicas
	if to >= from {
		return admission.Allowed("")
	}
	ctx, cancel := context.WithTimeout(ctx, g.budget)
	defer cancel()
	sts, err := g.statefulSet(ctx, types.NamespacedName{Namespace: req.Namespace, Name: req.Name})
	switch {
	case apierrors.IsNotFound(err):
		return admission.Allowed(fmt.Sprintf("StatefulSet %s/%s does not exist", req.Namespace, req.Name))
	case err != nil:
		// Its label and annotations are unknown: the policy's own mode decides.
		v := scaleguard.Decide(scaleguard.ScaleDown{StatefulSet: req.Name, From: from, To: to, TimedOut: ctx.Err() != nil,
			Unchecked: fmt.Sprintf("reading StatefulSet %s/%s: %v", req.Namespace, req.Name, err)}, &g.policy)
		return verdictResponse(req.Name, v)
	case !defaults.IsLabeled(sts):
		return admission.Allowed("")
	}
	// The scale subresource skips the validating webhook of labeled
	// StatefulSets: its static replica rule applies here too.
	p, _ := config.Effective(g.policy, sts.Annotations, defaults.AnnotationsPath)
	scaled := sts.DeepCopy()
	scaled.Spec.Replicas = &to
	if errs := validateReplicas(scaled, &p, field.NewPath("spec")).WithOrigin("replicas"); len(errs) > 0 {
		countRules("scaleguard", errs, nil)
		return errorsResponse(req.Name, errs, nil)
	}
	sts.Spec.Replicas = &from
	return g.guard(ctx, sts, sts.Annotations, from, to)
}

// statefulSet reads a StatefulSet from the cache, or from the API server when
// the cache does not hold it (yet: serve just started).
func (g *scaleGuard) statefulSet(ctx context.Context, key types.NamespacedName) (*appsv1.StatefulSet, error) {
	sts := &appsv1.StatefulSet{}
	err := g.reader.Get(ctx, key, sts)
	if apierrors.IsNotFound(err) {
		err = g.apiReader.Get(ctx, key, sts)
	}
	return sts, err
}

// guard checks the scale-down of a labeled StatefulSet against its cluster.
// stored is the StatefulSet with the old replicas; annotations give the policy.
func (g *scaleGuard) guard(ctx context.Context, stored *appsv1.StatefulSet, annotations map[string]string, from, to int32) admission.Response {
	// Invalid overrides are the validating webhook's to deny; here they leave
	// the policy as it is, so that they cannot turn the guard off.
	p, _ := config.Effective(g.policy, annotations, defaults.AnnotationsPath)
	if p.ScaleGuard == config.ScaleGuardOff {
		return admission.Allowed("")
	}
	return verdictResponse(stored.Name, scaleguard.Decide(scaleguard.Check(ctx, g.reader, g.apiReader, stored, &p, from, to, g.budget), &p))
}

// verdictResponse turns a verdict into the webhook's answer: a denial is the 422
// Invalid error at spec.replicas.
func verdictResponse(name string, v scaleguard.Verdict) admission.Response {
	warnings := make([]ruleWarning, len(v.Warnings))
	for i, w := range v.Warnings {
		warnings[i] = ruleWarning{"scaleGuard", w}
	}
	if v.Allowed {
		countRules("scaleguard", nil, warnings)
		return admission.Allowed("").WithWarnings(v.Warnings...)
	}
	errs := field.ErrorList{field.Forbidden(scaleguard.ReplicasPath, v.Denial).WithOrigin("scaleGuard")}
	countRules("scaleguard", errs, warnings)
	return errorsResponse(name, errs, v.Warnings)
}

// errorsResponse denies with a 422 Invalid status naming each field, as the API
// server's own validation does.
func errorsResponse(name string, errs field.ErrorList, warnings []string) admission.Response {
	err := invalid(name, errs)
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return admission.Denied(err.Error())
	}
	s := status.Status()
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: false, Result: &s}}.WithWarnings(warnings...)
}
