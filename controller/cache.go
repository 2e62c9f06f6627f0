package controller

import (
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// CacheOptions restrict the manager's cache to what the controller manages: of the
// companion kinds, only the objects labeled managed-by valkey-webhook are held in
// memory. StatefulSets are cached whole, so that removing the label is seen. Pods
// are cached only when a labeled StatefulSet made them: they carry its name
// (defaults.StatefulSetNameLabel, injected into the pod template) and the pod-name
// label of the StatefulSet controller. Secrets are never cached (ClientOptions).
func CacheOptions(certManager bool) cache.Options {
	managed := cache.ByObject{Label: labels.SelectorFromSet(labels.Set{defaults.ManagedByLabel: defaults.ManagedByValue})}
	byObject := map[client.Object]cache.ByObject{
		&corev1.ConfigMap{}:             managed,
		&corev1.Service{}:               managed,
		&policyv1.PodDisruptionBudget{}: managed,
		&networkingv1.NetworkPolicy{}:   managed,
	}
	byObject[&corev1.Pod{}] = cache.ByObject{
		Label:     labeledStatefulSetPods(),
		Transform: cache.TransformStripManagedFields(),
	}
	if certManager {
		byObject[&cmapi.Certificate{}] = managed
	}
	return cache.Options{ByObject: byObject}
}

// ClientOptions make the manager's client read Secrets from the API server, one
// get of a named Secret at a time: a cache would list and watch every Secret of
// the cluster, and RBAC would have to allow it (ClusterRole grants get only).
func ClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}}
}

// labeledStatefulSetPods selects the pods of StatefulSets that valkey-webhook
// hardened.
func labeledStatefulSetPods() labels.Selector {
	selector := labels.NewSelector()
	for _, key := range []string{defaults.StatefulSetNameLabel, appsv1.StatefulSetPodNameLabel} {
		r, err := labels.NewRequirement(key, selection.Exists, nil)
		if err != nil {
			panic(err) // constant, valid label keys
		}
		selector = selector.Add(*r)
	}
	return selector
}
