package defaults

import (
	"encoding/json"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/valkey-webhook/valkey-webhook/config"
)

// templateKeys are the policy keys hardenPodTemplate reads. A change of any other
// key changes at most the config checksum (TestTemplateKeys proves the list whole).
// Their values are what config.HardenedWithAnnotation records.
var templateKeys = []string{
	"auth.enabled", "auth.existingSecret",
	"image.valkey",
	"metrics.enabled", "metrics.image", "metrics.port",
	"security.fsGroup", "security.runAsUser",
	"startupProbe.enabled", "startupProbe.failureThreshold", "startupProbe.periodSeconds",
	"tls.authClients", "tls.clusterDomain", "tls.issuer", "tls.secretName",
	"topologySpreadConstraints.enabled", "topologySpreadConstraints.maxSkew",
	"topologySpreadConstraints.topologyKey", "topologySpreadConstraints.whenUnsatisfiable",
	"valkey.cpuRequest", "valkey.port",
}

// FixedAtCreate are the keys whose change an UPDATE cannot apply: the claim
// templates of a StatefulSet are immutable, and the pods' UID and fsGroup own the
// files on the data volumes (a pod under another UID cannot write them). disown
// leaves what they injected as stored; validation refuses an override that
// changes them.
var FixedAtCreate = []string{"persistence.size", "persistence.storageClassName", "security.fsGroup", "security.runAsUser"}

// hardenedWith is the value of config.HardenedWithAnnotation for p: each template
// key and its value, as a JSON object (its keys sorted, so the same policy gives
// the same bytes).
func hardenedWith(p *config.Policy) string {
	m := make(map[string]string, len(templateKeys))
	for _, k := range templateKeys {
		m[k], _ = p.Get(k)
	}
	b, _ := json.Marshal(m) // a map of strings always encodes
	return string(b)
}

// StoredPolicy is the policy the stored object's pod template was hardened with:
// its config.HardenedWithAnnotation over base, or, for an object hardened by an
// earlier release (no annotation, or one this release cannot read), its
// overrides over base. ok is false when neither gives a valid policy: then
// nothing of the template can be told to be injected.
func StoredPolicy(old *appsv1.StatefulSet, base config.Policy) (config.Policy, bool) {
	var recorded map[string]string
	if err := json.Unmarshal([]byte(old.Annotations[config.HardenedWithAnnotation]), &recorded); err == nil {
		annotations := map[string]string{}
		for _, k := range templateKeys {
			if v, ok := recorded[k]; ok {
				annotations[config.AnnotationPrefix+k] = v
			}
		}
		if p, errs := config.Effective(base, annotations, AnnotationsPath); len(errs) == 0 {
			return p, true
		}
	}
	overrides, _ := config.WithoutInheritedUnknown(old.Annotations, old.Annotations)
	p, errs := config.Effective(base, overrides, AnnotationsPath)
	return p, len(errs) == 0
}

// disown removes from an UPDATE's pod template each value that is still exactly
// what Harden injected for the stored object under pOld (StoredPolicy), so that
// Harden fills it again for the new settings, as a CREATE with them would. A value
// that differs was set by the user and stays. Left out, as fixed at CREATE: the
// claim templates (immutable) and the pods' UID and fsGroup (the owners of the
// files on the data volumes); the valkey container's image, which the template
// names. docs/design.md, "Injected state is owned".
func disown(sts, old *appsv1.StatefulSet, pOld *config.Policy) {
	spec := &sts.Spec.Template.Spec
	if pOld.TopologySpreadConstraints.Enabled {
		injected := topologySpread(pOld, podSelector(old))
		spec.TopologySpreadConstraints = without(spec.TopologySpreadConstraints, func(c corev1.TopologySpreadConstraint) bool {
			return equality.Semantic.DeepEqual(c, injected)
		})
	}
	if c := FindContainer(spec.Containers, ValkeyContainer); c != nil {
		disownValkeyContainer(c, old, pOld)
	}
	if pOld.Metrics.Enabled {
		injected := metricsContainer(old, pOld)
		hardenContainerSecurityContext(&injected)
		spec.Containers = without(spec.Containers, func(c corev1.Container) bool {
			return c.Name == MetricsContainer && sameContainer(injected, c)
		})
	}
	var volumes []corev1.Volume
	if pOld.TLSEnabled() {
		volumes = append(volumes, secretVolume(TLSVolume, TLSSecretName(old, pOld)))
	}
	if pOld.Auth.Enabled {
		volumes = append(volumes, secretVolume(AuthVolume, AuthSecretName(old, pOld)))
	}
	spec.Volumes = without(spec.Volumes, func(v corev1.Volume) bool {
		return slices.ContainsFunc(volumes, func(w corev1.Volume) bool { return equality.Semantic.DeepEqual(v, w) })
	})
}

