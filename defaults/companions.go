package defaults

import (
	"fmt"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/valkey-webhook/valkey-webhook/config"
)

// Labels of every companion object: who manages it, and for which StatefulSet.
const (
	ManagedByLabel       = "app.kubernetes.io/managed-by"
	ManagedByValue       = "valkey-webhook"
	StatefulSetNameLabel = "valkey-webhook.io/statefulset"
)

// CompanionLabels are the labels of the companion objects of a StatefulSet.
func CompanionLabels(sts *appsv1.StatefulSet) map[string]string {
	return map[string]string{ManagedByLabel: ManagedByValue, StatefulSetNameLabel: sts.Name}
}

func companionMeta(sts *appsv1.StatefulSet, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: sts.Namespace, Labels: CompanionLabels(sts)}
}

// ConfigMap holds the valkey.conf whose checksum admission injected.
func ConfigMap(sts *appsv1.StatefulSet, p *config.Policy) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: companionMeta(sts, ConfigMapName(sts)),
		Data:       map[string]string{ConfigKey: ValkeyConf(sts, p)},
	}
}

// Object is what each companion is: controller-runtime's client.Object, named
// here so that this package needs no client.
type Object interface {
	metav1.Object
	runtime.Object
}

// Companion is one object beside a labeled StatefulSet: Want when the policy
// asks for it, or else Absent, an empty object of its kind and name, which the
// companion controller removes if the StatefulSet owns one.
type Companion struct {
	Want, Absent Object
}

// Companions are the objects beside sts under p, in this order: the ConfigMap
// holding conf as valkey.conf, the headless and client Services, the
// PodDisruptionBudget, the NetworkPolicy and the cert-manager Certificate. The
// companion controller keeps them in the cluster; `generate cluster --hardened`
// prints those wanted.
func Companions(sts *appsv1.StatefulSet, p *config.Policy, conf string) []Companion {
	cm := ConfigMap(sts, p)
	cm.Data[ConfigKey] = conf
	out := []Companion{{Want: cm}, {Want: HeadlessService(sts, p)}, {Want: ClientService(sts, p)}}
	either := func(on bool, want func() Object, absent Object, name string) {
		if on {
			out = append(out, Companion{Want: want()})
			return
		}
		absent.SetNamespace(sts.Namespace)
		absent.SetName(name)
		out = append(out, Companion{Absent: absent})
	}
	either(p.PodDisruptionBudget.Enabled, func() Object { return PodDisruptionBudget(sts, p) }, &policyv1.PodDisruptionBudget{}, sts.Name)
	either(p.NetworkPolicy.Enabled, func() Object { return NetworkPolicy(sts, p) }, &networkingv1.NetworkPolicy{}, sts.Name)
	either(p.TLS.Issuer != "", func() Object { return Certificate(sts, p) }, &cmapi.Certificate{}, sts.Name+"-tls")
	return out
}

// GoverningServiceName is the headless Service that gives the pods their DNS names:
// the StatefulSet's serviceName, which admission sets to <sts>-headless.
func GoverningServiceName(sts *appsv1.StatefulSet) string {
	if sts.Spec.ServiceName != "" {
		return sts.Spec.ServiceName
	}
	return HeadlessServiceName(sts)
}

// PodDNSName is the DNS name of a StatefulSet's pod under its governing headless
// Service, <pod>.<service>.<namespace>.svc.<tls.clusterDomain>: the name the
// nodes announce, the init Job dials and the companion Certificate covers (pod
// "*" is its wildcard). pod and namespace may be $(VAR) references that
// Kubernetes expands in a container.
func PodDNSName(sts *appsv1.StatefulSet, p *config.Policy, pod, namespace string) string {
	return fmt.Sprintf("%s.%s.%s.svc.%s", pod, GoverningServiceName(sts), namespace, p.TLS.ClusterDomain)
}

// HeadlessService is the governing Service: one DNS name per pod, published before
// the pods are ready so that the cluster can form.
func HeadlessService(sts *appsv1.StatefulSet, p *config.Policy) *corev1.Service {
	ports := []corev1.ServicePort{
		servicePort(sts, ValkeyContainer, ClientPortName, p.Valkey.Port),
		servicePort(sts, ValkeyContainer, BusPortName, p.Valkey.Port+BusPortOffset),
	}
	if p.Metrics.Enabled {
		ports = append(ports, servicePort(sts, MetricsContainer, MetricsPortName, p.Metrics.Port))
	}
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: companionMeta(sts, GoverningServiceName(sts)),
		Spec: corev1.ServiceSpec{
			ClusterIP:                corev1.ClusterIPNone,
			PublishNotReadyAddresses: true,
			Selector:                 podSelector(sts).MatchLabels,
			Ports:                    ports,
		},
	}
}

