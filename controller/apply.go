package controller

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// apply server-side applies a companion object with the StatefulSet as its
// controller owner, unless an object of that name exists that this StatefulSet does
// not control: that one is never overwritten, only reported.
func (r *CompanionReconciler) apply(ctx context.Context, sts *appsv1.StatefulSet, want client.Object) error {
	existing, found, err := r.current(ctx, want)
	if err != nil {
		return r.failed(sts, "Read", want, err)
	}
	if found && !metav1.IsControlledBy(existing, sts) {
		r.Recorder.Eventf(sts, existing, corev1.EventTypeWarning, ReasonNameTaken, "Apply",
			"%s %s exists and is not owned by this StatefulSet; it is left as it is and this companion is missing: rename or remove it",
			r.kindOf(want), want.GetName())
		return nil
	}
	if err := controllerutil.SetControllerReference(sts, want, r.Client.Scheme()); err != nil {
		return r.failed(sts, "Apply", want, err)
	}
	u, err := applyConfiguration(want)
	if err != nil {
		return r.failed(sts, "Apply", want, err)
	}
	if err := r.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return r.failed(sts, "Apply", want, err)
	}
	switch {
	case !found:
		r.Recorder.Eventf(sts, want, corev1.EventTypeNormal, ReasonCreated, "Apply", "created %s %s", r.kindOf(want), want.GetName())
	case u.GetResourceVersion() != existing.GetResourceVersion():
		r.Recorder.Eventf(sts, want, corev1.EventTypeNormal, ReasonCorrected, "Apply", "corrected %s %s, which had drifted from its desired state", r.kindOf(want), want.GetName())
	}
	return nil
}

// removeOwned deletes a companion the policy turned off, if this StatefulSet
// controls it.
func (r *CompanionReconciler) removeOwned(ctx context.Context, sts *appsv1.StatefulSet, obj client.Object) error {
	existing, found, err := r.current(ctx, obj)
	if err != nil {
		return r.failed(sts, "Read", obj, err)
	}
	if !found || !metav1.IsControlledBy(existing, sts) {
		return nil
	}
	if err := r.Client.Delete(ctx, existing, client.Preconditions{UID: ptr.To(existing.GetUID())}); client.IgnoreNotFound(err) != nil {
		return r.failed(sts, "Delete", obj, err)
	}
	r.Recorder.Eventf(sts, existing, corev1.EventTypeNormal, ReasonRemoved, "Delete", "removed %s %s: the policy turned it off", r.kindOf(obj), obj.GetName())
	return nil
}

// current reads the object of want's name: from the cache, which only holds
// objects labeled managed-by valkey-webhook, and else from the API server, so that
// an object the controller does not manage is seen too.
func (r *CompanionReconciler) current(ctx context.Context, want client.Object) (client.Object, bool, error) {
	existing, ok := want.DeepCopyObject().(client.Object)
	if !ok {
		return nil, false, fmt.Errorf("%T is not a client.Object", want)
	}
	key := client.ObjectKeyFromObject(want)
	err := r.Client.Get(ctx, key, existing)
	if apierrors.IsNotFound(err) {
		err = r.APIReader.Get(ctx, key, existing)
	}
	switch {
	case apierrors.IsNotFound(err):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	return existing, true, nil
}

// applyConfiguration turns a typed object into the body of an apply request: its
// status and the empty creationTimestamp a typed object always carries are left
// out, so that the controller claims no field it does not set.
func applyConfiguration(obj client.Object) (*unstructured.Unstructured, error) {
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	delete(content, "status")
	unstructured.RemoveNestedField(content, "metadata", "creationTimestamp")
	return &unstructured.Unstructured{Object: content}, nil
}

func (r *CompanionReconciler) kindOf(obj client.Object) string {
	if gvk, err := r.Client.GroupVersionKindFor(obj); err == nil {
		return gvk.Kind
	}
	return fmt.Sprintf("%T", obj)
}
