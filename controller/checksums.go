package controller

import (
	"context"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// syncTemplate gives the stored StatefulSet the pod template of next (what
// admission stores for the policy now, defaults.Rehardened, or the stored one
// while the cluster waits for its turn) asking for conf, the valkey.conf its
// ConfigMap holds: the config checksum is the hash of conf's settings. When that
// differs from the stored template (the policy or this release changed the
// settings, or keys, the policy keys the template reads), it patches the
// StatefulSet, which rolls the pods one at a time. Nothing else ever touches the
// template, so no other change rolls the pods. A checksum in the form earlier
// releases wrote (defaults.LegacyChecksum) of that same text stands: the pods
// run these settings already.
//
// A renewed TLS certificate rolls nothing: the lifecycle controller makes the
// nodes load it in place (LifecycleReconciler.reloadTLS). The TLS checksum that
// earlier releases stamped (defaults.TLSChecksumAnnotation) is left as it is
// found, never updated nor removed, since removing it would roll the pods.
func (r *CompanionReconciler) syncTemplate(ctx context.Context, sts, next *appsv1.StatefulSet, conf string, keys []string) error {
	if !defaults.AsksFor(next.Spec.Template, conf) {
		if next.Spec.Template.Annotations == nil {
			next.Spec.Template.Annotations = map[string]string{}
		}
		next.Spec.Template.Annotations[defaults.ChecksumAnnotation] = defaults.Checksum(conf)
	}
	if equality.Semantic.DeepEqual(next.Spec.Template, sts.Spec.Template) {
		return nil
	}
	var what []string
	if !defaults.AsksFor(sts.Spec.Template, conf) {
		what = append(what, "the valkey.conf settings ("+defaults.ChecksumAnnotation+")")
	}
	if keys != nil {
		what = append(what, "what the policy keys "+strings.Join(keys, ", ")+" inject")
	}
	patch := client.MergeFromWithOptions(sts.DeepCopy(), client.MergeFromWithOptimisticLock{})
	sts.Annotations, sts.Spec.Template = next.Annotations, next.Spec.Template
	if err := r.Client.Patch(ctx, sts, patch, client.FieldOwner(FieldOwner)); err != nil {
		return r.failed(sts, "Patch", sts, err)
	}
	r.Recorder.Eventf(sts, nil, corev1.EventTypeNormal, ReasonRolling, "Patch",
		"pod template updated to what the pods must run with, %s: the pods roll one at a time", strings.Join(what, " and "))
	return nil
}
