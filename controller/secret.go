package controller

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// passwordBytes is the entropy of a generated password: 256 bits.
const passwordBytes = 32

// NewPassword returns a password of 256 bits from crypto/rand, URL-safe base64.
func NewPassword() (string, error) {
	b := make([]byte, passwordBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// ensureAuthSecret creates the Secret <sts>-auth with a new password when it does
// not exist. An existing one, from an earlier StatefulSet of the same name, is
// reused as it is: the controller never updates or deletes it (its ClusterRole does
// not even allow that), so clients keep working across a re-created StatefulSet.
func (r *CompanionReconciler) ensureAuthSecret(ctx context.Context, sts *appsv1.StatefulSet, p *config.Policy) error {
	name := defaults.AuthSecretName(sts, p)
	existing, found, err := r.secret(ctx, sts, name)
	if err != nil {
		return err
	}
	if found {
		for _, key := range []string{defaults.PasswordKey, defaults.AuthConfigKey} {
			if len(existing.Data[key]) == 0 {
				r.Recorder.Eventf(sts, existing, corev1.EventTypeWarning, ReasonAuthSecret, "Read",
					"Secret %s has no key %q: Valkey cannot start with auth on; add the key (see the README) or set auth.existingSecret", name, key)
			}
		}
		return nil
	}
	password, err := NewPassword()
	if err != nil {
		return r.failed(sts, "Create", named(&corev1.Secret{}, sts, name), err)
	}
	secret := defaults.AuthSecret(sts, p, password)
	if err := r.Client.Create(ctx, secret, client.FieldOwner(FieldOwner)); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return nil // created meanwhile: reused as it is
		}
		return r.failed(sts, "Create", secret, err)
	}
	r.Recorder.Eventf(sts, secret, corev1.EventTypeNormal, ReasonCreated, "Create",
		"created Secret %s with a generated password; it outlives this StatefulSet and is never changed by valkey-webhook", name)
	return nil
}

// secret reads the Secret name of sts's namespace with one get from the API
// server: Secrets are never cached (ClientOptions), so the cache-first read of
// current would ask twice for one that does not exist.
func (r *CompanionReconciler) secret(ctx context.Context, sts *appsv1.StatefulSet, name string) (*corev1.Secret, bool, error) {
	secret := named(&corev1.Secret{}, sts, name)
	err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(secret), secret)
	switch {
	case apierrors.IsNotFound(err):
		return nil, false, nil
	case err != nil:
		return nil, false, r.failed(sts, "Read", secret, err)
	}
	return secret, true, nil
}
