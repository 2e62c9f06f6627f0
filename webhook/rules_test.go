package webhook

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// ignoreDetail compares field errors by type, path and value, not by message.
// ignoreDetail compares errors by type, field and value: the texts are checked
// where they are the point, the rules (Origin) by TestRuleOrigins.
var ignoreDetail = cmpopts.IgnoreFields(field.Error{}, "Detail", "Origin")

// stsWrapper builds test StatefulSets fluently: makeSTS("cache").Replicas(7).Obj().
type stsWrapper struct{ appsv1.StatefulSet }

// makeSTS returns a safe labeled StatefulSet: 6 replicas, a valkey container with a
// pinned image and a 1Gi memory limit, and its data directory on a
// volumeClaimTemplate named data.
func makeSTS(name string) *stsWrapper {
	return &stsWrapper{appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: "default",
			Labels:    map[string]string{defaults.ClusterLabel: defaults.ClusterLabelEnabled},
		},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To[int32](6),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name:  defaults.ValkeyContainer,
						Image: "docker.io/valkey/valkey:8.0.7",
						Resources: corev1.ResourceRequirements{
							Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: defaults.DataVolume, MountPath: defaults.DataDir}},
					}},
				},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: defaults.DataVolume},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					Resources: corev1.VolumeResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("8Gi")},
					},
				},
			}},
		},
	}}
}

func (w *stsWrapper) Obj() *appsv1.StatefulSet { return w.DeepCopy() }

func (w *stsWrapper) Replicas(n int32) *stsWrapper {
	w.Spec.Replicas = ptr.To(n)
	return w
}

func (w *stsWrapper) NoReplicas() *stsWrapper {
	w.Spec.Replicas = nil
	return w
}

func (w *stsWrapper) Label(key, value string) *stsWrapper {
	w.Labels[key] = value
	return w
}

func (w *stsWrapper) Unlabeled() *stsWrapper {
	delete(w.Labels, defaults.ClusterLabel)
	return w
}

func (w *stsWrapper) Annotation(key, value string) *stsWrapper {
	if w.Annotations == nil {
		w.Annotations = map[string]string{}
	}
	w.Annotations[key] = value
	return w
}

func (w *stsWrapper) NoClaimTemplates() *stsWrapper {
	w.Spec.VolumeClaimTemplates = nil
	return w
}

func (w *stsWrapper) Volume(v corev1.Volume) *stsWrapper {
	w.Spec.Template.Spec.Volumes = append(w.Spec.Template.Spec.Volumes, v)
	return w
}

// PodSpec edits the pod spec for the settings without a method of their own.
func (w *stsWrapper) PodSpec(f func(spec *corev1.PodSpec)) *stsWrapper {
	f(&w.Spec.Template.Spec)
	return w
}

func (w *stsWrapper) PodSecurityContext(sc *corev1.PodSecurityContext) *stsWrapper {
	w.Spec.Template.Spec.SecurityContext = sc
	return w
}

// Container appends a container after the valkey one.
func (w *stsWrapper) Container(c corev1.Container) *stsWrapper {
	w.Spec.Template.Spec.Containers = append(w.Spec.Template.Spec.Containers, c)
	return w
}

func (w *stsWrapper) InitContainer(c corev1.Container) *stsWrapper {
	w.Spec.Template.Spec.InitContainers = append(w.Spec.Template.Spec.InitContainers, c)
	return w
}

// valkey returns the first container, the valkey one in makeSTS.
func (w *stsWrapper) valkey() *corev1.Container { return &w.Spec.Template.Spec.Containers[0] }

func (w *stsWrapper) Image(image string) *stsWrapper {
	w.valkey().Image = image
	return w
}

func (w *stsWrapper) ContainerName(name string) *stsWrapper {
	w.valkey().Name = name
	return w
}

func (w *stsWrapper) SecurityContext(sc *corev1.SecurityContext) *stsWrapper {
	w.valkey().SecurityContext = sc
	return w
}

func (w *stsWrapper) Env(env ...corev1.EnvVar) *stsWrapper {
	w.valkey().Env = append(w.valkey().Env, env...)
	return w
}

