package generator

import (
	"fmt"
	"maps"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// ClusterOptions are the choices a team makes for one Valkey cluster. Zero values
// mean the policy's defaults.
type ClusterOptions struct {
	Name      string
	Namespace string
	// Replicas is the number of pods; 0 means Masters x (1 + ReplicasPerMaster).
	Replicas int
	// Masters is the number of masters; 0 means the policy's cluster.minMasters.
	Masters int
	// ReplicasPerMaster; nil means the policy's cluster.replicasPerMaster.
	ReplicasPerMaster *int
	Image             string
	// Memory is the valkey container's memory limit; maxmemory is derived from it.
	Memory       string
	Storage      string
	StorageClass string
	// TLSIssuer is a cert-manager issuer, KIND/NAME.
	TLSIssuer string
	// TLSSecret is a kubernetes.io/tls Secret with ca.crt.
	TLSSecret string
	// Auth nil means the policy's auth.enabled.
	Auth *bool
	// NoInitJob leaves the cluster-init Job out of the hardened output; its header
	// then says how to form the cluster by hand.
	NoInitJob bool
	// InitImage is the valkey-webhook image the cluster-init Job runs; empty means
	// DefaultImage.
	InitImage string
	// InitHook makes the cluster-init Job a hook of the tool that applies the
	// output: InitHookArgoCD, InitHookHelm, or InitHookNone (empty means none).
	InitHook string
}

// DefaultMemory is the memory limit when --memory is not given.
const DefaultMemory = "1Gi"

// MinimalCluster is the StatefulSet a team commits: labeled, with only what the
// team decides, and an annotation for each choice that differs from the policy.
func MinimalCluster(o ClusterOptions, p config.Policy) (*appsv1.StatefulSet, error) {
	if err := o.validate(p); err != nil {
		return nil, err
	}
	rpm := p.Cluster.ReplicasPerMaster
	annotations := map[string]string{}
	override := func(key, value string) {
		if current, _ := p.Get(key); current != value {
			annotations[config.AnnotationPrefix+key] = value
		}
	}
	if o.ReplicasPerMaster != nil {
		rpm = *o.ReplicasPerMaster
		override("cluster.replicasPerMaster", strconv.Itoa(rpm))
	}
	replicas := o.Replicas
	if replicas == 0 {
		masters := o.Masters
		if masters == 0 {
			masters = p.Cluster.MinMasters
		}
		replicas = masters * (1 + rpm)
	}
	if o.Storage != "" {
		override("persistence.size", o.Storage)
	}
	if o.StorageClass != "" {
		override("persistence.storageClassName", o.StorageClass)
	}
	if o.TLSIssuer != "" {
		override("tls.issuer", o.TLSIssuer)
	}
	if o.TLSSecret != "" {
		override("tls.secretName", o.TLSSecret)
	}
	if o.Auth != nil {
		override("auth.enabled", strconv.FormatBool(*o.Auth))
	}
	image := o.Image
	if image == "" {
		image = p.Image.Valkey
	}
	memory := resource.MustParse(or(o.Memory, DefaultMemory))
	labels := map[string]string{"app.kubernetes.io/name": "valkey", "app.kubernetes.io/instance": o.Name}
	sts := &appsv1.StatefulSet{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      o.Name,
			Namespace: o.Namespace,
			Labels:    map[string]string{defaults.ClusterLabel: defaults.ClusterLabelEnabled},
		},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To(int32(replicas)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: maps.Clone(labels)},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:  defaults.ValkeyContainer,
					Image: image,
					Resources: corev1.ResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceMemory: memory},
						Limits:   corev1.ResourceList{corev1.ResourceMemory: memory},
					},
				}}},
			},
		},
	}
	if len(annotations) > 0 {
		sts.Annotations = annotations
	}
	return sts, nil
}

