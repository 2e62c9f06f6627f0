package generator

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/controller"
	"github.com/valkey-webhook/valkey-webhook/defaults"
	"github.com/valkey-webhook/valkey-webhook/internal/selfsigned"
	"github.com/valkey-webhook/valkey-webhook/webhook"
)

// Names of the installed objects.
const (
	InstallName       = "valkey-webhook"
	DefaultNamespace  = "valkey-webhook-system"
	DefaultImage      = "ghcr.io/valkey-webhook/valkey-webhook:v0.1.0"
	servingSecret     = InstallName + "-tls"
	servingCert       = InstallName + "-serving"
	caName            = InstallName + "-ca"
	selfSignedIssuer  = InstallName + "-selfsigned"
	policyConfigMap   = InstallName + "-policy"
	policyKey         = "policy.yaml"
	certDir           = "/etc/valkey-webhook/tls"
	policyDir         = "/etc/valkey-webhook/policy"
	webhookPort       = 9443
	healthPort        = 8081
	metricsPort       = 8080
	drainDelaySeconds = 10
)

// Certificate modes of the install.
const (
	CertModeCertManager = "cert-manager"
	CertModeSelfManaged = "self-managed"
)

// InstallOptions shape the installation of the webhook.
type InstallOptions struct {
	Namespace string
	Image     string
	Replicas  int
	// FailurePolicy of the webhooks for labeled StatefulSets: Fail or Ignore.
	FailurePolicy string
	// Enforcement is the policy's enforcement.unlabeled: deny, warn or off.
	Enforcement string
	CertMode    string
	// DevURL and CABundle: only the webhook configurations, pointing at a webhook
	// that runs outside the cluster.
	DevURL   string
	CABundle []byte
}

// withDefaults fills the zero values.
func (o InstallOptions) withDefaults() InstallOptions {
	o.Namespace = or(o.Namespace, DefaultNamespace)
	o.Image = or(o.Image, DefaultImage)
	if o.Replicas == 0 {
		o.Replicas = 2
	}
	o.FailurePolicy = or(o.FailurePolicy, string(admissionregistrationv1.Fail))
	o.Enforcement = or(o.Enforcement, config.Default().Enforcement.Unlabeled)
	o.CertMode = or(o.CertMode, CertModeCertManager)
	return o
}

func (o InstallOptions) validate() error {
	var errs FlagErrors
	bad := func(flag, value, reason string) { errs = append(errs, FlagError{flag, value, reason}) }
	for _, msg := range validation.IsDNS1123Label(o.Namespace) {
		bad("namespace", o.Namespace, msg)
	}
	if o.Namespace == "kube-system" {
		bad("namespace", o.Namespace, "must be a namespace of its own: the webhook never acts in kube-system")
	}
	if strings.ContainsAny(o.Image, " \t\n") || o.Image == "" {
		bad("image", o.Image, "must be an image reference")
	}
	if o.Replicas < 1 {
		bad("replicas", fmt.Sprint(o.Replicas), "must be at least 1 (2 or more keep admission up during a node drain)")
	}
	if o.FailurePolicy != string(admissionregistrationv1.Fail) && o.FailurePolicy != string(admissionregistrationv1.Ignore) {
		bad("failure-policy", o.FailurePolicy, "must be Fail or Ignore")
	}
	switch o.Enforcement {
	case config.EnforceDeny, config.EnforceWarn, config.EnforceOff:
	default:
		bad("enforcement", o.Enforcement, "must be deny, warn or off")
	}
	if o.CertMode != CertModeCertManager && o.CertMode != CertModeSelfManaged {
		bad("cert-mode", o.CertMode, "must be cert-manager or self-managed")
	}
	if o.DevURL != "" {
		if u, err := url.Parse(o.DevURL); err != nil || u.Scheme != "https" || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			bad("dev-url", o.DevURL, "must be https://HOST:PORT, without a path, query or trailing slash")
		}
		if len(o.CABundle) == 0 {
			bad("ca-file", "", "is required with --dev-url: the CA that signed the local webhook's serving certificate")
		}
	}
	return errs.orNil()
}

