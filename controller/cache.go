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
// companion kinds, and of Secrets above all, only the objects labeled managed-by
// valkey-webhook are held in memory. StatefulSets are cached whole, so that removing
// the label is seen. Pods are cached only when a StatefulSet made them.
func CacheOptions(certManager bool) cache.Options {
	managed := cache.ByObject{Label: labels.SelectorFromSet(labels.Set{defaults.ManagedByLabel: defaults.ManagedByValue})}
	byObject := map[client.Object]cache.ByObject{
		&corev1.Secret{}:                managed,
		&corev1.ConfigMap{}:             managed,
		&corev1.Service{}:               managed,
		&policyv1.PodDisruptionBudget{}: managed,
		&networkingv1.NetworkPolicy{}:   managed,
	}
	// The pods of StatefulSets, for the lifecycle controller, without their
	// managed fields.
	podOfStatefulSet, err := labels.NewRequirement(appsv1.StatefulSetPodNameLabel, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant, valid requirement
	}
	byObject[&corev1.Pod{}] = cache.ByObject{
		Label:     labels.NewSelector().Add(*podOfStatefulSet),
		Transform: cache.TransformStripManagedFields(),
	}
	if certManager {
		byObject[&cmapi.Certificate{}] = managed
	}
	return cache.Options{ByObject: byObject}
}
