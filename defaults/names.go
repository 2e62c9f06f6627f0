// Package defaults turns a minimal labeled StatefulSet into the hardened one, and
// renders the valkey.conf it runs with. Everything here is pure and deterministic:
// no I/O, no clock, no randomness; the same input gives the same bytes.
package defaults

import (
	appsv1 "k8s.io/api/apps/v1"

	"github.com/valkey-webhook/valkey-webhook/config"
)

// The user-facing contract: the opt-in label and the injected annotation.
const (
	ClusterLabel        = "valkey-webhook.io/cluster"
	ClusterLabelEnabled = "enabled"

	ChecksumAnnotation = "valkey-webhook.io/config-checksum"
	// TLSChecksumAnnotation is a hash of the TLS Secret's content that earlier
	// releases' companion controller stamped on the pod template, so that each
	// renewal rolled the pods. Nothing writes it now (a renewed certificate is
	// loaded in place); where a template has it, it is left as found, since
	// removing it would roll the pods. Admission keeps it.
	TLSChecksumAnnotation = "valkey-webhook.io/tls-checksum"
)

// Names of what the hardened pod template contains.
const (
	ValkeyContainer  = "valkey"
	MetricsContainer = "metrics"

	DataVolume   = "data"
	ConfigVolume = "config"
	TmpVolume    = "tmp"
	TLSVolume    = "tls"
	AuthVolume   = "auth"

	ConfigKey     = "valkey.conf"
	PasswordKey   = "password"
	AuthConfigKey = "auth.conf"

	DataDir    = "/data"
	ConfigFile = "/etc/valkey/valkey.conf"
	TLSDir     = "/etc/valkey/tls"
	AuthDir    = "/etc/valkey/auth"
	TmpDir     = "/tmp"

	ClientPortName  = "valkey"
	BusPortName     = "cluster-bus"
	MetricsPortName = "metrics"

	// BusPortOffset is the distance from the client port to the cluster bus port.
	BusPortOffset = 10000
)

// IsLabeled reports whether a StatefulSet opted in to valkey-webhook.
func IsLabeled(sts *appsv1.StatefulSet) bool {
	return sts != nil && sts.Labels[ClusterLabel] == ClusterLabelEnabled
}

// ConfigMapName is the companion ConfigMap that holds valkey.conf.
func ConfigMapName(sts *appsv1.StatefulSet) string { return sts.Name + "-config" }

// HeadlessServiceName is the governing headless Service injected as serviceName.
func HeadlessServiceName(sts *appsv1.StatefulSet) string { return sts.Name + "-headless" }

// AuthSecretName is the Secret that holds the password: auth.existingSecret, or the
// companion Secret <sts>-auth.
func AuthSecretName(sts *appsv1.StatefulSet, p *config.Policy) string {
	if p.Auth.ExistingSecret != "" {
		return p.Auth.ExistingSecret
	}
	return sts.Name + "-auth"
}

// TLSSecretName is the Secret with tls.crt, tls.key and ca.crt: tls.secretName, or
// the one written by the cert-manager Certificate <sts>-tls.
func TLSSecretName(sts *appsv1.StatefulSet, p *config.Policy) string {
	if p.TLS.SecretName != "" {
		return p.TLS.SecretName
	}
	return sts.Name + "-tls"
}
