package defaults

import (
	"maps"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/valkey-webhook/valkey-webhook/config"
)

// AnnotationsPath is where the per-object overrides live, for error paths.
var AnnotationsPath = field.NewPath("metadata", "annotations")

// HardenWithOverrides is the whole admission mutation of a labeled StatefulSet:
// the object's valkey-webhook.io/ annotations applied over base, then Harden. When
// the annotations are invalid it returns their errors and changes nothing.
//
// On UPDATE (old set) it changes nothing and refuses nothing when the object is
// being deleted, or when the update leaves the pod template and the overrides as
// stored (Harden would change nothing): such an update (labels, finalizers, a
// scale) is never refused for what the stored object already carries. Unknown
// valkey-webhook.io/ keys that the stored object already had are ignored.
//
// Otherwise, on UPDATE, what the stored template still holds as it was injected
// for its settings is injected again for the new ones (disown), and the settings
// are recorded in config.HardenedWithAnnotation for the next UPDATE.
func HardenWithOverrides(sts, old *appsv1.StatefulSet, base config.Policy) field.ErrorList {
	annotations := sts.Annotations
	if old != nil {
		if sts.DeletionTimestamp != nil {
			return nil
		}
		if templateSettled(old, sts) {
			keepHardenedWith(sts, old)
			return nil
		}
		annotations, _ = config.WithoutInheritedUnknown(sts.Annotations, old.Annotations)
	}
	p, errs := config.Effective(base, annotations, AnnotationsPath)
	if len(errs) > 0 {
		return errs
	}
	if old != nil && IsLabeled(old) {
		if pOld, ok := StoredPolicy(old, base); ok && hardenedWith(&pOld) != hardenedWith(&p) {
			disown(sts, old, &pOld)
		}
	}
	asked := sts.Spec.Template.Annotations[ChecksumAnnotation]
	Harden(sts, old, &p)
	if old != nil {
		keepChecksum(sts, old, asked, base, &p)
	}
	if sts.Annotations == nil {
		sts.Annotations = map[string]string{}
	}
	sts.Annotations[config.HardenedWithAnnotation] = hardenedWith(&p)
	return nil
}

// keepHardenedWith gives an UPDATE that leaves the template as stored the
// stored record of its settings, should the update have dropped or changed it
// (a kubectl replace of the user's own manifest): the record is valkey-webhook's.
func keepHardenedWith(sts, old *appsv1.StatefulSet) {
	stored, ok := old.Annotations[config.HardenedWithAnnotation]
	if !ok || sts.Annotations[config.HardenedWithAnnotation] == stored {
		return
	}
	if sts.Annotations == nil {
		sts.Annotations = map[string]string{}
	}
	sts.Annotations[config.HardenedWithAnnotation] = stored
}

// keepChecksum leaves an UPDATE's config checksum as stored when the update does
// not change what Valkey reads, compared under the same base policy: the
// checksum records what the pods were last rolled for, in whichever form the
// release that wrote it used (defaults.LegacyChecksum), and only a change of
// settings may roll them. A change of the base policy itself is the companion
// controller's to roll: its patch, which asks (asked: the checksum the update
// carried) for the checksum of the settings rendered now, stands, unless the
// stored one is already theirs in the earlier form. An update that changes the
// template otherwise rolls its pods anyway: the checksum is kept only if it is
// the new settings' (in the earlier form).
func keepChecksum(sts, old *appsv1.StatefulSet, asked string, base config.Policy, p *config.Policy) {
	stored, ok := old.Spec.Template.Annotations[ChecksumAnnotation]
	if !ok || sts.Spec.Template.Annotations == nil {
		return
	}
	if conf := ValkeyConf(sts, p); asked != stored && asked == Checksum(conf) && stored != LegacyChecksum(conf) {
		return
	}
	if !sameApartFromChecksum(old.Spec.Template, sts.Spec.Template) {
		if stored == LegacyChecksum(ValkeyConf(sts, p)) {
			sts.Spec.Template.Annotations[ChecksumAnnotation] = stored
		}
		return
	}
	oldAnnotations, _ := config.WithoutInheritedUnknown(old.Annotations, old.Annotations)
	oldP, errs := config.Effective(base, oldAnnotations, AnnotationsPath)
	if len(errs) == 0 && SameSettings(ValkeyConf(old, &oldP), ValkeyConf(sts, p)) {
		sts.Spec.Template.Annotations[ChecksumAnnotation] = stored
	}
}

func sameApartFromChecksum(a, b corev1.PodTemplateSpec) bool {
	a, b = *a.DeepCopy(), *b.DeepCopy()
	delete(a.Annotations, ChecksumAnnotation)
	delete(b.Annotations, ChecksumAnnotation)
	return equality.Semantic.DeepEqual(a, b)
}

