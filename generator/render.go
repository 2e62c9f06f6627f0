// Package generator writes starter manifests for a Valkey cluster and the manifests
// that install valkey-webhook itself. Everything is built from typed objects and
// printed in one total, fixed order, the same bytes every run.
package generator

import (
	"bytes"
	"fmt"
	"sort"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// kindOrder is the order kinds are printed and applied in: what others depend on
// first (namespaces, identities, configuration), webhook configurations last, so
// that applying the stream in order never registers a webhook before its server.
var kindOrder = []string{
	"Namespace",
	"ServiceAccount",
	"ClusterRole",
	"ClusterRoleBinding",
	"Role",
	"RoleBinding",
	"Secret",
	"ConfigMap",
	"Issuer",
	"ClusterIssuer",
	"Certificate",
	"Service",
	"Deployment",
	"StatefulSet",
	"PodDisruptionBudget",
	"NetworkPolicy",
	"Job",
	"MutatingWebhookConfiguration",
	"ValidatingWebhookConfiguration",
}

func kindRank(kind string) int {
	for i, k := range kindOrder {
		if k == kind {
			return i
		}
	}
	return len(kindOrder)
}

// Sort puts objects in the printing order: by kind (kindOrder, then the kind's
// name), then namespace, then name.
func Sort(objects []client.Object) {
	sort.SliceStable(objects, func(i, j int) bool {
		a, b := objects[i], objects[j]
		ka, kb := a.GetObjectKind().GroupVersionKind().Kind, b.GetObjectKind().GroupVersionKind().Kind
		if ra, rb := kindRank(ka), kindRank(kb); ra != rb {
			return ra < rb
		}
		if ka != kb {
			return ka < kb
		}
		if a.GetNamespace() != b.GetNamespace() {
			return a.GetNamespace() < b.GetNamespace()
		}
		return a.GetName() < b.GetName()
	})
}

// Render sorts objects and prints them as one YAML stream, keys sorted, without
// the empty status and creationTimestamp that typed objects carry. header, when
// not empty, is printed first as YAML comments.
func Render(objects []client.Object, header []string) ([]byte, error) {
	Sort(objects)
	var out bytes.Buffer
	for _, line := range header {
		fmt.Fprintf(&out, "# %s\n", line)
	}
	for i, obj := range objects {
		content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			return nil, fmt.Errorf("%T %s: %w", obj, obj.GetName(), err)
		}
		dropNoise(content)
		b, err := yaml.Marshal(content)
		if err != nil {
			return nil, fmt.Errorf("%T %s: %w", obj, obj.GetName(), err)
		}
		if i > 0 || len(header) > 0 {
			out.WriteString("---\n")
		}
		out.Write(b)
	}
	return out.Bytes(), nil
}

// noise are the fields a typed object always carries that say nothing when empty:
// they are left out of the printed YAML when they are empty. Status is always left
// out: the API server ignores it on create.
var noise = [][]string{
	{"metadata", "creationTimestamp"},
	{"spec", "template", "metadata", "creationTimestamp"},
	{"spec", "serviceName"},
	{"spec", "updateStrategy"},
	{"spec", "strategy"},
}

// dropNoise removes the empty noise fields of an object, and of its
// volumeClaimTemplates.
func dropNoise(content map[string]any) {
	delete(content, "status")
	for _, path := range noise {
		if v, ok, _ := unstructured.NestedFieldNoCopy(content, path...); ok && isEmpty(v) {
			unstructured.RemoveNestedField(content, path...)
		}
	}
	if templates, ok, _ := unstructured.NestedSlice(content, "spec", "volumeClaimTemplates"); ok {
		for _, t := range templates {
			if m, ok := t.(map[string]any); ok {
				dropNoise(m)
			}
		}
		_ = unstructured.SetNestedSlice(content, templates, "spec", "volumeClaimTemplates")
	}
}

func isEmpty(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return v == ""
	case map[string]any:
		for _, inner := range v {
			if !isEmpty(inner) {
				return false
			}
		}
		return true
	}
	return false
}
