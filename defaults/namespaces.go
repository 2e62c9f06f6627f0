package defaults

import "slices"

// UnmanagedNamespaces are the namespaces valkey-webhook never acts on: kube-system
// and its own (own, when known), so that it can never block or disturb the control
// plane's recovery or its own. Admission keeps out of them with a namespaceSelector,
// the controllers with a predicate; both read this list.
func UnmanagedNamespaces(own string) []string {
	excluded := []string{"kube-system"}
	if own != "" && own != "kube-system" {
		excluded = append(excluded, own)
	}
	return excluded
}

// Managed reports whether valkey-webhook acts on objects of namespace, own being
// its own namespace.
func Managed(namespace, own string) bool {
	return !slices.Contains(UnmanagedNamespaces(own), namespace)
}