// Install returns everything that installs the webhook: its namespace, identity
// and least-privilege RBAC, policy, Deployment (and its PodDisruptionBudget and
// Service), the cert-manager issuers and certificates of its serving certificate,
// and the three webhook configurations. With DevURL, only the webhook
// configurations, pointing at DevURL.
func Install(o InstallOptions) ([]client.Object, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	cfg := webhook.ConfigurationOptions{
		Name:           InstallName,
		Namespace:      o.Namespace,
		ServiceName:    InstallName,
		Port:           443,
		TimeoutSeconds: 5,
		FailurePolicy:  admissionregistrationv1.FailurePolicyType(o.FailurePolicy),
	}
	if o.DevURL != "" {
		cfg.URL, cfg.CABundle = o.DevURL, o.CABundle
		return webhookConfigurations(cfg), nil
	}
	selfManaged := o.CertMode == CertModeSelfManaged
	if !selfManaged {
		cfg.Annotations = map[string]string{"cert-manager.io/inject-ca-from": o.Namespace + "/" + servingCert}
	}

	labels := defaults.WebhookPodLabels()
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: o.Namespace, Labels: labels}
	}
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: InstallName, Namespace: o.Namespace}}
	clusterRole := controller.ClusterRole(InstallName)
	role := controller.Role(InstallName, o.Namespace)
	if selfManaged {
		clusterRole.Rules = append(clusterRole.Rules, selfsigned.ClusterRules(InstallName)...)
		role.Rules = append(role.Rules, selfsigned.NamespaceRules(servingSecret)...)
	}
	objects := []client.Object{
		&corev1.Namespace{TypeMeta: typeMeta("v1", "Namespace"), ObjectMeta: metav1.ObjectMeta{Name: o.Namespace}},
		&corev1.ServiceAccount{TypeMeta: typeMeta("v1", "ServiceAccount"), ObjectMeta: meta(InstallName)},
		clusterRole,
		&rbacv1.ClusterRoleBinding{
			TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
			ObjectMeta: metav1.ObjectMeta{Name: InstallName, Labels: labels},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole.Name},
			Subjects:   subject,
		},
		role,
		&rbacv1.RoleBinding{
			TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "RoleBinding"),
			ObjectMeta: meta(InstallName),
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
			Subjects:   subject,
		},
		&corev1.ConfigMap{
			TypeMeta:   typeMeta("v1", "ConfigMap"),
			ObjectMeta: meta(policyConfigMap),
			Data:       map[string]string{policyKey: fmt.Sprintf("# valkey-webhook policy: keys and defaults in the README.\nenforcement:\n  unlabeled: %s\n", o.Enforcement)},
		},
		deployment(o, labels, meta(InstallName)),
		&policyv1.PodDisruptionBudget{
			TypeMeta:   typeMeta("policy/v1", "PodDisruptionBudget"),
			ObjectMeta: meta(InstallName),
			Spec: policyv1.PodDisruptionBudgetSpec{
				MaxUnavailable:             ptr.To(intstr.FromInt32(1)),
				Selector:                   &metav1.LabelSelector{MatchLabels: labels},
				UnhealthyPodEvictionPolicy: ptr.To(policyv1.AlwaysAllow),
			},
		},
		&corev1.Service{
			TypeMeta:   typeMeta("v1", "Service"),
			ObjectMeta: meta(InstallName),
			Spec: corev1.ServiceSpec{
				Selector: labels,
				Ports: []corev1.ServicePort{
					{Name: "webhook", Port: 443, TargetPort: intstr.FromString("webhook"), Protocol: corev1.ProtocolTCP},
					{Name: "metrics", Port: metricsPort, TargetPort: intstr.FromString("metrics"), Protocol: corev1.ProtocolTCP},
				},
			},
		},
	}
	if !selfManaged {
		objects = append(objects, certManagerObjects(o, meta)...)
	}
	objects = append(objects, webhookConfigurations(cfg)...)
	return objects, nil
}

func webhookConfigurations(cfg webhook.ConfigurationOptions) []client.Object {
	return []client.Object{
		webhook.MutatingConfiguration(cfg),
		webhook.ValidatingConfiguration(cfg),
		webhook.EnforcementConfiguration(cfg),
	}
}