// ClientService is the Service clients connect to.
func ClientService(sts *appsv1.StatefulSet, p *config.Policy) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: companionMeta(sts, sts.Name),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: podSelector(sts).MatchLabels,
			Ports:    []corev1.ServicePort{servicePort(sts, ValkeyContainer, ClientPortName, p.Valkey.Port)},
		},
	}
}

func servicePort(sts *appsv1.StatefulSet, container, name string, port int) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: int32(port), TargetPort: podPort(sts, container, name, port), Protocol: corev1.ProtocolTCP}
}

// podPort is how the Services and the NetworkPolicy reach a port of the pods: by
// its name when the template's container names it so, which a valkey.port edit
// needs (each pod is reached at the port it runs with, mid-roll too); by its
// number for a template that names it otherwise, which the validating webhook
// denies but an earlier release admitted: reaching it by a name no pod has would
// cut its traffic on the upgrade.
func podPort(sts *appsv1.StatefulSet, container, name string, number int) intstr.IntOrString {
	if c := FindContainer(sts.Spec.Template.Spec.Containers, container); c != nil {
		for _, cp := range c.Ports {
			if cp.Name == name {
				return intstr.FromString(name)
			}
		}
	}
	return intstr.FromInt32(int32(number))
}

// PodDisruptionBudget lets voluntary disruptions take maxUnavailable pods at a
// time. An unhealthy pod may be evicted only while the budget holds otherwise
// (IfHealthyBudget): with the default maxUnavailable 1, when two pods are
// unready, which may be a master and the only replica of its shard, no eviction
// takes either until one is back (docs/design.md, "Evictions").
func PodDisruptionBudget(sts *appsv1.StatefulSet, p *config.Policy) *policyv1.PodDisruptionBudget {
	return &policyv1.PodDisruptionBudget{
		TypeMeta:   metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
		ObjectMeta: companionMeta(sts, sts.Name),
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable:             ptr.To(intstr.FromInt32(int32(p.PodDisruptionBudget.MaxUnavailable))),
			Selector:                   podSelector(sts),
			UnhealthyPodEvictionPolicy: ptr.To(policyv1.IfHealthyBudget),
		},
	}
}

// NetworkPolicy admits the cluster's own pods on the client and bus ports, the
// configured clients on the client port, and monitoring on the exporter port.
// Policy.Validate has checked the selectors, so they parse. The ports are the
// Services' target ports (podPort).
func NetworkPolicy(sts *appsv1.StatefulSet, p *config.Policy) *networkingv1.NetworkPolicy {
	own := podSelector(sts)
	client := policyPort(sts, ValkeyContainer, ClientPortName, p.Valkey.Port)
	np := p.NetworkPolicy
	rules := []networkingv1.NetworkPolicyIngressRule{
		{
			From:  []networkingv1.NetworkPolicyPeer{{PodSelector: own}},
			Ports: []networkingv1.NetworkPolicyPort{client, policyPort(sts, ValkeyContainer, BusPortName, p.Valkey.Port+BusPortOffset)},
		},
		{
			From:  []networkingv1.NetworkPolicyPeer{peer(np.ClientPodSelector, np.ClientNamespaceSelector)},
			Ports: []networkingv1.NetworkPolicyPort{client},
		},
	}
	if p.Metrics.Enabled {
		rules = append(rules, networkingv1.NetworkPolicyIngressRule{
			From:  []networkingv1.NetworkPolicyPeer{monitoringPeer(np.MonitoringPodSelector, np.MonitoringNamespaceSelector)},
			Ports: []networkingv1.NetworkPolicyPort{policyPort(sts, MetricsContainer, MetricsPortName, p.Metrics.Port)},
		})
	}
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: companionMeta(sts, sts.Name),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: *own.DeepCopy(),
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     rules,
		},
	}
}

// WebhookPodLabels are the labels of the valkey-webhook pods (generate install),
// by which a NetworkPolicy admits the lifecycle controller.
func WebhookPodLabels() map[string]string {
	return map[string]string{"app.kubernetes.io/name": "valkey-webhook"}
}

// policyPort is a NetworkPolicy port: TCP to podPort.
func policyPort(sts *appsv1.StatefulSet, container, name string, number int) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(podPort(sts, container, name, number))}
}

