package webhook

import (
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// ConfigurationOptions say where the webhook runs, for its webhook configurations.
type ConfigurationOptions struct {
	// Name of the mutating and the validating configuration; the enforcement
	// configuration is Name-enforcement.
	Name string
	// Namespace and ServiceName of the webhook's Service; Port is the Service port.
	// Namespace is also kept out of reach of the webhooks.
	Namespace   string
	ServiceName string
	Port        int32
	// URL, when set, replaces the Service: the API server calls URL + path, for a
	// webhook that runs outside the cluster (a developer's machine).
	URL string
	// CABundle is the CA that signed the serving certificate; empty when cert-manager's
	// CA injector fills it (see Annotations).
	CABundle []byte
	// Annotations of each configuration, such as cert-manager.io/inject-ca-from.
	Annotations map[string]string
	// TimeoutSeconds bounds each call from the API server.
	TimeoutSeconds int32
	// FailurePolicy of the webhooks for labeled StatefulSets; empty means Fail. The
	// enforcement webhook for unlabeled ones, and the scale guard's webhook for
	// the scale subresource (which sees every StatefulSet), always fail open.
	FailurePolicy admissionregistrationv1.FailurePolicyType
}

// Names of the webhooks inside the configurations.
const (
	MutateWebhookName   = "mutate.statefulsets.valkey-webhook.io"
	ValidateWebhookName = "validate.statefulsets.valkey-webhook.io"
	EnforceWebhookName  = "enforce.statefulsets.valkey-webhook.io"
	// ScaleGuardWebhookName guards edits of a labeled StatefulSet's
	// spec.replicas; ScaleGuardScaleWebhookName the statefulsets/scale
	// subresource (kubectl scale, autoscalers). Both call ScaleGuardPath.
	ScaleGuardWebhookName      = "scaleguard.statefulsets.valkey-webhook.io"
	ScaleGuardScaleWebhookName = "scaleguard-scale.statefulsets.valkey-webhook.io"
)

// MutatingConfiguration is the MutatingWebhookConfiguration as installed: labeled
// StatefulSets only, no side effects.
func MutatingConfiguration(o ConfigurationOptions) *admissionregistrationv1.MutatingWebhookConfiguration {
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Annotations: o.Annotations},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    MutateWebhookName,
			ClientConfig:            clientConfig(o, MutatePath),
			Rules:                   statefulSetRules(),
			FailurePolicy:           ptr.To(o.labeledFailurePolicy()),
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

// ValidatingConfiguration is the ValidatingWebhookConfiguration of labeled
// StatefulSets: the validation of CREATE and UPDATE, and the scale guard's two
// webhooks, one for UPDATE of the StatefulSet and one for UPDATE of its scale
// subresource.
//
// NOTE: the scale subresource's webhook has no objectSelector and fails open.
// The API server matches an objectSelector against the object it sends, and for
// statefulsets/scale that is an autoscaling/v1 Scale whose metadata holds only
// the StatefulSet's name, namespace, uid, resourceVersion and creationTimestamp,
// never its labels (scaleFromStatefulSet in k8s.io/kubernetes
// pkg/registry/apps/statefulset/storage/storage.go, v1.37.2; the selector is
// matched by MatchObjectSelector in k8s.io/apiserver
// pkg/admission/plugin/webhook/predicates/object/matcher.go against the object and
// the old object only). A selector on the label would never match, so the webhook
// sees the scale requests of every StatefulSet outside the excluded namespaces,
// reads the StatefulSet and allows at once when it is not labeled, or when
// replicas do not go down. Failing closed would then let an outage of
// valkey-webhook block `kubectl scale` of every StatefulSet of the cluster, so it
// fails open: while valkey-webhook is down, a scale through the subresource is
// not guarded (an edit of spec.replicas still is, through the labeled webhook).
func ValidatingConfiguration(o ConfigurationOptions) *admissionregistrationv1.ValidatingWebhookConfiguration {
	c := validatingConfiguration(o, o.Name, ValidateWebhookName, ValidatePath, metav1.LabelSelectorOpIn, o.labeledFailurePolicy())
	c.Webhooks = append(c.Webhooks,
		validatingWebhook(o, ScaleGuardWebhookName, ScaleGuardPath, updateRules("statefulsets"), labeled(metav1.LabelSelectorOpIn), o.labeledFailurePolicy()),
		validatingWebhook(o, ScaleGuardScaleWebhookName, ScaleGuardPath, updateRules("statefulsets/scale"), nil, admissionregistrationv1.Ignore),
	)
	return c
}

// EnforcementConfiguration is the ValidatingWebhookConfiguration of unlabeled
// StatefulSets that run Valkey in cluster mode. It fails open, so that an outage
// of the webhook never blocks StatefulSets that did not opt in.
func EnforcementConfiguration(o ConfigurationOptions) *admissionregistrationv1.ValidatingWebhookConfiguration {
	return validatingConfiguration(o, o.Name+"-enforcement", EnforceWebhookName, EnforcePath, metav1.LabelSelectorOpNotIn, admissionregistrationv1.Ignore)
}

func validatingConfiguration(o ConfigurationOptions, name, webhook, path string, op metav1.LabelSelectorOperator, failure admissionregistrationv1.FailurePolicyType) *admissionregistrationv1.ValidatingWebhookConfiguration {
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: o.Annotations},
		Webhooks:   []admissionregistrationv1.ValidatingWebhook{validatingWebhook(o, webhook, path, statefulSetRules(), labeled(op), failure)},
	}
}