// Harden injects everything a Valkey cluster StatefulSet needs, in place. p is the
// effective policy of this object, as config.Effective returns it (so it passed
// Policy.Validate). old is the stored object on UPDATE and nil on CREATE.
//
// User-set values win; Harden only fills what is missing. It is idempotent:
// Harden(Harden(x)) == Harden(x). On UPDATE it never touches a field the API forbids
// changing (selector, serviceName, volumeClaimTemplates, podManagementPolicy), and
// it leaves the pod template alone when neither the template nor the object's
// valkey-webhook.io/ annotations changed, so that no update rolls the pods without a
// real change.
func Harden(sts, old *appsv1.StatefulSet, p *config.Policy) {
	if old == nil {
		hardenCreateOnly(sts, p)
	} else if templateSettled(old, sts) {
		return
	}
	hardenPodTemplate(sts, p)
}

// templateSettled reports whether an UPDATE leaves the pod template as it was: the
// old object was already hardened, and neither the template nor the overrides changed.
func templateSettled(old, sts *appsv1.StatefulSet) bool {
	return IsLabeled(old) &&
		maps.Equal(config.Overrides(old.Annotations), config.Overrides(sts.Annotations)) &&
		equality.Semantic.DeepEqual(old.Spec.Template, sts.Spec.Template)
}

// hardenCreateOnly sets the fields that are immutable after CREATE.
func hardenCreateOnly(sts *appsv1.StatefulSet, p *config.Policy) {
	// OrderedReady is also the API server's default, applied before admission, so it
	// cannot be told apart from a user's choice. A cluster needs all its pods up
	// together to form and to heal after a full restart.
	if sts.Spec.PodManagementPolicy == "" || sts.Spec.PodManagementPolicy == appsv1.OrderedReadyPodManagement {
		sts.Spec.PodManagementPolicy = appsv1.ParallelPodManagement
	}
	if sts.Spec.ServiceName == "" {
		sts.Spec.ServiceName = HeadlessServiceName(sts)
	}
	if !hasClaimTemplate(sts, DataVolume) && !HasVolume(&sts.Spec.Template.Spec, DataVolume) {
		sts.Spec.VolumeClaimTemplates = append(sts.Spec.VolumeClaimTemplates, dataClaimTemplate(p))
	}
}

func dataClaimTemplate(p *config.Policy) corev1.PersistentVolumeClaim {
	pvc := corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: DataVolume},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(p.Persistence.Size)},
			},
		},
	}
	if p.Persistence.StorageClassName != "" {
		pvc.Spec.StorageClassName = ptr.To(p.Persistence.StorageClassName)
	}
	return pvc
}

func hardenPodTemplate(sts *appsv1.StatefulSet, p *config.Policy) {
	tpl := &sts.Spec.Template
	spec := &tpl.Spec
	selector := podSelector(sts)

	// The pods carry their StatefulSet's name, so that serve caches only the pods
	// of labeled StatefulSets (controller.CacheOptions).
	if _, ok := tpl.Labels[StatefulSetNameLabel]; !ok {
		if tpl.Labels == nil {
			tpl.Labels = map[string]string{}
		}
		tpl.Labels[StatefulSetNameLabel] = sts.Name
	}

	if spec.AutomountServiceAccountToken == nil {
		spec.AutomountServiceAccountToken = ptr.To(false)
	}
	hardenPodSecurityContext(spec, p)
	if p.TopologySpreadConstraints.Enabled {
		addTopologySpread(spec, p, selector)
	}
	addHostAntiAffinity(spec, selector)

	valkey := FindContainer(spec.Containers, ValkeyContainer)
	if valkey == nil {
		spec.Containers = append([]corev1.Container{{Name: ValkeyContainer, Image: p.Image.Valkey}}, spec.Containers...)
		valkey = &spec.Containers[0]
	}
	hardenValkeyContainer(sts, valkey, p)
	if p.Metrics.Enabled && FindContainer(spec.Containers, MetricsContainer) == nil {
		spec.Containers = append(spec.Containers, metricsContainer(sts, p))
	}
	for i := range spec.InitContainers {
		hardenContainerSecurityContext(&spec.InitContainers[i])
	}
	for i := range spec.Containers {
		hardenContainerSecurityContext(&spec.Containers[i])
	}
	addVolumes(sts, p)

	if tpl.Annotations == nil {
		tpl.Annotations = map[string]string{}
	}
	tpl.Annotations[ChecksumAnnotation] = Checksum(ValkeyConf(sts, p))
}

