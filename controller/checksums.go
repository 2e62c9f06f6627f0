package controller

import (
	"context"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// syncChecksums keeps the pod template's checksums equal to what the pods should
// run with: the valkey.conf of the ConfigMap, and the TLS Secret's content. When one
// differs (the policy changed, the certificate was renewed), it patches the template
// annotation, which rolls the pods one at a time. Nothing else ever touches the
// template, so no other change rolls the pods.
func (r *CompanionReconciler) syncChecksums(ctx context.Context, sts *appsv1.StatefulSet, p *config.Policy) error {
	want := map[string]string{defaults.ChecksumAnnotation: defaults.Checksum(defaults.ValkeyConf(sts, p))}
	if p.TLSEnabled() {
		name := defaults.TLSSecretName(sts, p)
		existing, found, err := r.current(ctx, named(&corev1.Secret{}, sts, name))
		if err != nil {
			return r.failed(sts, "Read", named(&corev1.Secret{}, sts, name), err)
		}
		if secret, ok := existing.(*corev1.Secret); found && ok {
			want[defaults.TLSChecksumAnnotation] = defaults.SecretChecksum(secret.Data)
		}
	}
	var changed []string
	for key, value := range want {
		if sts.Spec.Template.Annotations[key] != value {
			changed = append(changed, key)
		}
	}
	if len(changed) == 0 {
		return nil
	}
	sort.Strings(changed)
	patch := client.MergeFromWithOptions(sts.DeepCopy(), client.MergeFromWithOptimisticLock{})
	if sts.Spec.Template.Annotations == nil {
		sts.Spec.Template.Annotations = map[string]string{}
	}
	for _, key := range changed {
		sts.Spec.Template.Annotations[key] = want[key]
	}
	if err := r.Client.Patch(ctx, sts, patch, client.FieldOwner(FieldOwner)); err != nil {
		return r.failed(sts, "Patch", sts, err)
	}
	r.Recorder.Eventf(sts, nil, corev1.EventTypeNormal, ReasonRolling, "Patch",
		"pod template %s updated to what the pods must run with; the pods roll one at a time", strings.Join(changed, ", "))
	return nil
}