func (w *stsWrapper) Command(command ...string) *stsWrapper {
	w.valkey().Command = command
	return w
}

func (w *stsWrapper) ReadinessExec(command ...string) *stsWrapper {
	w.valkey().ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: command}}}
	return w
}

func (w *stsWrapper) Args(args ...string) *stsWrapper {
	w.valkey().Args = args
	return w
}

func (w *stsWrapper) MemoryLimit(q string) *stsWrapper {
	w.valkey().Resources.Limits[corev1.ResourceMemory] = resource.MustParse(q)
	return w
}

func (w *stsWrapper) NoMemoryLimit() *stsWrapper {
	w.valkey().Resources.Limits = nil
	return w
}

func (w *stsWrapper) Mount(name, path string) *stsWrapper {
	w.valkey().VolumeMounts = []corev1.VolumeMount{{Name: name, MountPath: path}}
	return w
}

func (w *stsWrapper) ClaimTemplate(name string) *stsWrapper {
	w.Spec.VolumeClaimTemplates = []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: name}}}
	return w
}

func (w *stsWrapper) Ports(ports ...corev1.ContainerPort) *stsWrapper {
	w.valkey().Ports = ports
	return w
}

func (w *stsWrapper) MaxUnavailable(v intstr.IntOrString) *stsWrapper {
	w.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{
		Type:          appsv1.RollingUpdateStatefulSetStrategyType,
		RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{MaxUnavailable: &v},
	}
	return w
}

func (w *stsWrapper) OnDelete() *stsWrapper {
	w.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
	return w
}

// Field paths and warnings the cases below expect.
var (
	podSpecPath    = field.NewPath("spec", "template", "spec")
	containersPath = podSpecPath.Child("containers")
	initPath       = podSpecPath.Child("initContainers")
)

func annotationPath(key string) *field.Path {
	return field.NewPath("metadata", "annotations").Key(config.AnnotationPrefix + key)
}

func warning(at *field.Path, format string, args ...any) string {
	return at.String() + ": " + fmt.Sprintf(format, args...)
}