// certManagerObjects issue the serving certificate: a self-signed Issuer signs a
// CA, a CA Issuer signs the serving certificate, and cert-manager's CA injector
// copies the CA into the webhook configurations.
func certManagerObjects(o InstallOptions, meta func(string) metav1.ObjectMeta) []client.Object {
	issuerRef := func(name string) cmmeta.IssuerReference {
		return cmmeta.IssuerReference{Group: "cert-manager.io", Kind: "Issuer", Name: name}
	}
	return []client.Object{
		&cmapi.Issuer{
			TypeMeta:   typeMeta("cert-manager.io/v1", "Issuer"),
			ObjectMeta: meta(selfSignedIssuer),
			Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{SelfSigned: &cmapi.SelfSignedIssuer{}}},
		},
		&cmapi.Certificate{
			TypeMeta:   typeMeta("cert-manager.io/v1", "Certificate"),
			ObjectMeta: meta(caName),
			Spec: cmapi.CertificateSpec{
				IsCA:       true,
				CommonName: caName,
				SecretName: caName,
				Duration:   &metav1.Duration{Duration: 5 * 365 * 24 * time.Hour},
				PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256},
				IssuerRef:  issuerRef(selfSignedIssuer),
			},
		},
		&cmapi.Issuer{
			TypeMeta:   typeMeta("cert-manager.io/v1", "Issuer"),
			ObjectMeta: meta(caName),
			Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: caName}}},
		},
		&cmapi.Certificate{
			TypeMeta:   typeMeta("cert-manager.io/v1", "Certificate"),
			ObjectMeta: meta(servingCert),
			Spec: cmapi.CertificateSpec{
				SecretName: servingSecret,
				DNSNames: []string{
					fmt.Sprintf("%s.%s.svc", InstallName, o.Namespace),
					fmt.Sprintf("%s.%s.svc.cluster.local", InstallName, o.Namespace),
				},
				Usages:     []cmapi.KeyUsage{cmapi.UsageServerAuth, cmapi.UsageDigitalSignature},
				PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256, RotationPolicy: cmapi.RotationPolicyAlways},
				IssuerRef:  issuerRef(caName),
			},
		},
	}
}

// deployment runs `serve`: spread over nodes, hardened, ready only once it serves
// TLS, and given time to drain on shutdown.
func deployment(o InstallOptions, labels map[string]string, meta metav1.ObjectMeta) *appsv1.Deployment {
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("health")}},
			PeriodSeconds:    5,
			TimeoutSeconds:   2,
			SuccessThreshold: 1,
			FailureThreshold: 3,
		}
	}
	return &appsv1.Deployment{
		TypeMeta:   typeMeta("apps/v1", "Deployment"),
		ObjectMeta: meta,
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(o.Replicas)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: ptr.To(intstr.FromInt32(0)), MaxSurge: ptr.To(intstr.FromInt32(1))},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName:            InstallName,
					TerminationGracePeriodSeconds: ptr.To(int64(drainDelaySeconds + 20)),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr.To(true),
						RunAsUser:      ptr.To(int64(65532)),
						RunAsGroup:     ptr.To(int64(65532)),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
						MaxSkew:           1,
						TopologyKey:       corev1.LabelHostname,
						WhenUnsatisfiable: corev1.ScheduleAnyway,
						LabelSelector:     &metav1.LabelSelector{MatchLabels: labels},
					}},
					Containers: []corev1.Container{{
						Name:  InstallName,
						Image: o.Image,
						Args: []string{
							"serve",
							"--cert-dir=" + certDir,
							"--config=" + policyDir + "/" + policyKey,
							fmt.Sprintf("--port=%d", webhookPort),
							fmt.Sprintf("--health-probe-bind-address=:%d", healthPort),
							fmt.Sprintf("--metrics-bind-address=:%d", metricsPort),
							fmt.Sprintf("--shutdown-drain-delay=%ds", drainDelaySeconds),
							"--cert-mode=" + certMode(o),
						},
						Env: []corev1.EnvVar{{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{
							FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"},
						}}},
						Ports: []corev1.ContainerPort{
							{Name: "webhook", ContainerPort: webhookPort, Protocol: corev1.ProtocolTCP},
							{Name: "health", ContainerPort: healthPort, Protocol: corev1.ProtocolTCP},
							{Name: "metrics", ContainerPort: metricsPort, Protocol: corev1.ProtocolTCP},
						},
						ReadinessProbe: probe("/readyz"),
						LivenessProbe:  probe("/healthz"),
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
						},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "tls", MountPath: certDir, ReadOnly: o.CertMode != CertModeSelfManaged},
							{Name: "policy", MountPath: policyDir, ReadOnly: true},
						},
					}},
					Volumes: []corev1.Volume{
						tlsVolume(o),
						{Name: "policy", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: policyConfigMap},
						}}},
					},
				},
			},
		},
	}
}

// certMode is serve's --cert-mode: cert-manager writes the files of the "files"
// mode.
func certMode(o InstallOptions) string {
	if o.CertMode == CertModeSelfManaged {
		return CertModeSelfManaged
	}
	return "files"
}

// tlsVolume holds the serving certificate: cert-manager's Secret, or an emptyDir
// that serve writes in the self-managed mode (its Secret holds the CA key too, which
// must not be mounted).
func tlsVolume(o InstallOptions) corev1.Volume {
	if o.CertMode == CertModeSelfManaged {
		return corev1.Volume{Name: "tls", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}}
	}
	return corev1.Volume{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: servingSecret}}}
}

func typeMeta(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}
