package controller

import (
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// CacheOptions restrict the manager's cache to what the controller manages: of the
// companion kinds, and of Secrets above all, only the objects labeled managed-by
// valkey-webhook are held in memory. StatefulSets are cached whole, so that removing
// the label is seen.
func CacheOptions(certManager bool) cache.Options {
	managed := cache.ByObject{Label: labels.SelectorFromSet(labels.Set{defaults.ManagedByLabel: defaults.ManagedByValue})}
	byObject := map[client.Object]cache.ByObject{
		&corev1.Secret{}:                managed,
		&corev1.ConfigMap{}:             managed,
		&corev1.Service{}:               managed,
		&policyv1.PodDisruptionBudget{}: managed,
		&networkingv1.NetworkPolicy{}:   managed,
	}
	if certManager {
		byObject[&cmapi.Certificate{}] = managed
	}
	return cache.Options{ByObject: byObject}
}