// AdmitController adds to a NetworkPolicy the rule that lets the valkey-webhook
// pods in namespace reach the client port: the lifecycle controller forms and
// heals the cluster through it.
func AdmitController(np *networkingv1.NetworkPolicy, sts *appsv1.StatefulSet, p *config.Policy, namespace string) {
	np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{
		From: []networkingv1.NetworkPolicyPeer{{
			PodSelector:       &metav1.LabelSelector{MatchLabels: WebhookPodLabels()},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: namespace}},
		}},
		Ports: []networkingv1.NetworkPolicyPort{policyPort(sts, ValkeyContainer, ClientPortName, p.Valkey.Port)},
	})
}

// peer is a NetworkPolicy peer from selector strings (Policy.Validate has checked
// that they parse): an empty pod selector is every pod; an empty namespace selector
// is the policy's own namespace.
func peer(pods, namespaces string) networkingv1.NetworkPolicyPeer {
	ps, _ := metav1.ParseToLabelSelector(pods)
	out := networkingv1.NetworkPolicyPeer{PodSelector: ps}
	if namespaces != "" {
		out.NamespaceSelector, _ = metav1.ParseToLabelSelector(namespaces)
	}
	return out
}

// monitoringPeer is like peer, but monitoring runs in other namespaces, so an empty
// namespace selector means every namespace.
func monitoringPeer(pods, namespaces string) networkingv1.NetworkPolicyPeer {
	out := peer(pods, namespaces)
	if out.NamespaceSelector == nil {
		out.NamespaceSelector = &metav1.LabelSelector{}
	}
	return out
}

// AuthSecret is the password Secret <sts>-auth: the password for clients and
// probes, and auth.conf, which valkey.conf includes. The controller creates it once
// and never changes or deletes it; it carries no ownerReference, so that it outlives
// the StatefulSet as a PersistentVolumeClaim does.
func AuthSecret(sts *appsv1.StatefulSet, p *config.Policy, password string) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: companionMeta(sts, AuthSecretName(sts, p)),
		Type:       corev1.SecretTypeOpaque,
		Data: map[string][]byte{
			PasswordKey: []byte(password),
			// The generated password is URL-safe base64, which needs no escaping
			// inside a quoted valkey.conf string.
			AuthConfigKey: []byte(fmt.Sprintf("requirepass \"%s\"\nmasterauth \"%s\"\n", password, password)),
		},
	}
}

// Certificate is the cert-manager Certificate <sts>-tls, when tls.issuer is set. It
// names every pod behind the headless Service (by wildcard, so that a scale-up needs
// no new certificate), the client Service, and localhost for the probes. It is for
// both server and client authentication: the cluster bus and replication use it in
// both directions.
func Certificate(sts *appsv1.StatefulSet, p *config.Policy) *cmapi.Certificate {
	kind, issuer := config.ParseIssuer(p.TLS.Issuer)
	ns, headless, domain := sts.Namespace, GoverningServiceName(sts), p.TLS.ClusterDomain
	return &cmapi.Certificate{
		TypeMeta:   metav1.TypeMeta{APIVersion: "cert-manager.io/v1", Kind: "Certificate"},
		ObjectMeta: companionMeta(sts, sts.Name+"-tls"),
		Spec: cmapi.CertificateSpec{
			SecretName:     TLSSecretName(sts, p),
			SecretTemplate: &cmapi.CertificateSecretTemplate{Labels: CompanionLabels(sts)},
			IssuerRef:      cmmeta.IssuerReference{Group: "cert-manager.io", Kind: kind, Name: issuer},
			DNSNames: []string{
				fmt.Sprintf("*.%s.%s.svc", headless, ns),
				PodDNSName(sts, p, "*", ns),
				sts.Name,
				fmt.Sprintf("%s.%s", sts.Name, ns),
				fmt.Sprintf("%s.%s.svc", sts.Name, ns),
				fmt.Sprintf("%s.%s.svc.%s", sts.Name, ns, domain),
				"localhost",
			},
			IPAddresses: []string{"127.0.0.1"},
			Usages:      []cmapi.KeyUsage{cmapi.UsageServerAuth, cmapi.UsageClientAuth, cmapi.UsageDigitalSignature, cmapi.UsageKeyEncipherment},
			PrivateKey:  &cmapi.CertificatePrivateKey{RotationPolicy: cmapi.RotationPolicyAlways},
		},
	}
}
