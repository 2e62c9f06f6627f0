package framework

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// canaryLabel selects the ConfigMaps a canary webhook configuration acts on.
const canaryLabel = "framework.valkey-webhook.io/canary"

// SetCABundle sets the caBundle of every webhook of every installed webhook
// configuration, as a CA rotation or cert-manager's CA injector does. The API
// server acts on it a moment later; WaitForWebhookConfigurations waits for that.
func (cp *ControlPlane) SetCABundle(ctx context.Context, bundle []byte) error {
	mutating := &admissionregistrationv1.MutatingWebhookConfigurationList{}
	if err := cp.Client.List(ctx, mutating); err != nil {
		return err
	}
	for i := range mutating.Items {
		c := &mutating.Items[i]
		before := c.DeepCopy()
		for j := range c.Webhooks {
			c.Webhooks[j].ClientConfig.CABundle = bundle
		}
		if err := cp.Client.Patch(ctx, c, client.MergeFrom(before)); err != nil {
			return fmt.Errorf("setting the caBundle of %s: %w", c.Name, err)
		}
	}
	validating := &admissionregistrationv1.ValidatingWebhookConfigurationList{}
	if err := cp.Client.List(ctx, validating); err != nil {
		return err
	}
	for i := range validating.Items {
		c := &validating.Items[i]
		before := c.DeepCopy()
		for j := range c.Webhooks {
			c.Webhooks[j].ClientConfig.CABundle = bundle
		}
		if err := cp.Client.Patch(ctx, c, client.MergeFrom(before)); err != nil {
			return fmt.Errorf("setting the caBundle of %s: %w", c.Name, err)
		}
	}
	return nil
}

// WaitForWebhookConfigurations waits until the API server acts on every change made
// so far to the mutating and validating webhook configurations. The API server
// reads them through an informer, one per kind, which sees changes in order; so it
// installs a canary configuration of each kind, whose webhook refuses ConfigMaps of
// a label of its own in namespace, and waits until the canary refuses one: by then
// every earlier change is in effect too. The canaries are removed before it returns.
func (cp *ControlPlane) WaitForWebhookConfigurations(ctx context.Context, namespace string) error {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	id := "canary-" + hex.EncodeToString(b)
	// Nothing listens on port 1: the call fails at once.
	cc := admissionregistrationv1.WebhookClientConfig{URL: ptr.To("https://127.0.0.1:1/" + id)}
	rules := []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
		Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
	}}
	selector := func(kind string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{canaryLabel: id + "-" + kind}}
	}
	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: id + "-m"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: id + "-m.framework.valkey-webhook.io", ClientConfig: cc, Rules: rules, ObjectSelector: selector("m"),
			FailurePolicy: ptr.To(admissionregistrationv1.Fail), SideEffects: ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"}, TimeoutSeconds: ptr.To(int32(1)),
		}},
	}
	validating := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: id + "-v"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name: id + "-v.framework.valkey-webhook.io", ClientConfig: cc, Rules: rules, ObjectSelector: selector("v"),
			FailurePolicy: ptr.To(admissionregistrationv1.Fail), SideEffects: ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"}, TimeoutSeconds: ptr.To(int32(1)),
		}},
	}
	cleanup := func() error {
		return errors.Join(
			client.IgnoreNotFound(cp.Client.Delete(context.WithoutCancel(ctx), mutating)),
			client.IgnoreNotFound(cp.Client.Delete(context.WithoutCancel(ctx), validating)))
	}
	for _, obj := range []client.Object{mutating, validating} {
		if err := cp.Client.Create(ctx, obj); err != nil {
			return errors.Join(fmt.Errorf("creating the canary webhook configuration: %w", err), cleanup())
		}
	}
	for _, kind := range []string{"m", "v"} {
		webhookName := id + "-" + kind + ".framework.valkey-webhook.io"
		err := eventually("the API server to call the canary webhook "+webhookName, startTimeout, func() error {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
				Namespace: namespace, GenerateName: "canary-",
				Labels: map[string]string{canaryLabel: id + "-" + kind},
			}}
			err := cp.Client.Create(ctx, cm, client.DryRunAll)
			switch {
			case err == nil:
				return errors.New("the canary ConfigMap was admitted")
			case strings.Contains(err.Error(), webhookName):
				return nil
			case ctx.Err() != nil:
				return gomega.StopTrying("the context ended").Wrap(ctx.Err())
			}
			return err
		})
		if err != nil {
			return errors.Join(err, cleanup())
		}
	}
	return cleanup()
}
