package webhook

import (
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// ConfigurationOptions say where the webhook runs, for its webhook configurations.
type ConfigurationOptions struct {
	// Name of both configurations.
	Name string
	// Namespace and ServiceName of the webhook's Service; Port is the Service port.
	Namespace   string
	ServiceName string
	Port        int32
	// CABundle is the CA that signed the serving certificate (may be left empty for
	// cert-manager's CA injector to fill).
	CABundle []byte
	// TimeoutSeconds bounds each call from the API server.
	TimeoutSeconds int32
}

// Names of the webhooks inside the configurations.
const (
	MutateWebhookName   = "mutate.statefulsets.valkey-webhook.io"
	ValidateWebhookName = "validate.statefulsets.valkey-webhook.io"
	EnforceWebhookName  = "enforce.statefulsets.valkey-webhook.io"
)

// MutatingConfiguration is the MutatingWebhookConfiguration as installed: labeled
// StatefulSets only, no side effects, failing closed.
func MutatingConfiguration(o ConfigurationOptions) *admissionregistrationv1.MutatingWebhookConfiguration {
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    MutateWebhookName,
			ClientConfig:            clientConfig(o, MutatePath),
			Rules:                   statefulSetRules(),
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			MatchPolicy:             ptr.To(admissionregistrationv1.Equivalent),
			NamespaceSelector:       namespaceSelector(o),
			ObjectSelector:          labeled(metav1.LabelSelectorOpIn),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			TimeoutSeconds:          ptr.To(o.TimeoutSeconds),
			AdmissionReviewVersions: []string{"v1"},
			// Hardening is idempotent, so running again after a later webhook
			// changed the object is safe and keeps the result hardened.
			ReinvocationPolicy: ptr.To(admissionregistrationv1.IfNeededReinvocationPolicy),
		}},
	}
}

// ValidatingConfiguration is the ValidatingWebhookConfiguration as installed: the
// labeled StatefulSets' validation, failing closed, and the enforcement for
// unlabeled ones, failing open, so that an outage of the webhook never blocks
// StatefulSets that did not opt in.
func ValidatingConfiguration(o ConfigurationOptions) *admissionregistrationv1.ValidatingWebhookConfiguration {
	webhook := func(name, path string, op metav1.LabelSelectorOperator, failure admissionregistrationv1.FailurePolicyType) admissionregistrationv1.ValidatingWebhook {
		return admissionregistrationv1.ValidatingWebhook{
			Name:                    name,
			ClientConfig:            clientConfig(o, path),
			Rules:                   statefulSetRules(),
			FailurePolicy:           ptr.To(failure),
			MatchPolicy:             ptr.To(admissionregistrationv1.Equivalent),
			NamespaceSelector:       namespaceSelector(o),
			ObjectSelector:          labeled(op),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			TimeoutSeconds:          ptr.To(o.TimeoutSeconds),
			AdmissionReviewVersions: []string{"v1"},
		}
	}
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{
			webhook(ValidateWebhookName, ValidatePath, metav1.LabelSelectorOpIn, admissionregistrationv1.Fail),
			webhook(EnforceWebhookName, EnforcePath, metav1.LabelSelectorOpNotIn, admissionregistrationv1.Ignore),
		},
	}
}

func clientConfig(o ConfigurationOptions, path string) admissionregistrationv1.WebhookClientConfig {
	return admissionregistrationv1.WebhookClientConfig{
		Service: &admissionregistrationv1.ServiceReference{
			Namespace: o.Namespace,
			Name:      o.ServiceName,
			Path:      ptr.To(path),
			Port:      ptr.To(o.Port),
		},
		CABundle: o.CABundle,
	}
}

func statefulSetRules() []admissionregistrationv1.RuleWithOperations {
	return []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		Rule: admissionregistrationv1.Rule{
			APIGroups:   []string{"apps"},
			APIVersions: []string{"v1"},
			Resources:   []string{"statefulsets"},
			Scope:       ptr.To(admissionregistrationv1.NamespacedScope),
		},
	}}
}

// namespaceSelector keeps kube-system and the webhook's own namespace out of reach,
// so that the webhook can never block its own recovery.
func namespaceSelector(o ConfigurationOptions) *metav1.LabelSelector {
	excluded := []string{"kube-system"}
	if o.Namespace != "" && o.Namespace != "kube-system" {
		excluded = append(excluded, o.Namespace)
	}
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key:      "kubernetes.io/metadata.name",
		Operator: metav1.LabelSelectorOpNotIn,
		Values:   excluded,
	}}}
}

func labeled(op metav1.LabelSelectorOperator) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key:      defaults.ClusterLabel,
		Operator: op,
		Values:   []string{defaults.ClusterLabelEnabled},
	}}}
}
