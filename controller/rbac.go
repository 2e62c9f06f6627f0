package controller

import (
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ClusterRole is the least privilege `valkey-webhook serve` needs across the
// cluster, kept beside the code that uses it; with Role, it is all the envtest
// suites grant the user the controller runs as. Secrets can be created and read by
// name, never listed, updated or deleted: the password Secret cannot be overwritten
// even by a bug. docs/design.md (RBAC) justifies each verb.
func ClusterRole(name string) *rbacv1.ClusterRole {
	manage := []string{"get", "list", "watch", "create", "patch", "delete"}
	return &rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules: []rbacv1.PolicyRule{
			// The labeled StatefulSets, and the checksum annotations of their template.
			{APIGroups: []string{"apps"}, Resources: []string{"statefulsets"}, Verbs: []string{"get", "list", "watch", "patch"}},
			// Owner references with blockOwnerDeletion, where the
			// OwnerReferencesPermissionEnforcement admission plugin is on.
			{APIGroups: []string{"apps"}, Resources: []string{"statefulsets/finalizers"}, Verbs: []string{"update"}},
			// Companions, server-side applied (create and patch); delete only when the
			// policy turns one off.
			{APIGroups: []string{""}, Resources: []string{"configmaps", "services"}, Verbs: manage},
			{APIGroups: []string{"policy"}, Resources: []string{"poddisruptionbudgets"}, Verbs: manage},
			{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: manage},
			{APIGroups: []string{"cert-manager.io"}, Resources: []string{"certificates"}, Verbs: manage},
			// Secrets by name only, never listed, watched or cached (ClientOptions):
			// the auth Secret is created once; the auth and TLS Secrets are read for
			// the password, the TLS checksum and the client certificate.
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "create"}},
			// The lifecycle controller and the scale guard: the pods of labeled
			// StatefulSets (cached, CacheOptions), and the zone label of the nodes
			// they run on.
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}},
			{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		},
	}
}

// Role is what `serve` needs in its own namespace only: the leader election Lease,
// and the core Events controller-runtime's leader election records about it
// ("became leader"), through the older Events API.
func Role(name, namespace string) *rbacv1.Role {
	return &rbacv1.Role{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"}},
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		},
	}
}
