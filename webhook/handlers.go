// Package webhook holds the admission webhooks for StatefulSets (mutating,
// validating, and cluster-wide enforcement for unlabeled Valkey clusters), their
// registration, and the validation rules as pure functions.
package webhook

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	serializerjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/valkey-webhook/valkey-webhook/config"
)

// Paths the webhooks are served on.
const (
	MutatePath   = "/mutate-statefulset"
	ValidatePath = "/validate-statefulset"
	EnforcePath  = "/enforce-statefulset"
	// ScaleGuardPath is the scale guard (scaleguard.go): UPDATE of a labeled
	// StatefulSet and of the statefulsets/scale subresource.
	ScaleGuardPath = "/scaleguard-statefulset"
)

// Mutator is the mutating webhook: it hardens labeled StatefulSets.
type Mutator struct {
	Policy  config.Policy
	Decoder admission.Decoder
}

var _ admission.Defaulter[*appsv1.StatefulSet] = &Mutator{}

// Default hardens a labeled StatefulSet; on UPDATE it reads the stored object from
// the request, so that immutable fields and a settled pod template stay untouched.
func (m *Mutator) Default(ctx context.Context, sts *appsv1.StatefulSet) error {
	req, err := admission.RequestFromContext(ctx)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	var old *appsv1.StatefulSet
	if req.Operation == admissionv1.Update {
		old = &appsv1.StatefulSet{}
		if err := m.Decoder.DecodeRaw(req.OldObject, old); err != nil {
			return apierrors.NewBadRequest(fmt.Sprintf("decoding oldObject: %v", err))
		}
	}
	return Mutate(sts, old, m.Policy)
}

// ruleValidator adapts a pure check of a StatefulSet (Validate, Enforce) to
// admission.Validator: CREATE runs the check on the new object; UPDATE runs it on
// both and refuses only what the update brings (ratchet), and never an update of
// an object being deleted; DELETE is always allowed. checkUpdate is the check of
// an UPDATE's new object given the stored one. webhook names it in the metrics
// of its denials and warnings, counted by rule.
type ruleValidator struct {
	webhook     string
	check       func(*appsv1.StatefulSet, config.Policy) (field.ErrorList, []ruleWarning)
	checkUpdate func(sts, old *appsv1.StatefulSet, p config.Policy) (field.ErrorList, []ruleWarning)
	p           config.Policy
}

var _ admission.Validator[*appsv1.StatefulSet] = ruleValidator{}

// ValidateCreate runs the check.
func (v ruleValidator) ValidateCreate(_ context.Context, sts *appsv1.StatefulSet) (admission.Warnings, error) {
	errs, warnings := v.check(sts, v.p)
	countRules(v.webhook, errs, warnings)
	return texts(warnings), invalid(sts.Name, errs)
}

// ValidateUpdate refuses only the errors the update brings: those the stored
// object has too are warnings.
func (v ruleValidator) ValidateUpdate(_ context.Context, old, sts *appsv1.StatefulSet) (admission.Warnings, error) {
	if sts.DeletionTimestamp != nil {
		return nil, nil
	}
	errs, warnings := v.checkUpdate(sts, old, v.p)
	if len(errs) > 0 {
		stored, _ := v.checkUpdate(old, old, v.p)
		var carried []ruleWarning
		errs, carried = ratchet(errs, stored)
		warnings = append(warnings, carried...)
	}
	countRules(v.webhook, errs, warnings)
	return texts(warnings), invalid(sts.Name, errs)
}

// ValidateDelete allows every delete.
func (v ruleValidator) ValidateDelete(context.Context, *appsv1.StatefulSet) (admission.Warnings, error) {
	return nil, nil
}

// Handlers returns the three admission webhooks that need nothing but the request,
// by path: mutate, validate and enforce. The offline commands run exactly these;
// `serve` adds the scale guard (ServeHandlers).
func Handlers(scheme *runtime.Scheme, p config.Policy) map[string]*admission.Webhook {
	decoder := admission.NewDecoder(scheme)
	validateCreate := func(sts *appsv1.StatefulSet, p config.Policy) (field.ErrorList, []ruleWarning) {
		return validate(sts, nil, p)
	}
	return map[string]*admission.Webhook{
		MutatePath:   guarded("mutate", mutating(decoder, p)),
		ValidatePath: guarded("validate", admission.WithValidator(scheme, ruleValidator{webhook: "validate", check: validateCreate, checkUpdate: validate, p: p})),
		EnforcePath:  guarded("enforce", admission.WithValidator(scheme, ruleValidator{webhook: "enforce", check: enforce, checkUpdate: enforceUpdate, p: p})),
	}
}