// podSelector is the label selector that matches this StatefulSet's pods, for
// spreading and anti-affinity.
func podSelector(sts *appsv1.StatefulSet) *metav1.LabelSelector {
	if sts.Spec.Selector != nil && len(sts.Spec.Selector.MatchLabels) > 0 {
		return &metav1.LabelSelector{MatchLabels: maps.Clone(sts.Spec.Selector.MatchLabels)}
	}
	// Without the label valkey-webhook adds: pods made before it are selected too.
	own := maps.Clone(sts.Spec.Template.Labels)
	delete(own, StatefulSetNameLabel)
	return &metav1.LabelSelector{MatchLabels: own}
}

func hardenPodSecurityContext(spec *corev1.PodSpec, p *config.Policy) {
	if spec.SecurityContext == nil {
		spec.SecurityContext = &corev1.PodSecurityContext{}
	}
	sc := spec.SecurityContext
	if sc.RunAsNonRoot == nil {
		sc.RunAsNonRoot = ptr.To(true)
	}
	if sc.RunAsUser == nil {
		sc.RunAsUser = ptr.To(int64(p.Security.RunAsUser))
	}
	if sc.FSGroup == nil {
		sc.FSGroup = ptr.To(int64(p.Security.FSGroup))
	}
	if sc.RunAsGroup == nil {
		sc.RunAsGroup = ptr.To(*sc.FSGroup)
	}
	if sc.FSGroupChangePolicy == nil {
		// A large data volume is not re-chowned at every start.
		sc.FSGroupChangePolicy = ptr.To(corev1.FSGroupChangeOnRootMismatch)
	}
	if sc.SeccompProfile == nil {
		sc.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
	}
}

func hardenContainerSecurityContext(c *corev1.Container) {
	if c.SecurityContext == nil {
		c.SecurityContext = &corev1.SecurityContext{}
	}
	sc := c.SecurityContext
	// The API server refuses privileged with allowPrivilegeEscalation false; leave
	// it unset there so that validation explains why privileged is denied.
	if sc.AllowPrivilegeEscalation == nil && !ptr.Deref(sc.Privileged, false) {
		sc.AllowPrivilegeEscalation = ptr.To(false)
	}
	if sc.Capabilities == nil {
		sc.Capabilities = &corev1.Capabilities{}
	}
	if len(sc.Capabilities.Drop) == 0 {
		sc.Capabilities.Drop = []corev1.Capability{"ALL"}
	}
	if sc.ReadOnlyRootFilesystem == nil {
		sc.ReadOnlyRootFilesystem = ptr.To(true)
	}
	if sc.RunAsNonRoot == nil {
		sc.RunAsNonRoot = ptr.To(true)
	}
}

func addTopologySpread(spec *corev1.PodSpec, p *config.Policy, selector *metav1.LabelSelector) {
	key := p.TopologySpreadConstraints.TopologyKey
	for _, c := range spec.TopologySpreadConstraints {
		if c.TopologyKey == key {
			return
		}
	}
	spec.TopologySpreadConstraints = append(spec.TopologySpreadConstraints, topologySpread(p, selector))
}

func topologySpread(p *config.Policy, selector *metav1.LabelSelector) corev1.TopologySpreadConstraint {
	return corev1.TopologySpreadConstraint{
		MaxSkew:           int32(p.TopologySpreadConstraints.MaxSkew),
		TopologyKey:       p.TopologySpreadConstraints.TopologyKey,
		WhenUnsatisfiable: corev1.UnsatisfiableConstraintAction(p.TopologySpreadConstraints.WhenUnsatisfiable),
		LabelSelector:     selector,
	}
}

// addHostAntiAffinity prefers one pod per node, unless the user set pod
// anti-affinity of their own.
func addHostAntiAffinity(spec *corev1.PodSpec, selector *metav1.LabelSelector) {
	if spec.Affinity == nil {
		spec.Affinity = &corev1.Affinity{}
	}
	if spec.Affinity.PodAntiAffinity != nil {
		return
	}
	spec.Affinity.PodAntiAffinity = &corev1.PodAntiAffinity{
		PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
			Weight: 100,
			PodAffinityTerm: corev1.PodAffinityTerm{
				TopologyKey:   corev1.LabelHostname,
				LabelSelector: selector.DeepCopy(),
			},
		}},
	}
}

func hasClaimTemplate(sts *appsv1.StatefulSet, name string) bool {
	for _, t := range sts.Spec.VolumeClaimTemplates {
		if t.Name == name {
			return true
		}
	}
	return false
}

// HasVolume reports whether a pod spec has a volume of that name.
func HasVolume(spec *corev1.PodSpec, name string) bool {
	for _, v := range spec.Volumes {
		if v.Name == name {
			return true
		}
	}
	return false
}