func secretEnv(name string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: "cache-auth"},
		Key:                  "password",
	}}}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name         string
		sts          *appsv1.StatefulSet
		policy       func(p *config.Policy)
		wantErr      field.ErrorList
		wantWarnings []string
	}{
		{
			name: "safe",
			sts:  makeSTS("cache").Obj(),
		},
		{
			name: "safe, 8 replicas",
			sts:  makeSTS("cache").Replicas(8).Obj(),
		},
		{
			name: "unlabeled and unsafe",
			sts: makeSTS("cache").Unlabeled().Replicas(1).NoClaimTemplates().
				SecurityContext(&corev1.SecurityContext{Privileged: ptr.To(true)}).Obj(),
		},
		{
			name: "label not enabled",
			sts:  makeSTS("cache").Label(defaults.ClusterLabel, "disabled").Replicas(1).Obj(),
		},

		// Replicas.
		{
			name:    "replicas 4",
			sts:     makeSTS("cache").Replicas(4).Obj(),
			wantErr: field.ErrorList{field.Invalid(field.NewPath("spec", "replicas"), int32(4), "")},
		},
		{
			name:         "replicas nil is 1",
			sts:          makeSTS("cache").NoReplicas().Obj(),
			wantErr:      field.ErrorList{field.Invalid(field.NewPath("spec", "replicas"), int32(1), "")},
			wantWarnings: []string{warning(field.NewPath("spec", "replicas"), warnShardSize, 1, 2, 1)},
		},
		{
			name:         "replicas 7 is enough but not whole shards",
			sts:          makeSTS("cache").Replicas(7).Obj(),
			wantWarnings: []string{warning(field.NewPath("spec", "replicas"), warnShardSize, 7, 2, 1)},
		},
		{
			name: "replicas 6 with 2 replicas per master",
			sts:  makeSTS("cache").Annotation("valkey-webhook.io/cluster.replicasPerMaster", "2").Obj(),
			wantErr: field.ErrorList{
				field.Invalid(field.NewPath("spec", "replicas"), int32(6), ""),
			},
		},
		{
			name:         "replicas 10 with 2 replicas per master",
			sts:          makeSTS("cache").Replicas(10).Annotation("valkey-webhook.io/cluster.replicasPerMaster", "2").Obj(),
			wantWarnings: []string{warning(field.NewPath("spec", "replicas"), warnShardSize, 10, 3, 2)},
		},
		{
			name:    "replicas 6 with a policy of 4 masters",
			sts:     makeSTS("cache").Obj(),
			policy:  func(p *config.Policy) { p.Cluster.MinMasters = 4 },
			wantErr: field.ErrorList{field.Invalid(field.NewPath("spec", "replicas"), int32(6), "")},
		},

		// Data volume.
		{
			name: "emptyDir data volume",
			sts: makeSTS("cache").NoClaimTemplates().
				Volume(corev1.Volume{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}}).
				Volume(corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}).Obj(),
			wantErr: field.ErrorList{field.Forbidden(podSpecPath.Child("volumes").Index(1), "")},
		},
		{
			name: "emptyDir data volume allowed by annotation",
			sts: makeSTS("cache").NoClaimTemplates().
				Annotation("valkey-webhook.io/persistence.allowEphemeral", "true").
				Volume(corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}).Obj(),
		},
		{
			name: "emptyDir data volume allowed by policy",
			sts: makeSTS("cache").NoClaimTemplates().
				Volume(corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}).Obj(),
			policy: func(p *config.Policy) { p.Persistence.AllowEphemeral = true },
		},
		{
			name: "annotation false overrides a policy that allows ephemeral data",
			sts: makeSTS("cache").NoClaimTemplates().
				Annotation("valkey-webhook.io/persistence.allowEphemeral", "false").
				Volume(corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}).Obj(),
			policy:  func(p *config.Policy) { p.Persistence.AllowEphemeral = true },
			wantErr: field.ErrorList{field.Forbidden(podSpecPath.Child("volumes").Index(0), "")},
		},
		{
			name: "emptyDir at /data under another name",
			sts: makeSTS("cache").Mount("valkey-data", "/data").
				Volume(corev1.Volume{Name: "valkey-data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}).Obj(),
			wantErr: field.ErrorList{field.Forbidden(podSpecPath.Child("volumes").Index(0), "")},
		},
		{
			name: "claim template named after the mount at /data",
			sts:  makeSTS("cache").Mount("valkey-data", "/data").ClaimTemplate("valkey-data").Obj(),
		},
		{
			name: "PersistentVolumeClaim volume",
			sts: makeSTS("cache").NoClaimTemplates().
				Volume(corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{
					PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "cache-data"},
				}}).Obj(),
		},
		{
			name:    "no claim template and no volume",
			sts:     makeSTS("cache").NoClaimTemplates().Obj(),
			wantErr: field.ErrorList{field.Required(field.NewPath("spec", "volumeClaimTemplates"), "")},
		},

		// Pod security.
		{
			name: "host namespaces",
			sts: makeSTS("cache").PodSpec(func(s *corev1.PodSpec) {
				s.HostNetwork = true
				s.HostPID = true
				s.HostIPC = true
			}).Obj(),
			wantErr: field.ErrorList{
				field.Forbidden(podSpecPath.Child("hostNetwork"), ""),
				field.Forbidden(podSpecPath.Child("hostPID"), ""),
				field.Forbidden(podSpecPath.Child("hostIPC"), ""),
			},
		},
		{
			name:    "hostNetwork",
			sts:     makeSTS("cache").PodSpec(func(s *corev1.PodSpec) { s.HostNetwork = true }).Obj(),
			wantErr: field.ErrorList{field.Forbidden(podSpecPath.Child("hostNetwork"), "")},
		},
		{
			name:    "pod runAsUser 0",
			sts:     makeSTS("cache").PodSecurityContext(&corev1.PodSecurityContext{RunAsUser: ptr.To[int64](0)}).Obj(),
			wantErr: field.ErrorList{field.Invalid(podSpecPath.Child("securityContext", "runAsUser"), 0, "")},
		},
		{
			name:    "pod runAsNonRoot false",
			sts:     makeSTS("cache").PodSecurityContext(&corev1.PodSecurityContext{RunAsNonRoot: ptr.To(false)}).Obj(),
			wantErr: field.ErrorList{field.Invalid(podSpecPath.Child("securityContext", "runAsNonRoot"), false, "")},
		},
		{
			name: "pod non-root",
			sts: makeSTS("cache").PodSecurityContext(&corev1.PodSecurityContext{
				RunAsUser: ptr.To[int64](999), RunAsNonRoot: ptr.To(true),
			}).Obj(),
		},
		{
			name:    "container privileged",
			sts:     makeSTS("cache").SecurityContext(&corev1.SecurityContext{Privileged: ptr.To(true)}).Obj(),
			wantErr: field.ErrorList{field.Forbidden(containersPath.Index(0).Child("securityContext", "privileged"), "")},
		},
		{
			name:    "container allowPrivilegeEscalation",
			sts:     makeSTS("cache").SecurityContext(&corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(true)}).Obj(),
			wantErr: field.ErrorList{field.Forbidden(containersPath.Index(0).Child("securityContext", "allowPrivilegeEscalation"), "")},
		},
		{
			name:    "container runAsUser 0",
			sts:     makeSTS("cache").SecurityContext(&corev1.SecurityContext{RunAsUser: ptr.To[int64](0)}).Obj(),
			wantErr: field.ErrorList{field.Invalid(containersPath.Index(0).Child("securityContext", "runAsUser"), 0, "")},
		},
		{
			name:    "container runAsNonRoot false",
			sts:     makeSTS("cache").SecurityContext(&corev1.SecurityContext{RunAsNonRoot: ptr.To(false)}).Obj(),
			wantErr: field.ErrorList{field.Invalid(containersPath.Index(0).Child("securityContext", "runAsNonRoot"), false, "")},
		},
		{
			name: "container capabilities.add",
			sts: makeSTS("cache").SecurityContext(&corev1.SecurityContext{
				Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}},
			}).Obj(),
			wantErr: field.ErrorList{field.Forbidden(containersPath.Index(0).Child("securityContext", "capabilities", "add"), "")},
		},
		{
			name: "container hardened",
			sts: makeSTS("cache").SecurityContext(&corev1.SecurityContext{
				Privileged:               ptr.To(false),
				AllowPrivilegeEscalation: ptr.To(false),
				RunAsUser:                ptr.To[int64](999),
				RunAsNonRoot:             ptr.To(true),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			}).Obj(),
		},
		{
			name: "every container rule at once, in a sidecar",
			sts: makeSTS("cache").Container(corev1.Container{
				Name:  "sidecar",
				Image: "busybox:1.36",
				SecurityContext: &corev1.SecurityContext{
					Privileged:               ptr.To(true),
					AllowPrivilegeEscalation: ptr.To(true),
					RunAsUser:                ptr.To[int64](0),
					RunAsNonRoot:             ptr.To(false),
					Capabilities:             &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}},
				},
			}).Obj(),
			wantErr: field.ErrorList{
				field.Forbidden(containersPath.Index(1).Child("securityContext", "privileged"), ""),
				field.Forbidden(containersPath.Index(1).Child("securityContext", "allowPrivilegeEscalation"), ""),
				field.Invalid(containersPath.Index(1).Child("securityContext", "runAsUser"), 0, ""),
				field.Invalid(containersPath.Index(1).Child("securityContext", "runAsNonRoot"), false, ""),
				field.Forbidden(containersPath.Index(1).Child("securityContext", "capabilities", "add"), ""),
			},
		},
		{
			name: "initContainer privileged and root",
			sts: makeSTS("cache").InitContainer(corev1.Container{
				Name:  "sysctl",
				Image: "busybox:1.36",
				SecurityContext: &corev1.SecurityContext{
					Privileged: ptr.To(true),
					RunAsUser:  ptr.To[int64](0),
				},
			}).Obj(),
			wantErr: field.ErrorList{
				field.Forbidden(initPath.Index(0).Child("securityContext", "privileged"), ""),
				field.Invalid(initPath.Index(0).Child("securityContext", "runAsUser"), 0, ""),
			},
		},
		{
			name: "initContainer capabilities.add and escalation",
			sts: makeSTS("cache").InitContainer(corev1.Container{
				Name:  "sysctl",
				Image: "busybox:1.36",
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(true),
					Capabilities:             &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}},
				},
			}).Obj(),
			wantErr: field.ErrorList{
				field.Forbidden(initPath.Index(0).Child("securityContext", "allowPrivilegeEscalation"), ""),
				field.Forbidden(initPath.Index(0).Child("securityContext", "capabilities", "add"), ""),
			},
		},

		// Maxmemory.
		{
			name:    "maxmemory equal to the limit",
			sts:     makeSTS("cache").Annotation("valkey-webhook.io/valkey.maxmemory", "1Gi").Obj(),
			wantErr: field.ErrorList{field.Invalid(annotationPath("valkey.maxmemory"), "1Gi", "")},
		},
		{
			name:    "maxmemory above the limit",
			sts:     makeSTS("cache").Annotation("valkey-webhook.io/valkey.maxmemory", "2G").Obj(),
			wantErr: field.ErrorList{field.Invalid(annotationPath("valkey.maxmemory"), "2G", "")},
		},
		{
			name: "maxmemory below the limit",
			sts:  makeSTS("cache").Annotation("valkey-webhook.io/valkey.maxmemory", "512Mi").Obj(),
		},
		{
			name: "maxmemory without a limit",
			sts:  makeSTS("cache").NoMemoryLimit().Annotation("valkey-webhook.io/valkey.maxmemory", "512Mi").Obj(),
		},
		{
			name:   "policy maxmemory equal to the limit",
			sts:    makeSTS("cache").Obj(),
			policy: func(p *config.Policy) { p.Valkey.Maxmemory = "1Gi" },
			wantErr: field.ErrorList{field.Invalid(
				containersPath.Index(0).Child("resources", "limits").Key("memory"), int64(1<<30), "")},
		},
		{
			name:    "invalid maxmemory annotation",
			sts:     makeSTS("cache").Annotation("valkey-webhook.io/valkey.maxmemory", "lots").Obj(),
			wantErr: field.ErrorList{field.Invalid(annotationPath("valkey.maxmemory"), "lots", "")},
		},

		// Literal passwords.
		{
			name: "env password literal",
			sts: makeSTS("cache").Env(
				corev1.EnvVar{Name: "VALKEY_PORT", Value: "6379"},
				corev1.EnvVar{Name: "REDIS_PASSWORD", Value: "s3cret"},
			).Obj(),
			wantErr: field.ErrorList{field.Forbidden(containersPath.Index(0).Child("env").Index(1).Child("value"), "")},
		},
		{
			name: "env password names",
			sts: makeSTS("cache").Env(
				corev1.EnvVar{Name: "VALKEY_PASSWD", Value: "s3cret"},
				corev1.EnvVar{Name: "requirepass", Value: "s3cret"},
				corev1.EnvVar{Name: "MASTERAUTH", Value: "s3cret"},
				corev1.EnvVar{Name: "REDISCLI_AUTH", Value: "s3cret"},
				corev1.EnvVar{Name: "AUTH", Value: "s3cret"},
				corev1.EnvVar{Name: "AUTHOR", Value: "me"},
				corev1.EnvVar{Name: "OAUTH_URL", Value: "https://example.com"},
			).Obj(),
			wantErr: field.ErrorList{
				field.Forbidden(containersPath.Index(0).Child("env").Index(0).Child("value"), ""),
				field.Forbidden(containersPath.Index(0).Child("env").Index(1).Child("value"), ""),
				field.Forbidden(containersPath.Index(0).Child("env").Index(2).Child("value"), ""),
				field.Forbidden(containersPath.Index(0).Child("env").Index(3).Child("value"), ""),
				field.Forbidden(containersPath.Index(0).Child("env").Index(4).Child("value"), ""),
			},
		},
		{
			name: "env password from a Secret",
			sts:  makeSTS("cache").Env(secretEnv("REDIS_PASSWORD"), secretEnv("VALKEY_PASSWORD")).Obj(),
		},
		{
			name: "env password literal in an initContainer",
			sts: makeSTS("cache").InitContainer(corev1.Container{
				Name:  "init",
				Image: "busybox:1.36",
				Env:   []corev1.EnvVar{{Name: "VALKEY_PASSWORD", Value: "s3cret"}},
			}).Obj(),
			wantErr: field.ErrorList{field.Forbidden(initPath.Index(0).Child("env").Index(0).Child("value"), "")},
		},
		{
			name:    "--requirepass argument",
			sts:     makeSTS("cache").Args("/etc/valkey/valkey.conf", "--requirepass", "s3cret").Obj(),
			wantErr: field.ErrorList{field.Forbidden(containersPath.Index(0).Child("args").Index(1), "")},
		},
		{
			name:    "--masterauth= argument",
			sts:     makeSTS("cache").Args("--masterauth=s3cret").Obj(),
			wantErr: field.ErrorList{field.Forbidden(containersPath.Index(0).Child("args").Index(0), "")},
		},
		{
			name:    "--requirepass in a shell command",
			sts:     makeSTS("cache").Command("sh", "-c", "exec valkey-server --requirepass s3cret --port 6379").Obj(),
			wantErr: field.ErrorList{field.Forbidden(containersPath.Index(0).Child("command").Index(2), "")},
		},
		{
			name:    "valkey-cli -a in a readiness probe",
			sts:     makeSTS("cache").ReadinessExec("valkey-cli", "-a", "s3cret", "ping").Obj(),
			wantErr: field.ErrorList{field.Forbidden(containersPath.Index(0).Child("readinessProbe", "exec", "command").Index(1), "")},
		},
		{
			name: "-a in a command that is not valkey-cli",
			sts:  makeSTS("cache").Command("ls", "-a").Obj(),
		},
		{
			name: "a feature switch and a file path are not passwords",
			sts: makeSTS("cache").Env(
				corev1.EnvVar{Name: "ALLOW_EMPTY_PASSWORD", Value: "no"},
				corev1.EnvVar{Name: "VALKEY_PASSWORD_FILE", Value: "/etc/valkey/auth/password"},
			).Obj(),
		},
		{
			name: "arguments without a password",
			sts:  makeSTS("cache").Command("valkey-server").Args("/etc/valkey/valkey.conf", "--requirepass-file-is-not-a-flag").Obj(),
		},

		// Rolling update.
		{
			name:    "maxUnavailable 2",
			sts:     makeSTS("cache").MaxUnavailable(intstr.FromInt32(2)).Obj(),
			wantErr: field.ErrorList{field.Invalid(field.NewPath("spec", "updateStrategy", "rollingUpdate", "maxUnavailable"), "2", "")},
		},
		{
			name:    "maxUnavailable 50%",
			sts:     makeSTS("cache").MaxUnavailable(intstr.FromString("50%")).Obj(),
			wantErr: field.ErrorList{field.Invalid(field.NewPath("spec", "updateStrategy", "rollingUpdate", "maxUnavailable"), "50%", "")},
		},
		{
			name:    "maxUnavailable not a percentage",
			sts:     makeSTS("cache").MaxUnavailable(intstr.FromString("half")).Obj(),
			wantErr: field.ErrorList{field.Invalid(field.NewPath("spec", "updateStrategy", "rollingUpdate", "maxUnavailable"), "half", "")},
		},
		{
			name: "maxUnavailable 1",
			sts:  makeSTS("cache").MaxUnavailable(intstr.FromInt32(1)).Obj(),
		},
		{
			name: "maxUnavailable 10% of 6 rounds up to 1",
			sts:  makeSTS("cache").MaxUnavailable(intstr.FromString("10%")).Obj(),
		},

		// Port names.
		{
			name: "the client and bus ports by their names",
			sts:  makeSTS("cache").Ports(corev1.ContainerPort{Name: "valkey", ContainerPort: 6379}, corev1.ContainerPort{Name: "cluster-bus", ContainerPort: 16379}, corev1.ContainerPort{Name: "debug", ContainerPort: 9000}).Obj(),
		},
		{
			name:    "the client port under another name",
			sts:     makeSTS("cache").Ports(corev1.ContainerPort{Name: "redis", ContainerPort: 6379}).Obj(),
			wantErr: field.ErrorList{field.Invalid(containersPath.Index(0).Child("ports").Index(0).Child("name"), "redis", "")},
		},
		{
			name:    "the client port's name on another number",
			sts:     makeSTS("cache").Ports(corev1.ContainerPort{Name: "valkey", ContainerPort: 7000}).Obj(),
			wantErr: field.ErrorList{field.Invalid(containersPath.Index(0).Child("ports").Index(0).Child("containerPort"), int32(7000), "")},
		},
		{
			name:    "the bus port unnamed, the client port at valkey.port 7000",
			sts:     makeSTS("cache").Annotation("valkey-webhook.io/valkey.port", "7000").Ports(corev1.ContainerPort{Name: "valkey", ContainerPort: 7000}, corev1.ContainerPort{ContainerPort: 17000}).Obj(),
			wantErr: field.ErrorList{field.Invalid(containersPath.Index(0).Child("ports").Index(1).Child("name"), "", "")},
		},
		{
			name: "the exporter's port under another name",
			sts: makeSTS("cache").Container(corev1.Container{Name: defaults.MetricsContainer, Image: "exporter:1",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 9121}}}).Obj(),
			wantErr: field.ErrorList{field.Invalid(containersPath.Index(1).Child("ports").Index(0).Child("name"), "http", "")},
		},
		{
			name: "the exporter's port under another name, metrics off",
			sts: makeSTS("cache").Annotation("valkey-webhook.io/metrics.enabled", "false").Container(corev1.Container{Name: defaults.MetricsContainer, Image: "exporter:1",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 9121}}}).Obj(),
		},

		// Annotations.
		{
			name:    "unknown annotation",
			sts:     makeSTS("cache").Annotation("valkey-webhook.io/foo", "bar").Obj(),
			wantErr: field.ErrorList{field.NotSupported[string](annotationPath("foo"), "valkey-webhook.io/foo", nil)},
		},
		{
			name:    "invalid annotation value",
			sts:     makeSTS("cache").Annotation("valkey-webhook.io/podDisruptionBudget.maxUnavailable", "0").Obj(),
			wantErr: field.ErrorList{field.Invalid(annotationPath("podDisruptionBudget.maxUnavailable"), 0, "")},
		},
		{
			name: "an invalid annotation does not stop the other rules",
			sts:  makeSTS("cache").Replicas(4).Annotation("valkey-webhook.io/foo", "bar").Obj(),
			wantErr: field.ErrorList{
				field.NotSupported[string](annotationPath("foo"), "valkey-webhook.io/foo", nil),
				field.Invalid(field.NewPath("spec", "replicas"), int32(4), ""),
			},
		},

		// Warnings.
		{
			name:         "no memory limit",
			sts:          makeSTS("cache").NoMemoryLimit().Obj(),
			wantWarnings: []string{warning(containersPath.Index(0).Child("resources", "limits").Key("memory"), warnNoMemoryLimit)},
		},
		{
			name: "no memory limit, no valkey container",
			sts:  makeSTS("cache").ContainerName("server").NoMemoryLimit().Obj(),
		},
		{
			name:         ":latest image",
			sts:          makeSTS("cache").Image("docker.io/valkey/valkey:latest").Obj(),
			wantWarnings: []string{warning(containersPath.Index(0).Child("image"), warnMutableTag, "docker.io/valkey/valkey:latest")},
		},
		{
			name:         "untagged image",
			sts:          makeSTS("cache").Image("valkey/valkey").Obj(),
			wantWarnings: []string{warning(containersPath.Index(0).Child("image"), warnMutableTag, "valkey/valkey")},
		},
		{
			name: "digest image",
			sts:  makeSTS("cache").Image("valkey/valkey@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef").Obj(),
		},
		{
			name:         "untagged sidecar image",
			sts:          makeSTS("cache").Container(corev1.Container{Name: "exporter", Image: "oliver006/redis_exporter"}).Obj(),
			wantWarnings: []string{warning(containersPath.Index(1).Child("image"), warnMutableTag, "oliver006/redis_exporter")},
		},
		{
			name:         "OnDelete",
			sts:          makeSTS("cache").OnDelete().Obj(),
			wantWarnings: []string{warning(field.NewPath("spec", "updateStrategy", "type"), warnOnDelete)},
		},
		{
			name: "a grace period too short for a hand-over",
			sts: func() *appsv1.StatefulSet {
				sts := makeSTS("cache").Obj()
				sts.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To(int64(12))
				return sts
			}(),
			wantWarnings: []string{warning(field.NewPath("spec", "template", "spec", "terminationGracePeriodSeconds"), warnShortGrace, 12, 2, 10, 15)},
		},
		{
			name: "the default grace period",
			sts: func() *appsv1.StatefulSet {
				sts := makeSTS("cache").Obj()
				sts.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To(int64(30))
				return sts
			}(),
		},
		{
			name: "every warning, in order",
			sts:  makeSTS("cache").Replicas(7).NoMemoryLimit().Image("valkey/valkey:latest").OnDelete().Obj(),
			wantWarnings: []string{
				warning(containersPath.Index(0).Child("resources", "limits").Key("memory"), warnNoMemoryLimit),
				warning(containersPath.Index(0).Child("image"), warnMutableTag, "valkey/valkey:latest"),
				warning(field.NewPath("spec", "replicas"), warnShardSize, 7, 2, 1),
				warning(field.NewPath("spec", "updateStrategy", "type"), warnOnDelete),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			policy := config.Default()
			if tc.policy != nil {
				tc.policy(&policy)
			}
			before := tc.sts.DeepCopy()
			gotErr, gotWarnings := Validate(tc.sts, policy)
			if diff := cmp.Diff(tc.wantErr, gotErr, ignoreDetail); diff != "" {
				t.Errorf("Validate() errors mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantWarnings, gotWarnings); diff != "" {
				t.Errorf("Validate() warnings mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, tc.sts); diff != "" {
				t.Errorf("Validate() changed the object (-before +after):\n%s", diff)
			}
		})
	}
}

