package generator

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/utils/ptr"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// How the cluster-init Job waits for the pods. `cluster init` refuses, changing
// nothing, while a node does not answer, and is idempotent, so the Job simply runs
// it again until it succeeds:
//   - each run is bounded by initTimeout (the `cluster init` default), the wait for
//     cluster_state:ok included;
//   - a failed run is retried in a new pod (restartPolicy Never) after 10s, 20s,
//     40s, ... at most 6 minutes apart (the Job controller's back-off), and
//     initBackoffLimit retries add up to about 46 minutes of waiting: time for
//     images to pull, volumes to bind and the startup probe's budget (5 minutes by
//     default), several times over. Never rather than OnFailure: a failed pod
//     keeps its log (which node did not answer, and why), where OnFailure would
//     restart it in place and delete it when the limit is reached;
//   - exit code 2 (a password or certificate file it cannot use) fails the Job at
//     once, since no retry fixes it; a pod evicted or preempted is retried without
//     counting against the limit;
//   - initActiveDeadline is the hard ceiling of the whole Job, whatever the cause:
//     runs that hang for their full timeout, or a pod that never starts because
//     the auth or TLS Secret it mounts does not exist yet;
//   - initTTLAfterFinished keeps the finished Job, its status and its pods' logs,
//     for a day, then deletes it. Applying the manifests again re-creates it, and
//     on a formed cluster it changes nothing.
const (
	initTimeout          = 2 * time.Minute
	initBackoffLimit     = 12
	initActiveDeadline   = time.Hour
	initTTLAfterFinished = 24 * time.Hour
	// initBadInput is the exit code of `valkey-webhook cluster` for bad flags or
	// unreadable files.
	initBadInput = 2

	initContainer = "cluster-init"
	// initUser is the nonroot user of the distroless valkey-webhook image.
	initUser = 65532
)

// initJobName is the cluster-init Job of a StatefulSet.
func initJobName(sts *appsv1.StatefulSet) string { return sts.Name + "-init" }

