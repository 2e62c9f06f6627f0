package webhook

import (
	"context"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/prometheus/client_golang/prometheus"
)

// The webhooks' own metrics, on serve's /metrics beside controller-runtime's
// (controller_runtime_webhook_*, which count HTTP answers only). The offline
// commands run the same handlers and count into the same registry, which no one
// serves there.
var (
	admissionRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "valkey_webhook_admission_requests_total",
		Help: "Admission requests answered, by webhook (mutate, validate, enforce, scaleguard), operation (CREATE, UPDATE, DELETE, CONNECT, other) and verdict (allowed, patched, denied, error).",
	}, []string{"webhook", "operation", "verdict"})
	admissionDenials = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "valkey_webhook_admission_denials_total",
		Help: "Field errors of denied admission requests, by webhook and rule (README, The validating webhook).",
	}, []string{"webhook", "rule"})
	admissionWarnings = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "valkey_webhook_admission_warnings_total",
		Help: "Admission warnings given, by webhook and rule.",
	}, []string{"webhook", "rule"})
	patchBytes = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "valkey_webhook_mutation_patch_bytes",
		Help:    "Size of the JSON patches the mutating webhook answered with.",
		Buckets: prometheus.ExponentialBuckets(256, 2, 8), // 256 B to 32 KiB
	})
)

func init() {
	metrics.Registry.MustRegister(admissionRequests, admissionDenials, admissionWarnings, patchBytes)
}

// counted counts h's answers by operation and verdict under the name webhook,
// and the size of each patch.
func counted(webhook string, h admission.Handler) admission.Handler {
	return admission.HandlerFunc(func(ctx context.Context, req admission.Request) admission.Response {
		resp := h.Handle(ctx, req)
		v := answerOf(resp)
		admissionRequests.WithLabelValues(webhook, operationOf(req), v).Inc()
		if len(resp.Patch) > 0 {
			patchBytes.Observe(float64(len(resp.Patch)))
		}
		return resp
	})
}

// answerOf classifies an answer: allowed, patched (allowed with a patch),
// denied (a rule refused it: 403 Forbidden or 422 Invalid), or error (the
// request could not be answered: a malformed review, a failure of the webhook).
func answerOf(resp admission.Response) string {
	switch {
	case resp.Allowed && (len(resp.Patch) > 0 || len(resp.Patches) > 0):
		return "patched"
	case resp.Allowed:
		return "allowed"
	case resp.Result != nil && (resp.Result.Code == http.StatusForbidden || resp.Result.Code == http.StatusUnprocessableEntity):
		return "denied"
	}
	return "error"
}

// operationOf is the request's operation as a label, "other" for none or one
// Kubernetes does not send.
func operationOf(req admission.Request) string {
	switch req.Operation {
	case admissionv1.Create, admissionv1.Update, admissionv1.Delete, admissionv1.Connect:
		return string(req.Operation)
	}
	return "other"
}

// countRules counts the refused errors and the warnings of one answer by their
// rule (an error's Origin).
func countRules(webhook string, errs field.ErrorList, warnings []ruleWarning) {
	for _, e := range errs {
		admissionDenials.WithLabelValues(webhook, ruleLabel(e.Origin)).Inc()
	}
	for _, w := range warnings {
		admissionWarnings.WithLabelValues(webhook, ruleLabel(w.rule)).Inc()
	}
}

func ruleLabel(rule string) string {
	if rule == "" {
		return "other"
	}
	return rule
}
