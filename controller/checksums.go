package controller

import (
	"context"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// How often the TLS Secret is read again, as no Secret is watched: when it does not
// exist yet, and once it does (a Secret of the user's own, tls.secretName, is
// renewed without any other object changing; cert-manager's renewals also change
// the Certificate's status, which is watched, so they are seen at once).
const (
	tlsSecretWait    = 10 * time.Second
	tlsSecretRecheck = 5 * time.Minute
)

// syncChecksums keeps the pod template's checksums equal to what the pods should
// run with: the valkey.conf of the ConfigMap, and the TLS Secret's content. When one
// differs (the policy changed, the certificate was renewed), it patches the template
// annotation, which rolls the pods one at a time. Nothing else ever touches the
// template, so no other change rolls the pods. With TLS, the result asks to be
// called again, to read the Secret again.
func (r *CompanionReconciler) syncChecksums(ctx context.Context, sts *appsv1.StatefulSet, p *config.Policy) (reconcile.Result, error) {
	want := map[string]string{defaults.ChecksumAnnotation: defaults.Checksum(defaults.ValkeyConf(sts, p))}
	var again reconcile.Result
	if p.TLSEnabled() {
		name := defaults.TLSSecretName(sts, p)
		secret, found, err := r.secret(ctx, sts, name)
		if err != nil {
			return reconcile.Result{}, err
		}
		again.RequeueAfter = tlsSecretWait
		if found {
			want[defaults.TLSChecksumAnnotation] = defaults.SecretChecksum(secret.Data)
			again.RequeueAfter = tlsSecretRecheck
		}
	}
	var changed []string
	for key, value := range want {
		if sts.Spec.Template.Annotations[key] != value {
			changed = append(changed, key)
		}
	}
	if len(changed) == 0 {
		return again, nil
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
		return reconcile.Result{}, r.failed(sts, "Patch", sts, err)
	}
	r.Recorder.Eventf(sts, nil, corev1.EventTypeNormal, ReasonRolling, "Patch",
		"pod template %s updated to what the pods must run with; the pods roll one at a time", strings.Join(changed, ", "))
	return again, nil
}