// initJob is the Job that forms the cluster of the hardened StatefulSet sts: it
// runs `valkey-webhook cluster init` over every pod's stable DNS name, with the
// password file and the TLS files the StatefulSet mounts. np is the cluster's
// NetworkPolicy, nil when there is none; the Job's pod is labeled so that np lets
// it reach the client port. namespaces is the namespace selector np puts on that
// admission, nil when it admits the pod from the cluster's own namespace.
func initJob(sts *appsv1.StatefulSet, p *config.Policy, np *networkingv1.NetworkPolicy, image string) (job *batchv1.Job, namespaces *metav1.LabelSelector, err error) {
	// job-name is the label the Job controller puts on the pod anyway; written in
	// the template too, it counts in choosing labels np admits, and a reader of the
	// file sees which policy selects the pod (initJobNetworkPolicy).
	podLabels, namespaces, ok := admittedLabels(sts, np, p.Valkey.Port, withJobName(defaults.CompanionLabels(sts), initJobName(sts)))
	if !ok {
		return nil, nil, FlagErrors{{Flag: "init-job", Value: "true", Reason: fmt.Sprintf(
			"the NetworkPolicy %s admits no pod but the cluster's own to port %d (networkPolicy.clientPodSelector %q), so the Job could not reach the nodes: "+
				"change the selector, or give --init-job=false and run valkey-webhook cluster init yourself", np.Name, p.Valkey.Port, p.NetworkPolicy.ClientPodSelector)}}
	}

	ns := sts.Namespace
	var env []corev1.EnvVar
	if ns == "" {
		// No --namespace: the pod's own, which is the cluster's when the stream is
		// applied to one namespace.
		ns = "$(POD_NAMESPACE)"
		env = []corev1.EnvVar{{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"},
		}}}
	}
	args := []string{
		"cluster", "init",
		"--nodes=" + strings.Join(podDNSNames(sts, p, ns), ","),
		"--replicas-per-master=" + strconv.Itoa(p.Cluster.ReplicasPerMaster),
		"--timeout=" + initTimeout.String(),
	}
	var mounts []corev1.VolumeMount
	var volumes []corev1.Volume
	// secretVolume mounts only the keys the Job reads, read-only, readable by its
	// user through fsGroup and by no one else.
	secretVolume := func(name, secret, dir string, keys ...string) {
		items := make([]corev1.KeyToPath, len(keys))
		for i, k := range keys {
			items[i] = corev1.KeyToPath{Key: k, Path: k}
		}
		volumes = append(volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: secret, Items: items, DefaultMode: ptr.To(int32(0o440))},
		}})
		mounts = append(mounts, corev1.VolumeMount{Name: name, MountPath: dir, ReadOnly: true})
	}
	if p.Auth.Enabled {
		// The password reaches the CLI as a file, never as an argument or env value.
		secretVolume(defaults.AuthVolume, defaults.AuthSecretName(sts, p), defaults.AuthDir, defaults.PasswordKey)
		args = append(args, "--password-file="+path.Join(defaults.AuthDir, defaults.PasswordKey))
	}
	if p.TLSEnabled() {
		keys := []string{"ca.crt"}
		args = append(args, "--tls-ca="+path.Join(defaults.TLSDir, "ca.crt"))
		if p.TLS.AuthClients {
			keys = append(keys, "tls.crt", "tls.key")
			args = append(args, "--tls-cert="+path.Join(defaults.TLSDir, "tls.crt"), "--tls-key="+path.Join(defaults.TLSDir, "tls.key"))
		}
		secretVolume(defaults.TLSVolume, defaults.TLSSecretName(sts, p), defaults.TLSDir, keys...)
	}

	job = &batchv1.Job{
		TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      initJobName(sts),
			Namespace: sts.Namespace,
			Labels:    defaults.CompanionLabels(sts),
		},
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptr.To(int32(initBackoffLimit)),
			ActiveDeadlineSeconds:   ptr.To(int64(initActiveDeadline.Seconds())),
			TTLSecondsAfterFinished: ptr.To(int32(initTTLAfterFinished.Seconds())),
			PodFailurePolicy: &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{
				{
					Action:      batchv1.PodFailurePolicyActionFailJob,
					OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{ContainerName: ptr.To(initContainer), Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{initBadInput}},
				},
				{
					Action:          batchv1.PodFailurePolicyActionIgnore,
					OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue}},
				},
			}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: corev1.PodSpec{
					RestartPolicy:                corev1.RestartPolicyNever,
					AutomountServiceAccountToken: ptr.To(false),
					EnableServiceLinks:           ptr.To(false),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr.To(true),
						RunAsUser:      ptr.To(int64(initUser)),
						RunAsGroup:     ptr.To(int64(initUser)),
						FSGroup:        ptr.To(int64(initUser)),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:  initContainer,
						Image: image,
						Args:  args,
						Env:   env,
						Resources: corev1.ResourceRequirements{
							// Its only writes are its logs.
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi"), corev1.ResourceEphemeralStorage: resource.MustParse("16Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("128Mi"), corev1.ResourceEphemeralStorage: resource.MustParse("64Mi")},
						},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
						// The last lines of a failed run (which node did not answer,
						// and what to do) show in the pod's status.
						TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
						VolumeMounts:             mounts,
					}},
					Volumes: volumes,
				},
			},
		},
	}
	return job, namespaces, nil
}

// podDNSNames are host:port of every pod behind the governing headless Service,
// fully qualified: the Service publishes not-ready addresses, so the names resolve
// once a pod has an IP, before it is ready; and TLS verifies them against the
// Certificate's *.<headless>.<ns>.svc.<domain>.
func podDNSNames(sts *appsv1.StatefulSet, p *config.Policy, ns string) []string {
	names := make([]string, *sts.Spec.Replicas)
	for i := range names {
		names[i] = fmt.Sprintf("%s:%d", defaults.PodDNSName(sts, p, fmt.Sprintf("%s-%d", sts.Name, i), ns), p.Valkey.Port)
	}
	return names
}

// admittedLabels returns the labels, starting from base, of a pod that np admits to
// port without being one of the cluster's own pods (those would be counted by its
// Services and PodDisruptionBudget): from the first peer of np, in order, that
// some such labels match. namespaces is that peer's namespace selector. ok is false
// when no peer admits such a pod. Without a NetworkPolicy, base is admitted.
func admittedLabels(sts *appsv1.StatefulSet, np *networkingv1.NetworkPolicy, port int, base map[string]string) (podLabels map[string]string, namespaces *metav1.LabelSelector, ok bool) {
	if np == nil {
		return base, nil, true
	}
	own, err := metav1.LabelSelectorAsSelector(sts.Spec.Selector)
	if err != nil {
		return nil, nil, false
	}
	for _, rule := range np.Spec.Ingress {
		if !allowsPort(rule.Ports, port) {
			continue
		}
		if len(rule.From) == 0 {
			return base, nil, true
		}
		for _, peer := range rule.From {
			if peer.IPBlock != nil {
				continue
			}
			l, ok := matchingLabels(base, peer.PodSelector)
			if ok && !own.Matches(labels.Set(l)) {
				return l, peer.NamespaceSelector, true
			}
		}
	}
	return nil, nil, false
}