// HardenedCluster is the minimal StatefulSet passed through the admission
// mutation, every companion object the controller would keep beside it, and the
// Job that forms the cluster (unless NoInitJob), for clusters that do not run the
// webhook. The auth Secret is left out: a password does not belong in a file a
// team commits; header says how to create it.
func HardenedCluster(o ClusterOptions, p config.Policy) (objects []client.Object, header []string, err error) {
	if errs := append(o.problems(p), o.initJobProblems(p)...); len(errs) > 0 {
		return nil, nil, errs
	}
	sts, err := MinimalCluster(o, p)
	if err != nil {
		return nil, nil, err
	}
	if errs := defaults.HardenWithOverrides(sts, nil, p); len(errs) > 0 {
		return nil, nil, fmt.Errorf("hardening: %w", errs.ToAggregate())
	}
	eff, errs := config.Effective(p, sts.Annotations, defaults.AnnotationsPath)
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("hardening: %w", errs.ToAggregate())
	}
	// What the companion controller would keep beside it, from the same list.
	objects = []client.Object{sts}
	var np *networkingv1.NetworkPolicy
	for _, c := range defaults.Companions(sts, &eff, defaults.ValkeyConf(sts, &eff)) {
		if c.Want == nil {
			continue
		}
		if n, ok := c.Want.(*networkingv1.NetworkPolicy); ok {
			np = n
		}
		objects = append(objects, c.Want)
	}
	header = []string{fmt.Sprintf("Valkey cluster %s, hardened by valkey-webhook for a cluster without the webhook.", o.Name)}
	if eff.Auth.Enabled {
		secret := defaults.AuthSecretName(sts, &eff)
		header = append(header,
			fmt.Sprintf("The password Secret %s is not printed: a password does not belong in a committed file.", secret),
			"Create it once, before the pods start:",
			`  P=$(head -c 32 /dev/urandom | base64 | tr -d '/+=')`,
			fmt.Sprintf(`  kubectl -n %s create secret generic %s --from-literal=password="$P" \`, or(o.Namespace, "NAMESPACE"), secret),
			`    --from-file=auth.conf=<(printf 'requirepass "%s"\nmasterauth "%s"\n' "$P" "$P")`,
		)
	}
	if o.NoInitJob {
		header = append(header,
			"Form the cluster once every pod runs (--init-job=false left out the Job that does it):",
			"  valkey-webhook cluster init"+initFlags(&eff)+" --nodes "+podAddresses(sts, &eff))
		return objects, header, nil
	}
	job, namespaces, err := initJob(sts, &eff, np, or(o.InitImage, DefaultImage))
	if err != nil {
		return nil, nil, err
	}
	job.Annotations = initHookAnnotations(o.InitHook)
	objects = append(objects, job)
	if np != nil {
		objects = append(objects, initJobNetworkPolicy(job))
	}
	header = append(header, fmt.Sprintf("The Job %s forms the cluster once every pod answers (valkey-webhook cluster init), retrying for up to %d minutes; on a formed cluster it changes nothing.", job.Name, int(initActiveDeadline.Minutes())))
	if h := initHookHeader(o.InitHook); h != "" {
		header = append(header, h)
	}
	if namespaces != nil {
		header = append(header, fmt.Sprintf("The NetworkPolicy %s admits it only from namespaces matching %q: the namespace it runs in must match.", np.Name, metav1.FormatLabelSelector(namespaces)))
	}
	return objects, header, nil
}

// validate refuses bad options before anything is rendered, naming the flag.
func (o ClusterOptions) validate(p config.Policy) error {
	return o.problems(p).orNil()
}

// problems are the refused options of every cluster, each named by its flag.
func (o ClusterOptions) problems(p config.Policy) FlagErrors {
	var errs FlagErrors
	bad := func(flag, value, reason string) { errs = append(errs, FlagError{flag, value, reason}) }

	if o.Name == "" {
		bad("name", o.Name, "is required")
	} else if msgs := validation.IsDNS1035Label(o.Name); len(msgs) > 0 {
		bad("name", o.Name, "must be a DNS label (it names Services): "+strings.Join(msgs, "; "))
	} else if len(o.Name) > 63-len("-headless") {
		bad("name", o.Name, fmt.Sprintf("must be at most %d characters, so that %s-headless is a valid Service name", 63-len("-headless"), o.Name))
	}
	if o.Namespace != "" {
		for _, msg := range validation.IsDNS1123Label(o.Namespace) {
			bad("namespace", o.Namespace, msg)
		}
	}
	rpm := p.Cluster.ReplicasPerMaster
	if o.ReplicasPerMaster != nil {
		rpm = *o.ReplicasPerMaster
		if rpm < 0 {
			bad("replicas-per-master", strconv.Itoa(rpm), "must be 0 or more")
		}
	}
	if o.Masters != 0 && o.Masters < p.Cluster.MinMasters {
		bad("masters", strconv.Itoa(o.Masters), fmt.Sprintf("must be at least %d (cluster.minMasters)", p.Cluster.MinMasters))
	}
	if o.Replicas != 0 {
		if o.Masters != 0 || o.ReplicasPerMaster != nil {
			bad("replicas", strconv.Itoa(o.Replicas), "give either --replicas or --masters and --replicas-per-master, not both")
		} else if need := p.Cluster.MinMasters * (1 + rpm); o.Replicas < need {
			bad("replicas", strconv.Itoa(o.Replicas), fmt.Sprintf("must be at least %d: %d masters x (1 + %d replicas per master)", need, p.Cluster.MinMasters, rpm))
		}
	}
	if o.Memory != "" {
		if q, err := resource.ParseQuantity(o.Memory); err != nil || q.Sign() <= 0 {
			bad("memory", o.Memory, "must be a positive quantity such as 512Mi or 4Gi")
		}
	}
	if o.Storage != "" {
		if q, err := resource.ParseQuantity(o.Storage); err != nil || q.Sign() <= 0 {
			bad("storage", o.Storage, "must be a positive quantity such as 8Gi")
		}
	}
	if o.StorageClass != "" {
		for _, msg := range validation.IsDNS1123Subdomain(o.StorageClass) {
			bad("storage-class", o.StorageClass, msg)
		}
	}
	if o.TLSIssuer != "" {
		kind, name, ok := strings.Cut(o.TLSIssuer, "/")
		switch {
		case !ok || name == "":
			bad("tls-issuer", o.TLSIssuer, "must be KIND/NAME, such as ClusterIssuer/internal-ca or Issuer/valkey-ca")
		case kind != "Issuer" && kind != "ClusterIssuer":
			bad("tls-issuer", o.TLSIssuer, "the kind must be Issuer or ClusterIssuer")
		default:
			for _, msg := range validation.IsDNS1123Subdomain(name) {
				bad("tls-issuer", o.TLSIssuer, "the name: "+msg)
			}
		}
		if o.TLSSecret != "" {
			bad("tls-secret", o.TLSSecret, "give either --tls-issuer or --tls-secret, not both")
		}
	}
	if o.TLSSecret != "" {
		for _, msg := range validation.IsDNS1123Subdomain(o.TLSSecret) {
			bad("tls-secret", o.TLSSecret, msg)
		}
	}
	if o.Image != "" && strings.ContainsAny(o.Image, " \t\n") {
		bad("image", o.Image, "must be an image reference without spaces")
	}
	return errs
}

// initJobProblems are the refused options of the cluster-init Job.
func (o ClusterOptions) initJobProblems(p config.Policy) FlagErrors {
	var errs FlagErrors
	switch o.InitHook {
	case "", InitHookNone, InitHookArgoCD, InitHookHelm:
	default:
		errs = append(errs, FlagError{"init-hook", o.InitHook, fmt.Sprintf("must be %s (an Argo CD PostSync hook), %s (a Helm post-install and post-upgrade hook) or %s (a plain Job)", InitHookArgoCD, InitHookHelm, InitHookNone)})
	}
	if o.NoInitJob {
		if o.InitImage != "" {
			errs = append(errs, FlagError{"init-image", o.InitImage, "the Job is left out (--init-job=false): give one of them"})
		}
		if initHookAnnotations(o.InitHook) != nil {
			errs = append(errs, FlagError{"init-hook", o.InitHook, "the Job is left out (--init-job=false): give one of them"})
		}
		return errs
	}
	if strings.ContainsAny(o.InitImage, " \t\n") {
		errs = append(errs, FlagError{"init-image", o.InitImage, "must be an image reference without spaces"})
	}
	// --replicas with --replicas-per-master, and fewer pods than the policy needs,
	// are refused by problems already.
	rpm := p.Cluster.ReplicasPerMaster
	if size := 1 + rpm; o.ReplicasPerMaster == nil && o.Replicas >= p.Cluster.MinMasters*size && o.Replicas%size != 0 {
		errs = append(errs, FlagError{"replicas", strconv.Itoa(o.Replicas), fmt.Sprintf(
			"the cluster-init Job forms shards of %d pods (cluster.replicasPerMaster %d), and %d pods do not divide into them: give %d or %d, or --init-job=false",
			size, rpm, o.Replicas, o.Replicas/size*size, (o.Replicas/size+1)*size)})
	}
	return errs
}

func or(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

// podAddresses lists the pods' DNS names behind the headless Service, for
// `cluster init --nodes`.
func podAddresses(sts *appsv1.StatefulSet, p *config.Policy) string {
	ns := or(sts.Namespace, "NAMESPACE")
	addrs := make([]string, *sts.Spec.Replicas)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("%s-%d.%s.%s.svc:%d", sts.Name, i, defaults.GoverningServiceName(sts), ns, p.Valkey.Port)
	}
	return strings.Join(addrs, ",")
}

// initFlags are the `cluster init` flags the cluster's TLS and auth call for.
func initFlags(p *config.Policy) string {
	var flags string
	if p.Auth.Enabled {
		flags += " --password-file FILE_WITH_THE_PASSWORD"
	}
	if p.TLSEnabled() {
		flags += " --tls-ca ca.crt"
		if p.TLS.AuthClients {
			flags += " --tls-cert tls.crt --tls-key tls.key"
		}
	}
	return flags
}
