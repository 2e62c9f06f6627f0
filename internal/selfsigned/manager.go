package selfsigned

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// Keys of the Secret.
const (
	caCertKey   = "ca.crt"
	caKeyKey    = "ca.key"
	caBundleKey = "ca-bundle.crt"
)

// Manager keeps the certificates of one webhook installation. Every replica runs
// one: they share the Secret, and a conflict on it means another replica renewed
// first, whose result is then used.
type Manager struct {
	// Client talks to the API server directly (no cache).
	Client    client.Client
	Namespace string
	Secret    string
	// Hosts are the serving certificate's DNS names and IP addresses.
	Hosts []string
	// CertDir receives tls.crt and tls.key for the webhook server.
	CertDir string
	// MutatingConfigurations and ValidatingConfigurations get the CA bundle.
	MutatingConfigurations   []string
	ValidatingConfigurations []string
	Validity                 Validity
	// Interval between checks, for Start.
	Interval time.Duration
	Now      func() time.Time
}

// Ensure brings everything in line once: the Secret (created or renewed when due),
// the caBundle of the webhook configurations, then the files in CertDir. The
// caBundle is patched before a renewed serving certificate is stored, so that the
// API server trusts a new CA before anything is served with it.
func (m *Manager) Ensure(ctx context.Context) error {
	if len(m.Hosts) == 0 {
		return errors.New("no host names for the serving certificate")
	}
	for attempt := 0; ; attempt++ {
		secret, found, err := m.read(ctx)
		if err != nil {
			return err
		}
		current := bundleOf(secret)
		next, changed, err := Renew(current, m.Hosts, m.Now(), m.Validity)
		if err != nil {
			return fmt.Errorf("issuing certificates: %w", err)
		}
		if err := m.patchCABundles(ctx, next.CABundle); err != nil {
			if apierrors.IsConflict(err) && attempt < 3 {
				continue // another replica (starting beside this one) patched first: read again
			}
			return err
		}
		if changed {
			err = m.store(ctx, secret, found, next)
			if (apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)) && attempt < 3 {
				continue // another replica was first: use what it stored
			}
			if err != nil {
				return fmt.Errorf("storing Secret %s/%s: %w", m.Namespace, m.Secret, err)
			}
			log.FromContext(ctx).Info("serving certificate issued", "secret", m.Secret, "hosts", m.Hosts)
		}
		return m.writeFiles(next)
	}
}

// Start checks every Interval until ctx ends; errors are logged and retried at the
// next check (the current certificate stays in use meanwhile).
func (m *Manager) Start(ctx context.Context) error {
	t := time.NewTicker(m.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := m.Ensure(ctx); err != nil {
				log.FromContext(ctx).Error(err, "keeping the serving certificate", "secret", m.Secret)
			}
		}
	}
}

// NeedLeaderElection is false: every replica needs its certificate files.
func (m *Manager) NeedLeaderElection() bool { return false }

func (m *Manager) read(ctx context.Context) (*corev1.Secret, bool, error) {
	secret := &corev1.Secret{}
	err := m.Client.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: m.Secret}, secret)
	switch {
	case apierrors.IsNotFound(err):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("reading Secret %s/%s: %w", m.Namespace, m.Secret, err)
	}
	return secret, true, nil
}

func bundleOf(s *corev1.Secret) Bundle {
	if s == nil {
		return Bundle{}
	}
	return Bundle{
		CACert: s.Data[caCertKey], CAKey: s.Data[caKeyKey], CABundle: s.Data[caBundleKey],
		ServingCert: s.Data[corev1.TLSCertKey], ServingKey: s.Data[corev1.TLSPrivateKeyKey],
	}
}

func (m *Manager) store(ctx context.Context, secret *corev1.Secret, found bool, b Bundle) error {
	data := map[string][]byte{
		caCertKey: b.CACert, caKeyKey: b.CAKey, caBundleKey: b.CABundle,
		corev1.TLSCertKey: b.ServingCert, corev1.TLSPrivateKeyKey: b.ServingKey,
	}
	if !found {
		return m.Client.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: m.Secret, Namespace: m.Namespace},
			Type:       corev1.SecretTypeOpaque,
			Data:       data,
		})
	}
	secret.Data = data
	return m.Client.Update(ctx, secret) // optimistic: fails on a concurrent renewal
}

// patchCABundles sets caBundle on every webhook of the configurations.
func (m *Manager) patchCABundles(ctx context.Context, bundle []byte) error {
	for _, name := range m.MutatingConfigurations {
		cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := m.patchCABundle(ctx, name, cfg, bundle, func() []*admissionregistrationv1.WebhookClientConfig {
			return clientConfigs(cfg.Webhooks, func(w *admissionregistrationv1.MutatingWebhook) *admissionregistrationv1.WebhookClientConfig {
				return &w.ClientConfig
			})
		}); err != nil {
			return err
		}
	}
	for _, name := range m.ValidatingConfigurations {
		cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := m.patchCABundle(ctx, name, cfg, bundle, func() []*admissionregistrationv1.WebhookClientConfig {
			return clientConfigs(cfg.Webhooks, func(w *admissionregistrationv1.ValidatingWebhook) *admissionregistrationv1.WebhookClientConfig {
				return &w.ClientConfig
			})
		}); err != nil {
			return err
		}
	}
	return nil
}

// clientConfigs points at the client configuration of each webhook.
func clientConfigs[W any](webhooks []W, of func(*W) *admissionregistrationv1.WebhookClientConfig) []*admissionregistrationv1.WebhookClientConfig {
	out := make([]*admissionregistrationv1.WebhookClientConfig, len(webhooks))
	for i := range webhooks {
		out[i] = of(&webhooks[i])
	}
	return out
}

// patchCABundle reads one configuration into cfg and patches the caBundle of the
// client configurations clientConfigs points into, when one differs.
func (m *Manager) patchCABundle(ctx context.Context, name string, cfg client.Object, bundle []byte, clientConfigs func() []*admissionregistrationv1.WebhookClientConfig) error {
	kind := fmt.Sprintf("%T", cfg)
	if err := m.Client.Get(ctx, client.ObjectKey{Name: name}, cfg); err != nil {
		return fmt.Errorf("reading %s %s: %w", kind, name, err)
	}
	original, ok := cfg.DeepCopyObject().(client.Object)
	if !ok {
		return fmt.Errorf("%s is not a client.Object", kind)
	}
	dirty := false
	for _, cc := range clientConfigs() {
		if !bytes.Equal(cc.CABundle, bundle) {
			cc.CABundle, dirty = bundle, true
		}
	}
	if !dirty {
		return nil
	}
	if err := m.Client.Patch(ctx, cfg, client.MergeFromWithOptions(original, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("patching the caBundle of %s %s: %w", kind, name, err)
	}
	return nil
}

// writeFiles writes tls.crt and tls.key when they differ, each through a rename,
// so that the webhook server never reads a half-written file.
func (m *Manager) writeFiles(b Bundle) error {
	for name, content := range map[string][]byte{corev1.TLSCertKey: b.ServingCert, corev1.TLSPrivateKeyKey: b.ServingKey} {
		path := filepath.Join(m.CertDir, name)
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, content) {
			continue
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, content, 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", tmp, err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("replacing %s: %w", path, err)
		}
	}
	return nil
}