func validatingWebhook(o ConfigurationOptions, name, path string, rules []admissionregistrationv1.RuleWithOperations, objects *metav1.LabelSelector, failure admissionregistrationv1.FailurePolicyType) admissionregistrationv1.ValidatingWebhook {
	return admissionregistrationv1.ValidatingWebhook{
		Name:                    name,
		ClientConfig:            clientConfig(o, path),
		Rules:                   rules,
		FailurePolicy:           ptr.To(failure),
		MatchPolicy:             ptr.To(admissionregistrationv1.Equivalent),
		NamespaceSelector:       namespaceSelector(o),
		ObjectSelector:          objects,
		SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
		TimeoutSeconds:          ptr.To(o.TimeoutSeconds),
		AdmissionReviewVersions: []string{"v1"},
	}
}

func (o ConfigurationOptions) labeledFailurePolicy() admissionregistrationv1.FailurePolicyType {
	if o.FailurePolicy == "" {
		return admissionregistrationv1.Fail
	}
	return o.FailurePolicy
}

func clientConfig(o ConfigurationOptions, path string) admissionregistrationv1.WebhookClientConfig {
	if o.URL != "" {
		return admissionregistrationv1.WebhookClientConfig{URL: ptr.To(o.URL + path), CABundle: o.CABundle}
	}
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

// updateRules match UPDATE of an apps/v1 resource (or subresource, "statefulsets/scale").
func updateRules(resource string) []admissionregistrationv1.RuleWithOperations {
	return []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
		Rule: admissionregistrationv1.Rule{
			APIGroups:   []string{"apps"},
			APIVersions: []string{"v1"},
			Resources:   []string{resource},
			Scope:       ptr.To(admissionregistrationv1.NamespacedScope),
		},
	}}
}

// namespaceSelector keeps kube-system and the webhook's own namespace out of reach,
// so that the webhook can never block its own recovery.
func namespaceSelector(o ConfigurationOptions) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key:      "kubernetes.io/metadata.name",
		Operator: metav1.LabelSelectorOpNotIn,
		Values:   defaults.UnmanagedNamespaces(o.Namespace),
	}}}
}

func labeled(op metav1.LabelSelectorOperator) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key:      defaults.ClusterLabel,
		Operator: op,
		Values:   []string{defaults.ClusterLabelEnabled},
	}}}
}