// ServeHandlers returns Handlers and the scale guard, by path: what `serve`
// registers. The scale guard asks the live cluster: it reads StatefulSets and
// their pods through reader (serve's cache) and the auth and TLS Secrets through
// apiReader (past the cache, which holds only the Secrets valkey-webhook made).
func ServeHandlers(scheme *runtime.Scheme, p config.Policy, reader, apiReader client.Reader) map[string]*admission.Webhook {
	hooks := Handlers(scheme, p)
	hooks[ScaleGuardPath] = scaleGuardWebhook(scheme, p, reader, apiReader)
	return hooks
}

// mutating is the mutating webhook, its patch limited to the intended changes.
func mutating(decoder admission.Decoder, p config.Policy) *admission.Webhook {
	return &admission.Webhook{Handler: &mutatingHandler{mutator: &Mutator{Policy: p, Decoder: decoder}}}
}

// guarded puts statefulSetsOnly in front of a webhook's handler, and counts its
// answers under the name webhook (counted).
func guarded(webhook string, wh *admission.Webhook) *admission.Webhook {
	wh.Handler = counted(webhook, statefulSetsOnly(wh.Handler))
	wh.WithContextFunc = withReviewVersion
	return wh
}

// reviewVersionKey holds, in a request's context, the apiVersion and kind the
// AdmissionReview was sent with.
type reviewVersionKey struct{}

// withReviewVersion records the AdmissionReview's apiVersion and kind in the
// context. The framework decodes any apiVersion as admission.k8s.io/v1 and answers
// in the apiVersion it was sent, so a review of a version that does not exist
// would otherwise be acted on, and answered in a form the API server cannot read.
// The body is left for the framework to read; one it cannot parse is its to report.
func withReviewVersion(ctx context.Context, r *http.Request) context.Context {
	if r.Body == nil || r.Body == http.NoBody {
		return ctx
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReviewBytes+1))
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}
	if err != nil || len(body) > maxReviewBytes {
		return ctx
	}
	gvk, err := serializerjson.DefaultMetaFactory.Interpret(body)
	if err != nil {
		return ctx
	}
	return context.WithValue(ctx, reviewVersionKey{}, *gvk)
}

// maxReviewBytes is the framework's limit on a request body; larger ones get its 413.
const maxReviewBytes = 7 << 20

// supportedReview reports whether an AdmissionReview of gvk can be answered.
func supportedReview(gvk schema.GroupVersionKind) bool {
	return gvk.Group == admissionv1.GroupName && gvk.Kind == "AdmissionReview" && (gvk.Version == "v1" || gvk.Version == "v1beta1")
}

// statefulSetsOnly lets through, unchanged, every request that is not a CREATE or
// UPDATE of an apps/v1 StatefulSet (other kinds, subresources such as scale,
// DELETE, CONNECT), and answers a malformed request with a 400 that says what is
// missing. Only well-formed StatefulSet requests reach h.
func statefulSetsOnly(h admission.Handler) admission.Handler {
	return admission.HandlerFunc(func(ctx context.Context, req admission.Request) admission.Response {
		if resp, bad := badReview(ctx, req); bad {
			return resp
		}
		switch {
		case req.Kind.Group != appsv1.GroupName || req.Kind.Version != "v1" || req.Kind.Kind != "StatefulSet" || req.SubResource != "":
			return admission.Allowed(fmt.Sprintf("valkey-webhook acts on apps/v1 StatefulSets only; %s %s/%s passes unchanged", req.Kind.Kind, req.Resource.Resource, req.SubResource))
		case req.Operation != admissionv1.Create && req.Operation != admissionv1.Update:
			return admission.Allowed(fmt.Sprintf("valkey-webhook does not act on %s", req.Operation))
		case len(req.Object.Raw) == 0:
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("the %s request has no object", req.Operation))
		case req.Operation == admissionv1.Update && len(req.OldObject.Raw) == 0:
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("the UPDATE request has no oldObject"))
		}
		return h.Handle(ctx, req)
	})
}

// badReview answers, with a 400 that says why, an AdmissionReview of an
// apiVersion valkey-webhook does not answer, or one without a request uid.
func badReview(ctx context.Context, req admission.Request) (admission.Response, bool) {
	if gvk, ok := ctx.Value(reviewVersionKey{}).(schema.GroupVersionKind); ok && !supportedReview(gvk) {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("the AdmissionReview's apiVersion %q and kind %q are not supported: valkey-webhook answers admission.k8s.io/v1 (and v1beta1) AdmissionReviews", gvk.GroupVersion().String(), gvk.Kind)), true
	}
	if req.UID == "" {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("the AdmissionReview has no request, or its request has no uid")), true
	}
	return admission.Response{}, false
}