// allowsPort reports whether NetworkPolicy ports admit TCP to the client port,
// given by number or by its container port name.
func allowsPort(ports []networkingv1.NetworkPolicyPort, port int) bool {
	if len(ports) == 0 {
		return true
	}
	for _, pp := range ports {
		if pp.Protocol != nil && *pp.Protocol != corev1.ProtocolTCP {
			continue
		}
		switch {
		case pp.Port == nil:
			return true
		case pp.Port.Type == intstr.String:
			if pp.Port.StrVal == defaults.ClientPortName {
				return true
			}
		case pp.Port.IntValue() == port, pp.EndPort != nil && pp.Port.IntValue() <= port && port <= int(*pp.EndPort):
			return true
		}
	}
	return false
}

// matchingLabels returns labels that sel matches, changing base as little as it
// can: a label of base that meets its key's requirements is kept; otherwise the
// key gets the first allowed value in sorted order, or is removed when sel wants
// it absent. ok is false when no labels match sel. A nil sel matches every pod.
func matchingLabels(base map[string]string, sel *metav1.LabelSelector) (map[string]string, bool) {
	out := maps.Clone(base)
	if out == nil {
		out = map[string]string{}
	}
	if sel == nil {
		return out, true
	}
	type want struct {
		in             sets.Set[string] // nil: any value
		notIn          sets.Set[string]
		exists, absent bool
	}
	wants := map[string]*want{}
	get := func(key string) *want {
		if wants[key] == nil {
			wants[key] = &want{notIn: sets.New[string]()}
		}
		return wants[key]
	}
	restrict := func(w *want, values ...string) {
		if w.in == nil {
			w.in = sets.New(values...)
		} else {
			w.in = w.in.Intersection(sets.New(values...))
		}
	}
	for k, v := range sel.MatchLabels {
		restrict(get(k), v)
	}
	for _, r := range sel.MatchExpressions {
		w := get(r.Key)
		switch r.Operator {
		case metav1.LabelSelectorOpIn:
			restrict(w, r.Values...)
		case metav1.LabelSelectorOpNotIn:
			w.notIn.Insert(r.Values...)
		case metav1.LabelSelectorOpExists:
			w.exists = true
		case metav1.LabelSelectorOpDoesNotExist:
			w.absent = true
		default:
			return nil, false
		}
	}
	for _, key := range slices.Sorted(maps.Keys(wants)) {
		w := wants[key]
		current, has := out[key]
		switch {
		case w.absent:
			delete(out, key)
		case w.in != nil:
			if has && w.in.Has(current) && !w.notIn.Has(current) {
				continue
			}
			allowed := sets.List(w.in.Difference(w.notIn))
			if len(allowed) == 0 {
				return nil, false
			}
			out[key] = allowed[0]
		case w.exists:
			if has && !w.notIn.Has(current) {
				continue
			}
			value := initContainer
			for i := 2; w.notIn.Has(value); i++ {
				value = fmt.Sprintf("%s-%d", initContainer, i)
			}
			out[key] = value
		default: // only values it must not have
			if has && w.notIn.Has(current) {
				delete(out, key)
			}
		}
	}
	// The requirements were met key by key; the selector has the last word (an
	// absent key that another requirement wants present).
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || !s.Matches(labels.Set(out)) {
		return nil, false
	}
	return out, true
}

// withJobName is labels and the Job controller's job-name label.
func withJobName(labels map[string]string, job string) map[string]string {
	out := maps.Clone(labels)
	out[batchv1.JobNameLabel] = job
	return out
}

// initJobNetworkPolicy admits nothing to the Job's pod, which serves nothing: it
// selects the pod by its job-name label, which no other pod carries, and leaves
// its egress (DNS and the Valkey nodes) alone.
func initJobNetworkPolicy(job *batchv1.Job) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: job.Name, Namespace: job.Namespace, Labels: job.Labels},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{batchv1.JobNameLabel: job.Name}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}
}
