package controller

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// syncChecksums keeps the pod template's config checksum equal to the hash of the
// settings of conf, the valkey.conf the ConfigMap holds (Reconcile). When they
// differ (the policy changed what Valkey reads), it patches the template
// annotation, which rolls the pods one at a time. Nothing else ever touches the
// template, so no other change rolls the pods. A checksum in the form earlier
// releases wrote (defaults.LegacyChecksum) of that same text stands: the pods
// run these settings already.
//
// A renewed TLS certificate rolls nothing: the lifecycle controller makes the
// nodes load it in place (LifecycleReconciler.reloadTLS). The TLS checksum that
// earlier releases stamped (defaults.TLSChecksumAnnotation) is left as it is
// found, never updated nor removed, since removing it would roll the pods.
func (r *CompanionReconciler) syncChecksums(ctx context.Context, sts *appsv1.StatefulSet, conf string) error {
	if defaults.AsksFor(sts.Spec.Template, conf) {
		return nil
	}
	patch := client.MergeFromWithOptions(sts.DeepCopy(), client.MergeFromWithOptimisticLock{})
	if sts.Spec.Template.Annotations == nil {
		sts.Spec.Template.Annotations = map[string]string{}
	}
	sts.Spec.Template.Annotations[defaults.ChecksumAnnotation] = defaults.Checksum(conf)
	if err := r.Client.Patch(ctx, sts, patch, client.FieldOwner(FieldOwner)); err != nil {
		return r.failed(sts, "Patch", sts, err)
	}
	r.Recorder.Eventf(sts, nil, corev1.EventTypeNormal, ReasonRolling, "Patch",
		"pod template %s updated to what the pods must run with; the pods roll one at a time", defaults.ChecksumAnnotation)
	return nil
}