// TestValidateHardened checks that what the mutating webhook produces passes the
// validating webhook, for objects that start out safe but minimal.
func TestValidateHardened(t *testing.T) {
	tests := []struct {
		name string
		sts  *appsv1.StatefulSet
	}{
		{name: "safe", sts: makeSTS("cache").Obj()},
		{name: "no claim template", sts: makeSTS("cache").NoClaimTemplates().Obj()},
		{name: "TLS and 2 replicas per master", sts: makeSTS("cache").Replicas(9).
			Annotation("valkey-webhook.io/tls.issuer", "ClusterIssuer/internal-ca").
			Annotation("valkey-webhook.io/cluster.replicasPerMaster", "2").Obj()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sts := tc.sts
			if err := Mutate(sts, nil, config.Default()); err != nil {
				t.Fatalf("Mutate() error = %v", err)
			}
			gotErr, gotWarnings := Validate(sts, config.Default())
			if len(gotErr) != 0 || len(gotWarnings) != 0 {
				t.Errorf("Validate(Mutate(x)) = %v, %v, want no errors and no warnings", gotErr, gotWarnings)
			}
		})
	}
}

func TestMutableTag(t *testing.T) {
	tests := []struct {
		image string
		want  bool
	}{
		{image: "valkey", want: true},
		{image: "valkey:8.0", want: false},
		{image: "valkey:latest", want: true},
		{image: "valkey/valkey", want: true},
		{image: "valkey/valkey:8.0.1", want: false},
		{image: "docker.io/valkey/valkey:latest", want: true},
		{image: "localhost:5000/valkey", want: true},
		{image: "localhost:5000/valkey:8.0", want: false},
		{image: "localhost:5000/valkey:latest", want: true},
		{image: "registry.example.com:443/team/valkey", want: true},
		{image: "valkey/valkey@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", want: false},
		{image: "valkey/valkey:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", want: false},
	}
	for _, tc := range tests {
		t.Run(tc.image, func(t *testing.T) {
			if got := mutableTag(tc.image); got != tc.want {
				t.Errorf("mutableTag(%q) = %v, want %v", tc.image, got, tc.want)
			}
		})
	}
}
