package webhook

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/valkey-webhook/valkey-webhook/scaleguard"
)

// TestValidatingConfigurationScaleGuard checks the scale guard's two webhooks:
// UPDATE of labeled StatefulSets, failing as the labeled webhooks do; UPDATE of
// the scale subresource of any StatefulSet (a Scale carries no labels), failing
// open; both outside kube-system and the webhook's namespace.
func TestValidatingConfigurationScaleGuard(t *testing.T) {
	o := ConfigurationOptions{Name: "valkey-webhook", Namespace: "valkey-webhook-system", ServiceName: "valkey-webhook", Port: 443, TimeoutSeconds: 5, CABundle: []byte("ca")}
	client := admissionregistrationv1.WebhookClientConfig{
		Service:  &admissionregistrationv1.ServiceReference{Namespace: "valkey-webhook-system", Name: "valkey-webhook", Path: ptr.To("/scaleguard-statefulset"), Port: ptr.To(int32(443))},
		CABundle: []byte("ca"),
	}
	rules := func(resource string) []admissionregistrationv1.RuleWithOperations {
		return []admissionregistrationv1.RuleWithOperations{{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
			Rule: admissionregistrationv1.Rule{
				APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{resource},
				Scope: ptr.To(admissionregistrationv1.NamespacedScope),
			},
		}}
	}
	namespaces := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", "valkey-webhook-system"},
	}}}
	labeled := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: "valkey-webhook.io/cluster", Operator: metav1.LabelSelectorOpIn, Values: []string{"enabled"},
	}}}
	want := func(failure admissionregistrationv1.FailurePolicyType) []admissionregistrationv1.ValidatingWebhook {
		return []admissionregistrationv1.ValidatingWebhook{
			{
				Name:                    "scaleguard.statefulsets.valkey-webhook.io",
				ClientConfig:            client,
				Rules:                   rules("statefulsets"),
				FailurePolicy:           ptr.To(failure),
				MatchPolicy:             ptr.To(admissionregistrationv1.Equivalent),
				NamespaceSelector:       namespaces,
				ObjectSelector:          labeled,
				SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
				TimeoutSeconds:          ptr.To(int32(5)),
				AdmissionReviewVersions: []string{"v1"},
			},
			{
				Name:                    "scaleguard-scale.statefulsets.valkey-webhook.io",
				ClientConfig:            client,
				Rules:                   rules("statefulsets/scale"),
				FailurePolicy:           ptr.To(admissionregistrationv1.Ignore),
				MatchPolicy:             ptr.To(admissionregistrationv1.Equivalent),
				NamespaceSelector:       namespaces,
				SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
				TimeoutSeconds:          ptr.To(int32(5)),
				AdmissionReviewVersions: []string{"v1"},
			},
		}
	}
	for _, failure := range []admissionregistrationv1.FailurePolicyType{"", admissionregistrationv1.Fail, admissionregistrationv1.Ignore} {
		t.Run("failurePolicy "+string(failure), func(t *testing.T) {
			o := o
			o.FailurePolicy = failure
			c := ValidatingConfiguration(o)
			if len(c.Webhooks) != 3 {
				t.Fatalf("want 3 webhooks (validate and the scale guard's two), got %d", len(c.Webhooks))
			}
			if c.Webhooks[0].Name != ValidateWebhookName {
				t.Errorf("the first webhook is %s, want %s", c.Webhooks[0].Name, ValidateWebhookName)
			}
			labeledFailure := failure
			if labeledFailure == "" {
				labeledFailure = admissionregistrationv1.Fail
			}
			if got := *c.Webhooks[0].FailurePolicy; got != labeledFailure {
				t.Errorf("validate fails %s, want %s", got, labeledFailure)
			}
			if diff := cmp.Diff(want(labeledFailure), c.Webhooks[1:]); diff != "" {
				t.Errorf("the scale guard's webhooks (-want +got):\n%s", diff)
			}
		})
	}
	if hooks := EnforcementConfiguration(o).Webhooks; len(hooks) != 1 {
		t.Errorf("the enforcement configuration has %d webhooks, want 1", len(hooks))
	}
	if budget := scaleguard.Budget.Seconds(); budget > float64(o.TimeoutSeconds)-1 {
		t.Errorf("scaleguard.Budget %.0fs leaves less than a second of the webhooks' %ds timeout", budget, o.TimeoutSeconds)
	}
}