func disownValkeyContainer(c *corev1.Container, old *appsv1.StatefulSet, pOld *config.Policy) {
	if command, args := valkeyCommand(old, pOld); slices.Equal(c.Command, command) && slices.Equal(c.Args, args) {
		c.Command, c.Args = nil, nil
	}
	if pOld.TLSEnabled() {
		names := podNameEnv()
		c.Env = without(c.Env, func(e corev1.EnvVar) bool {
			return slices.ContainsFunc(names, func(n corev1.EnvVar) bool { return equality.Semantic.DeepEqual(e, n) })
		})
	}
	ports := []corev1.ContainerPort{
		{Name: ClientPortName, ContainerPort: int32(pOld.Valkey.Port), Protocol: corev1.ProtocolTCP},
		{Name: BusPortName, ContainerPort: int32(pOld.Valkey.Port + BusPortOffset), Protocol: corev1.ProtocolTCP},
	}
	c.Ports = without(c.Ports, func(p corev1.ContainerPort) bool { return slices.Contains(ports, p) })

	if equality.Semantic.DeepEqual(c.LivenessProbe, livenessProbe(pOld)) {
		c.LivenessProbe = nil
	}
	if equality.Semantic.DeepEqual(c.ReadinessProbe, clusterReadinessProbe(pOld)) {
		c.ReadinessProbe = nil
	}
	if pOld.StartupProbe.Enabled && equality.Semantic.DeepEqual(c.StartupProbe, startupProbe(pOld)) {
		c.StartupProbe = nil
	}
	if c.Lifecycle != nil && equality.Semantic.DeepEqual(c.Lifecycle.PreStop, handoverHook(pOld, old.Spec.Template.Spec.TerminationGracePeriodSeconds)) {
		c.Lifecycle.PreStop = nil
	}

	var mounts []corev1.VolumeMount
	if pOld.TLSEnabled() {
		mounts = append(mounts, tlsMount)
	}
	if pOld.Auth.Enabled {
		mounts = append(mounts, authMount)
	}
	c.VolumeMounts = without(c.VolumeMounts, func(m corev1.VolumeMount) bool {
		return slices.ContainsFunc(mounts, func(n corev1.VolumeMount) bool { return equality.Semantic.DeepEqual(m, n) })
	})

	if q, ok := c.Resources.Requests[corev1.ResourceCPU]; ok && pOld.Valkey.CPURequest != "" && q.Cmp(resource.MustParse(pOld.Valkey.CPURequest)) == 0 {
		delete(c.Resources.Requests, corev1.ResourceCPU)
	}
}

// sameContainer reports whether a stored container is the injected one: equal
// once the fields the API server defaults on every container (which Harden does
// not set) are taken from the stored one.
func sameContainer(injected, stored corev1.Container) bool {
	if injected.TerminationMessagePath == "" {
		injected.TerminationMessagePath = stored.TerminationMessagePath
	}
	if injected.TerminationMessagePolicy == "" {
		injected.TerminationMessagePolicy = stored.TerminationMessagePolicy
	}
	if injected.ImagePullPolicy == "" {
		injected.ImagePullPolicy = stored.ImagePullPolicy
	}
	return equality.Semantic.DeepEqual(injected, stored)
}

// without is slices.DeleteFunc, but nil when nothing is left, as the API server
// stores an empty list (and as a CREATE, which adds nothing, leaves it).
func without[T any](s []T, del func(T) bool) []T {
	s = slices.DeleteFunc(s, del)
	if len(s) == 0 {
		return nil
	}
	return s
}

// Rehardened is sts as admission would store it at an UPDATE of its pod
// template under p, its effective policy over base: what the template holds as
// injected for the settings it was hardened with (StoredPolicy) injected again
// for p's, and the record of p's. The config checksum stays as stored: which
// settings the pods run with is the companion controller's to say. keys are the
// template keys whose values changed and reach a stored template (not those
// fixed at CREATE, nor image.valkey), sorted, when the template changes; none
// when it stays (the same settings, an object with no record of its own, or
// values the user set). The companion controller rolls such a template in its
// turn of the paced rollout, and the plan reports it.
func Rehardened(sts *appsv1.StatefulSet, base config.Policy, p *config.Policy) (next *appsv1.StatefulSet, keys []string) {
	next = sts.DeepCopy()
	pOld, ok := StoredPolicy(sts, base)
	if !ok || !IsLabeled(sts) || hardenedWith(&pOld) == hardenedWith(p) {
		return next, nil
	}
	disown(next, sts, &pOld)
	hardenPodTemplate(next, p)
	if stored, ok := sts.Spec.Template.Annotations[ChecksumAnnotation]; ok {
		next.Spec.Template.Annotations[ChecksumAnnotation] = stored
	} else {
		delete(next.Spec.Template.Annotations, ChecksumAnnotation)
	}
	if equality.Semantic.DeepEqual(next.Spec.Template, sts.Spec.Template) {
		return sts.DeepCopy(), nil
	}
	if next.Annotations == nil {
		next.Annotations = map[string]string{}
	}
	next.Annotations[config.HardenedWithAnnotation] = hardenedWith(p)
	for _, k := range templateKeys {
		if slices.Contains(FixedAtCreate, k) || k == "image.valkey" {
			continue // left as stored (disown)
		}
		before, _ := pOld.Get(k)
		if after, _ := p.Get(k); before != after {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return next, keys
}
