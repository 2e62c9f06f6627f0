package selfsigned

import rbacv1 "k8s.io/api/rbac/v1"

// ClusterRules are what the self-managed mode needs across the cluster: to read and
// patch the caBundle of its own webhook configurations, by name.
func ClusterRules(configuration string) []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations"},
			ResourceNames: []string{configuration}, Verbs: []string{"get", "patch"}},
		{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"validatingwebhookconfigurations"},
			ResourceNames: []string{configuration, configuration + "-enforcement"}, Verbs: []string{"get", "patch"}},
	}
}

// NamespaceRules are what it needs in the webhook's namespace: to create its Secret,
// and to read and update it by name (create cannot be limited to a name).
func NamespaceRules(secret string) []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{secret}, Verbs: []string{"get", "update"}},
	}
}
