package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
	"github.com/valkey-webhook/valkey-webhook/webhook"
)

// repoFile is a path inside the repository.
func repoFile(rel string) string {
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(here), "..", "..", rel)
}

// minimal reads examples/minimal-statefulset.yaml, in the given namespace.
func minimal(namespace string) *appsv1.StatefulSet {
	data, err := os.ReadFile(repoFile("examples/minimal-statefulset.yaml"))
	Expect(err).NotTo(HaveOccurred())
	sts := &appsv1.StatefulSet{}
	Expect(yaml.UnmarshalStrict(data, sts)).To(Succeed())
	sts.Namespace = namespace
	return sts
}

func get(ctx context.Context, namespace, name string) *appsv1.StatefulSet {
	sts := &appsv1.StatefulSet{}
	Expect(k8s.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, sts)).To(Succeed())
	return sts
}

// causeFields lists the field paths of a 422 Invalid error.
func causeFields(err error) []string {
	var status apierrors.APIStatus
	Expect(errors.As(err, &status)).To(BeTrue(), "not an API status error: %v", err)
	var fields []string
	if d := status.Status().Details; d != nil {
		for _, c := range d.Causes {
			fields = append(fields, c.Field)
		}
	}
	return fields
}

var _ = Describe("Admission of StatefulSets", func() {
	AfterEach(func(ctx SpecContext) {
		for _, ns := range []string{"team-a", "team-b"} {
			Expect(k8s.DeleteAllOf(ctx, &appsv1.StatefulSet{}, client.InNamespace(ns))).To(Succeed())
		}
		warnings.Take()
	})

	It("stores the minimal example with every injection", func(ctx SpecContext) {
		Expect(k8s.Create(ctx, minimal("team-a"))).To(Succeed())
		sts := get(ctx, "team-a", "cache")

		p := config.Default()
		Expect(sts.Spec.PodManagementPolicy).To(Equal(appsv1.ParallelPodManagement))
		Expect(sts.Spec.ServiceName).To(Equal("cache-headless"))
		Expect(sts.Spec.VolumeClaimTemplates).To(HaveLen(1))
		Expect(sts.Spec.VolumeClaimTemplates[0].Name).To(Equal("data"))
		Expect(sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage]).To(Equal(resource.MustParse("8Gi")))

		tpl := sts.Spec.Template
		Expect(tpl.Annotations).To(HaveKeyWithValue(defaults.ChecksumAnnotation, defaults.Checksum(defaults.ValkeyConf(sts, &p))))
		spec := tpl.Spec
		Expect(spec.AutomountServiceAccountToken).To(Equal(ptr.To(false)))
		Expect(spec.SecurityContext.RunAsNonRoot).To(Equal(ptr.To(true)))
		Expect(spec.SecurityContext.RunAsUser).To(Equal(ptr.To(int64(999))))
		Expect(spec.SecurityContext.FSGroup).To(Equal(ptr.To(int64(999))))
		Expect(spec.SecurityContext.SeccompProfile.Type).To(Equal(corev1.SeccompProfileTypeRuntimeDefault))
		Expect(spec.TopologySpreadConstraints).To(ConsistOf(HaveField("TopologyKey", "topology.kubernetes.io/zone")))
		Expect(spec.TopologySpreadConstraints[0].WhenUnsatisfiable).To(Equal(corev1.ScheduleAnyway))
		Expect(spec.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution).To(HaveLen(1))

		Expect(spec.Containers).To(HaveLen(2))
		valkey, metrics := spec.Containers[0], spec.Containers[1]
		Expect(valkey.Name).To(Equal("valkey"))
		Expect(valkey.Command).To(Equal([]string{"valkey-server"}))
		Expect(valkey.Args).To(Equal([]string{"/etc/valkey/valkey.conf", "--cluster-announce-ip", "$(POD_IP)"}))
		Expect(valkey.Env).To(ContainElement(HaveField("ValueFrom.FieldRef.FieldPath", "status.podIP")))
		Expect(valkey.Ports).To(ConsistOf(
			HaveField("ContainerPort", int32(6379)),
			HaveField("ContainerPort", int32(16379)),
		))
		Expect(valkey.LivenessProbe.Exec).NotTo(BeNil())
		Expect(valkey.ReadinessProbe.Exec).NotTo(BeNil())
		Expect(valkey.StartupProbe.FailureThreshold).To(Equal(int32(30)))
		Expect(valkey.StartupProbe.PeriodSeconds).To(Equal(int32(10)))
		Expect(valkey.VolumeMounts).To(ConsistOf(
			HaveField("MountPath", "/data"),
			HaveField("MountPath", "/etc/valkey/valkey.conf"),
			HaveField("MountPath", "/tmp"),
			HaveField("MountPath", "/etc/valkey/auth"),
		))
		for _, c := range spec.Containers {
			Expect(c.SecurityContext.AllowPrivilegeEscalation).To(Equal(ptr.To(false)), c.Name)
			Expect(c.SecurityContext.ReadOnlyRootFilesystem).To(Equal(ptr.To(true)), c.Name)
			Expect(c.SecurityContext.Capabilities.Drop).To(Equal([]corev1.Capability{"ALL"}), c.Name)
		}
		Expect(metrics.Name).To(Equal("metrics"))
		Expect(metrics.Ports).To(ConsistOf(HaveField("ContainerPort", int32(9121))))
		Expect(metrics.Env).To(ContainElement(And(
			HaveField("Name", "REDIS_PASSWORD"),
			HaveField("Value", BeEmpty()),
			HaveField("ValueFrom.SecretKeyRef.Name", "cache-auth"),
		)), "the exporter reads the password from the Secret, never from a literal")
		Expect(spec.Volumes).To(ConsistOf(
			HaveField("ConfigMap.Name", "cache-config"),
			HaveField("Name", "tmp"),
			HaveField("Secret.SecretName", "cache-auth"),
		))
	})

	It("stores what the offline mutate command prints, once the API server has defaulted it", func(ctx SpecContext) {
		Expect(k8s.Create(ctx, minimal("team-a"))).To(Succeed())

		raw, err := os.ReadFile(repoFile("examples/minimal-statefulset.yaml"))
		Expect(err).NotTo(HaveOccurred())
		js, err := yaml.YAMLToJSON(raw)
		Expect(err).NotTo(HaveOccurred())
		mutated, verdict, err := webhook.NewOffline(scheme.Scheme, config.Default()).Mutate(ctx, js)
		Expect(err).NotTo(HaveOccurred())
		Expect(verdict.Denied).To(BeNil())
		offline := &appsv1.StatefulSet{}
		Expect(yaml.Unmarshal(mutated, offline)).To(Succeed())
		offline.Namespace = "team-b"
		Expect(k8s.Create(ctx, offline)).To(Succeed())

		Expect(get(ctx, "team-b", "cache").Spec).To(Equal(get(ctx, "team-a", "cache").Spec))
	})

	It("stores an unlabeled StatefulSet untouched", func(ctx SpecContext) {
		sts := minimal("team-a")
		sts.Labels = nil
		sts.Spec.Replicas = ptr.To(int32(1))
		Expect(k8s.Create(ctx, sts)).To(Succeed())

		stored := get(ctx, "team-a", "cache")
		Expect(stored.Spec.PodManagementPolicy).To(Equal(appsv1.OrderedReadyPodManagement), "the API server's default, not the webhook's")
		Expect(stored.Spec.Template.Annotations).NotTo(HaveKey(defaults.ChecksumAnnotation))
		Expect(stored.Spec.Template.Spec.Containers).To(HaveLen(1))
		Expect(stored.Spec.Template.Spec.Containers[0].SecurityContext).To(BeNil())
		Expect(stored.Spec.VolumeClaimTemplates).To(BeEmpty())
		Expect(warnings.Take()).To(BeEmpty())
	})

	DescribeTable("refuses an unsafe spec with 422 and the field path",
		func(ctx SpecContext, unsafe func(*appsv1.StatefulSet), field string) {
			sts := minimal("team-a")
			unsafe(sts)
			err := k8s.Create(ctx, sts)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want 422 Invalid, got %v", err)
			Expect(causeFields(err)).To(ContainElement(field))
			Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(sts), &appsv1.StatefulSet{}))).To(BeTrue(), "nothing is created")
		},
		Entry("fewer pods than masters x (1 + replicas per master)", func(s *appsv1.StatefulSet) {
			s.Spec.Replicas = ptr.To(int32(4))
		}, "spec.replicas"),
		Entry("a root pod", func(s *appsv1.StatefulSet) {
			s.Spec.Template.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr.To(int64(0))}
		}, "spec.template.spec.securityContext.runAsUser"),
		Entry("a privileged container", func(s *appsv1.StatefulSet) {
			s.Spec.Template.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
		}, "spec.template.spec.containers[0].securityContext.privileged"),
		Entry("an added capability", func(s *appsv1.StatefulSet) {
			s.Spec.Template.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{
				Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}},
			}
		}, "spec.template.spec.containers[0].securityContext.capabilities.add"),
		Entry("hostNetwork", func(s *appsv1.StatefulSet) {
			s.Spec.Template.Spec.HostNetwork = true
		}, "spec.template.spec.hostNetwork"),
		Entry("data that does not survive a restart", func(s *appsv1.StatefulSet) {
			s.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		}, "spec.template.spec.volumes[0]"),
		Entry("maxmemory at the memory limit", func(s *appsv1.StatefulSet) {
			s.Annotations = map[string]string{"valkey-webhook.io/valkey.maxmemory": "1Gi"}
		}, "metadata.annotations[valkey-webhook.io/valkey.maxmemory]"),
		Entry("a password as a literal env value", func(s *appsv1.StatefulSet) {
			s.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "VALKEY_PASSWORD", Value: "hunter2"}}
		}, "spec.template.spec.containers[0].env[0].value"),
		Entry("a PodDisruptionBudget that never allows an eviction", func(s *appsv1.StatefulSet) {
			s.Annotations = map[string]string{"valkey-webhook.io/podDisruptionBudget.maxUnavailable": "0"}
		}, "metadata.annotations[valkey-webhook.io/podDisruptionBudget.maxUnavailable]"),
		Entry("a rolling update that may take down two pods", func(s *appsv1.StatefulSet) {
			s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{
				Type:          appsv1.RollingUpdateStatefulSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{MaxUnavailable: ptr.To(intstr.FromInt32(2))},
			}
		}, "spec.updateStrategy.rollingUpdate.maxUnavailable"),
		Entry("an unknown valkey-webhook.io/ key", func(s *appsv1.StatefulSet) {
			s.Annotations = map[string]string{"valkey-webhook.io/cluster.nodeTimout": "5000"}
		}, "metadata.annotations[valkey-webhook.io/cluster.nodeTimout]"),
	)

	It("warns, by default, about an unlabeled Valkey cluster and admits it", func(ctx SpecContext) {
		sts := minimal("team-a")
		sts.Labels = nil
		sts.Spec.Template.Spec.Containers[0].Image = "docker.io/bitnami/valkey-cluster:8.0.1"
		Expect(k8s.Create(ctx, sts)).To(Succeed())
		Expect(warnings.Take()).To(ContainElement(ContainSubstring("metadata.labels[valkey-webhook.io/cluster]")))
	})

	It("passes on warnings for allowed but doubtful specs", func(ctx SpecContext) {
		sts := minimal("team-a")
		sts.Spec.Replicas = ptr.To(int32(7))
		sts.Spec.Template.Spec.Containers[0].Image = "docker.io/valkey/valkey:latest"
		Expect(k8s.Create(ctx, sts)).To(Succeed())
		Expect(warnings.Take()).To(ConsistOf(
			ContainSubstring("spec.template.spec.containers[0].image"),
			ContainSubstring("spec.replicas"),
		))
	})

	It("changes nothing when the stored object is applied again", func(ctx SpecContext) {
		Expect(k8s.Create(ctx, minimal("team-a"))).To(Succeed())
		stored := get(ctx, "team-a", "cache")

		Expect(k8s.Update(ctx, stored.DeepCopy())).To(Succeed())
		afterUpdate := get(ctx, "team-a", "cache")
		Expect(afterUpdate.Generation).To(Equal(stored.Generation))
		Expect(afterUpdate.Spec.Template).To(Equal(stored.Spec.Template))

		// kubectl apply --server-side of the same minimal manifest.
		u := &unstructured.Unstructured{}
		raw, err := os.ReadFile(repoFile("examples/minimal-statefulset.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(yaml.Unmarshal(raw, &u.Object)).To(Succeed())
		u.SetNamespace("team-a")
		Expect(k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("kubectl"), client.ForceOwnership)).To(Succeed())
		afterApply := get(ctx, "team-a", "cache")
		Expect(afterApply.Generation).To(Equal(stored.Generation))
		Expect(afterApply.Spec.Template).To(Equal(stored.Spec.Template))
	})

	It("admits a scale-up and a memory limit change without touching immutable fields", func(ctx SpecContext) {
		Expect(k8s.Create(ctx, minimal("team-a"))).To(Succeed())
		stored := get(ctx, "team-a", "cache")

		changed := stored.DeepCopy()
		changed.Spec.Replicas = ptr.To(int32(9))
		changed.Spec.Template.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory] = resource.MustParse("2Gi")
		Expect(k8s.Update(ctx, changed)).To(Succeed())

		after := get(ctx, "team-a", "cache")
		Expect(*after.Spec.Replicas).To(Equal(int32(9)))
		Expect(after.Spec.VolumeClaimTemplates).To(Equal(stored.Spec.VolumeClaimTemplates))
		Expect(after.Spec.Selector).To(Equal(stored.Spec.Selector))
		Expect(after.Spec.ServiceName).To(Equal(stored.Spec.ServiceName))
		p := config.Default()
		Expect(after.Spec.Template.Annotations[defaults.ChecksumAnnotation]).To(Equal(defaults.Checksum(defaults.ValkeyConf(after, &p))))
		Expect(after.Spec.Template.Annotations[defaults.ChecksumAnnotation]).NotTo(Equal(stored.Spec.Template.Annotations[defaults.ChecksumAnnotation]),
			"maxmemory follows the limit, so the config and its checksum change")
	})

	It("leaves the pod template alone on a scale", func(ctx SpecContext) {
		Expect(k8s.Create(ctx, minimal("team-a"))).To(Succeed())
		stored := get(ctx, "team-a", "cache")
		scaled := stored.DeepCopy()
		scaled.Spec.Replicas = ptr.To(int32(8))
		Expect(k8s.Update(ctx, scaled)).To(Succeed())
		Expect(get(ctx, "team-a", "cache").Spec.Template).To(Equal(stored.Spec.Template))
	})

	It("hardens a StatefulSet when the label is added later", func(ctx SpecContext) {
		sts := minimal("team-a")
		sts.Labels = nil
		sts.Spec.VolumeClaimTemplates = []corev1.PersistentVolumeClaim{{
			ObjectMeta: metav1.ObjectMeta{Name: "data"},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		}}
		Expect(k8s.Create(ctx, sts)).To(Succeed())
		stored := get(ctx, "team-a", "cache")
		stored.Labels = map[string]string{defaults.ClusterLabel: defaults.ClusterLabelEnabled}
		Expect(k8s.Update(ctx, stored)).To(Succeed())
		hardened := get(ctx, "team-a", "cache")
		Expect(hardened.Spec.Template.Annotations).To(HaveKey(defaults.ChecksumAnnotation))
		Expect(hardened.Spec.Template.Spec.Containers[0].VolumeMounts).To(ContainElement(HaveField("MountPath", "/data")))
		Expect(hardened.Spec.PodManagementPolicy).To(Equal(appsv1.OrderedReadyPodManagement), "immutable after CREATE")
	})

	It("refuses to label a StatefulSet whose data has no claim template, and says how to fix it", func(ctx SpecContext) {
		sts := minimal("team-a")
		sts.Labels = nil
		Expect(k8s.Create(ctx, sts)).To(Succeed())
		stored := get(ctx, "team-a", "cache")
		stored.Labels = map[string]string{defaults.ClusterLabel: defaults.ClusterLabelEnabled}
		err := k8s.Update(ctx, stored)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want 422 Invalid, got %v", err)
		Expect(causeFields(err)).To(ConsistOf("spec.volumeClaimTemplates"))
		Expect(err.Error()).To(ContainSubstring("--cascade=orphan"))
	})

	It("answers a server-side dry run with the hardened object and creates nothing", func(ctx SpecContext) {
		sts := minimal("team-a")
		Expect(k8s.Create(ctx, sts, client.DryRunAll)).To(Succeed())
		Expect(sts.Spec.Template.Annotations).To(HaveKey(defaults.ChecksumAnnotation))
		Expect(sts.Spec.Template.Spec.Containers).To(HaveLen(2))
		err := k8s.Get(ctx, types.NamespacedName{Namespace: "team-a", Name: "cache"}, &appsv1.StatefulSet{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "dry run created the object: %v", err)
	})

	It("reports ready while it serves", func() {
		Expect(readyzURL).NotTo(BeEmpty())
		Expect(server.ExitCode()).To(Equal(-1), "the webhook process is still running")
	})
})
