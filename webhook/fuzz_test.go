package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// FuzzHarden builds a labeled StatefulSet from fuzz input and checks the admission
// mutation's promises on it:
//
//   - Mutate never panics, and fails only with a 422 at the annotations;
//   - it is idempotent, byte for byte: mutate(mutate(x)) == mutate(x);
//   - an UPDATE that stores the result again changes nothing, and re-applying the
//     user's own spec (kubectl apply of the same manifest) gives the same object,
//     so that neither rolls the pods;
//   - on UPDATE it never touches selector, serviceName, volumeClaimTemplates or
//     podManagementPolicy;
//   - the mutating webhook's JSON patch, applied to the JSON the API server sent,
//     gives the same object as the Go mutation (what the offline command prints);
//   - hardening never adds a denial: every denial of the hardened object is one the
//     user's own spec already has, and a spec made only of safe choices (the first
//     choice byte is even) is admitted once hardened.
//
// doc is a JSON StatefulSet to start from (empty or undecodable: an empty one);
// choices steer the edits made to it. Seeds: f.Add below (the testdata inputs of
// defaults and the examples) and testdata/fuzz/FuzzHarden.
func FuzzHarden(f *testing.F) {
	for _, doc := range seedStatefulSets(f) {
		f.Add(doc, []byte{0})
		f.Add(doc, []byte{1, 3, 7, 11, 2, 9, 12, 4, 200, 17, 5})
	}
	f.Add([]byte(nil), []byte{0, 2, 0, 0, 1, 2, 3, 5, 1, 1, 6, 0, 1, 11, 3, 1, 8, 0, 0, 9, 0})
	f.Add([]byte(`{"spec":{"template":{"spec":{"containers":[{"name":"valkey","securityContext":{"privileged":true}}]}}}}`), []byte{1, 6, 0, 0})

	base := config.Default()
	offline := NewOffline(scheme.Scheme, base)
	f.Fuzz(func(t *testing.T, doc, choices []byte) {
		checkHarden(t, base, offline, doc, choices)
	})
}

// checkHarden checks FuzzHarden's promises on one input.
func checkHarden(t *testing.T, base config.Policy, offline *Offline, doc, choices []byte) {
	t.Helper()
	in, safe := fuzzStatefulSet(doc, choices)
	raw, err := json.Marshal(in)
	if err != nil {
		t.Fatalf("marshalling the input: %v", err)
	}

	// CREATE.
	once := in.DeepCopy()
	if err := Mutate(once, nil, base); err != nil {
		checkAnnotationError(t, err, in)
		return
	}
	onceJSON := mustJSON(t, once)

	twice := once.DeepCopy()
	if err := Mutate(twice, nil, base); err != nil {
		t.Fatalf("the second mutation fails: %v\ninput: %s", err, raw)
	}
	if got := mustJSON(t, twice); got != onceJSON {
		t.Fatalf("not idempotent: %s\ninput: %s", cmp.Diff(onceJSON, got), raw)
	}

	// UPDATE storing the stored object again.
	stored := once.DeepCopy()
	if err := Mutate(stored, once, base); err != nil {
		t.Fatalf("UPDATE with the stored object fails: %v\ninput: %s", err, raw)
	}
	if got := mustJSON(t, stored); got != onceJSON {
		t.Fatalf("UPDATE with the stored object changes it: %s\ninput: %s", cmp.Diff(onceJSON, got), raw)
	}

	// UPDATE re-applying the user's spec, with the fields fixed at CREATE.
	reapplied := in.DeepCopy()
	reapplied.Spec.Selector = once.Spec.Selector.DeepCopy()
	reapplied.Spec.ServiceName = once.Spec.ServiceName
	reapplied.Spec.PodManagementPolicy = once.Spec.PodManagementPolicy
	reapplied.Spec.VolumeClaimTemplates = once.DeepCopy().Spec.VolumeClaimTemplates
	if err := Mutate(reapplied, once, base); err != nil {
		t.Fatalf("UPDATE re-applying the input fails: %v\ninput: %s", err, raw)
	}
	if got := mustJSON(t, reapplied); got != onceJSON {
		t.Fatalf("UPDATE re-applying the input gives another object: %s\ninput: %s", cmp.Diff(onceJSON, got), raw)
	}

	// UPDATE never touches the fields the API forbids changing.
	updated := in.DeepCopy()
	if err := Mutate(updated, once, base); err != nil {
		t.Fatalf("UPDATE fails: %v\ninput: %s", err, raw)
	}
	if diff := cmp.Diff(immutableFields(in), immutableFields(updated)); diff != "" {
		t.Fatalf("UPDATE changed an immutable field (-input +updated):\n%s\ninput: %s", diff, raw)
	}

	// The webhook's patch gives what the Go mutation gives.
	patched, verdict, err := offline.Mutate(context.Background(), raw)
	if err != nil || verdict.Denied != nil {
		t.Fatalf("the mutating webhook refuses what Mutate accepts: %v %+v\ninput: %s", err, verdict.Denied, raw)
	}
	viaPatch := &appsv1.StatefulSet{}
	if err := json.Unmarshal(patched, viaPatch); err != nil {
		t.Fatalf("the patched object does not decode: %v\n%s", err, patched)
	}
	if got := mustJSON(t, viaPatch); got != onceJSON {
		t.Fatalf("the webhook's patch gives another object than Mutate: %s\ninput: %s", cmp.Diff(onceJSON, got), raw)
	}

	// Hardening never adds a denial.
	before, _ := Validate(in, base)
	after, _ := Validate(once, base)
	if extra := notIn(after, before); len(extra) > 0 {
		t.Fatalf("hardening added denials %v (the input had %v)\ninput: %s", extra, before, raw)
	}
	if safe && len(after) > 0 {
		t.Fatalf("a spec of safe choices is denied once hardened: %v\ninput: %s\nhardened: %s", after, raw, onceJSON)
	}
}

// checkAnnotationError fails unless err is the 422 Invalid that Mutate returns for
// bad valkey-webhook.io/ annotations, each cause at an annotation or a policy key.
func checkAnnotationError(t *testing.T, err error, in *appsv1.StatefulSet) {
	t.Helper()
	var status apierrors.APIStatus
	if !errors.As(err, &status) || !apierrors.IsInvalid(err) {
		t.Fatalf("Mutate failed with %v, want a 422 Invalid", err)
	}
	details := status.Status().Details
	if details == nil || len(details.Causes) == 0 {
		t.Fatalf("Mutate failed with a 422 without causes: %v", err)
	}
	for _, c := range details.Causes {
		if !strings.HasPrefix(c.Field, "metadata.annotations[") && !isPolicyKeyPath(c.Field) {
			t.Fatalf("Mutate failed at %q, not at an annotation: %v (annotations %v)", c.Field, err, in.Annotations)
		}
	}
}

func isPolicyKeyPath(p string) bool {
	for _, k := range config.Keys() {
		if config.KeyPath(k).String() == p {
			return true
		}
	}
	return false
}

// notIn returns the errors of a that b does not have. Errors are compared by type
// and detail, not by path: hardening may put a container in front of the user's
// ones, which shifts their indexes.
func notIn(a, b field.ErrorList) []string {
	have := map[string]int{}
	for _, e := range b {
		have[string(e.Type)+": "+e.Detail]++
	}
	var out []string
	for _, e := range a {
		k := string(e.Type) + ": " + e.Detail
		if have[k] > 0 {
			have[k]--
			continue
		}
		out = append(out, e.Error())
	}
	return out
}

type immutable struct {
	Selector             *metav1.LabelSelector
	ServiceName          string
	VolumeClaimTemplates []corev1.PersistentVolumeClaim
	PodManagementPolicy  appsv1.PodManagementPolicyType
}

func immutableFields(sts *appsv1.StatefulSet) immutable {
	return immutable{sts.Spec.Selector, sts.Spec.ServiceName, sts.Spec.VolumeClaimTemplates, sts.Spec.PodManagementPolicy}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshalling: %v", err)
	}
	return string(b)
}

// seedStatefulSets are the StatefulSets of the repository, as JSON: the examples
// and the inputs of the golden tests.
func seedStatefulSets(tb testing.TB) [][]byte {
	tb.Helper()
	var files []string
	for _, pattern := range []string{"../examples/*.yaml", "../examples/unsafe/*.yaml", "../defaults/testdata/*.input.yaml"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			tb.Fatal(err)
		}
		files = append(files, m...)
	}
	sort.Strings(files)
	var out [][]byte
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			tb.Fatal(err)
		}
		js, err := yaml.YAMLToJSON(data)
		if err != nil {
			tb.Fatalf("%s: %v", file, err)
		}
		out = append(out, js)
	}
	return out
}

// choices hands out the fuzz input's choices one byte at a time; when it runs out,
// every choice is 0.
type choices struct{ b []byte }

func (c *choices) empty() bool { return len(c.b) == 0 }

func (c *choices) next() byte {
	if len(c.b) == 0 {
		return 0
	}
	v := c.b[0]
	c.b = c.b[1:]
	return v
}

func (c *choices) intn(n int) int { return int(c.next()) % n }

func (c *choices) bool() bool { return c.next()%2 == 1 }

// pick returns one of xs, or, when unsafe is allowed and the choice says so, a
// string taken from the input itself.
func (c *choices) pick(xs ...string) string {
	i := c.intn(len(xs) + 1)
	if i < len(xs) {
		return xs[i]
	}
	return c.raw()
}

// pickSafe returns one of xs and never a string of the input's own.
func (c *choices) pickSafe(xs ...string) string { return xs[c.intn(len(xs))] }

// raw returns up to 31 bytes of the input as a string.
func (c *choices) raw() string {
	n := c.intn(32)
	if n > len(c.b) {
		n = len(c.b)
	}
	s := string(c.b[:n])
	c.b = c.b[n:]
	return s
}

func (c *choices) optBool() *bool {
	switch c.intn(3) {
	case 0:
		return nil
	case 1:
		return ptr.To(false)
	}
	return ptr.To(true)
}

// fuzzStatefulSet builds a labeled StatefulSet: doc decoded (or an empty one), then
// edited as choices say. It also reports whether the spec is made only of safe
// choices: an even first choice byte keeps every edit to values that validation
// admits, and a doc is used only when it is admitted once hardened on its own.
func fuzzStatefulSet(doc, in []byte) (*appsv1.StatefulSet, bool) {
	c := &choices{b: in}
	safe := c.next()%2 == 0
	sts := &appsv1.StatefulSet{}
	if len(doc) > 0 {
		if err := json.Unmarshal(doc, sts); err != nil {
			sts = &appsv1.StatefulSet{}
		}
	}
	if safe {
		// Start from a spec that is admitted once hardened: the doc when it is,
		// else an empty one.
		h := sts.DeepCopy()
		labelIt(h)
		if err := Mutate(h, nil, config.Default()); err != nil {
			sts = &appsv1.StatefulSet{}
		} else if errs, _ := Validate(h, config.Default()); len(errs) > 0 {
			sts = &appsv1.StatefulSet{}
		}
		if sts.Spec.Replicas == nil || *sts.Spec.Replicas < 12 {
			sts.Spec.Replicas = ptr.To(int32(12))
		}
		// Room for the safe valkey.maxmemory overrides (at most 1Gi).
		for i := range sts.Spec.Template.Spec.Containers {
			limits := sts.Spec.Template.Spec.Containers[i].Resources.Limits
			if m, ok := limits[corev1.ResourceMemory]; ok && m.Cmp(resource.MustParse("2Gi")) < 0 {
				limits[corev1.ResourceMemory] = resource.MustParse("2Gi")
			}
		}
	}
	sts.APIVersion, sts.Kind = "apps/v1", "StatefulSet"
	if sts.Name == "" {
		sts.Name = "cache"
	}
	if sts.Namespace == "" {
		sts.Namespace = "team-a"
	}
	b := &builder{c: c, safe: safe, sts: sts}
	for i := 0; i < 64 && !c.empty(); i++ {
		b.edit()
	}
	labelIt(sts)
	// As the API server sends it: JSON, so every string is valid UTF-8.
	out := &appsv1.StatefulSet{}
	if data, err := json.Marshal(sts); err != nil || json.Unmarshal(data, out) != nil {
		panic(fmt.Sprintf("a built StatefulSet does not round-trip through JSON: %v", err))
	}
	return out, safe
}

func labelIt(sts *appsv1.StatefulSet) {
	if sts.Labels == nil {
		sts.Labels = map[string]string{}
	}
	sts.Labels[defaults.ClusterLabel] = defaults.ClusterLabelEnabled
}

type builder struct {
	c    *choices
	safe bool
	sts  *appsv1.StatefulSet
}

// str picks one of xs; outside safe mode it may also be a string of the input's own.
func (b *builder) str(xs ...string) string {
	if b.safe {
		return b.c.pickSafe(xs...)
	}
	return b.c.pick(xs...)
}

// safeAnnotations are override values that pass config.Validate alone and keep the
// fuzzed specs admitted: at most 4 masters x 3 pods = 12 pods, the safe replicas.
var safeAnnotations = map[string][]string{
	"cluster.minMasters":                          {"3", "4"},
	"cluster.replicasPerMaster":                   {"0", "1", "2"},
	"cluster.nodeTimeout":                         {"100", "15000"},
	"cluster.requireFullCoverage":                 {"true", "false"},
	"cluster.allowReadsWhenDown":                  {"true", "false"},
	"cluster.replicaValidityFactor":               {"0", "10"},
	"valkey.port":                                 {"6379", "7000"},
	"valkey.maxmemory":                            {"512Mi", "1Gi"},
	"valkey.maxmemoryPercent":                     {"1", "95"},
	"valkey.maxmemoryPolicy":                      {"allkeys-lru", "noeviction"},
	"valkey.appendonly":                           {"true", "false"},
	"valkey.appendfsync":                          {"always", "no"},
	"valkey.save":                                 {"", "60 1"},
	"valkey.cpuRequest":                           {"", "250m"},
	"persistence.size":                            {"1Gi", "20Gi"},
	"persistence.storageClassName":                {"fast-ssd"},
	"persistence.allowEphemeral":                  {"true", "false"},
	"security.runAsUser":                          {"1000"},
	"security.fsGroup":                            {"1000"},
	"podDisruptionBudget.enabled":                 {"true", "false"},
	"podDisruptionBudget.maxUnavailable":          {"1", "2"},
	"topologySpreadConstraints.enabled":           {"true", "false"},
	"topologySpreadConstraints.topologyKey":       {"kubernetes.io/hostname"},
	"topologySpreadConstraints.maxSkew":           {"2"},
	"topologySpreadConstraints.whenUnsatisfiable": {"DoNotSchedule"},
	"startupProbe.enabled":                        {"true", "false"},
	"startupProbe.periodSeconds":                  {"1"},
	"startupProbe.failureThreshold":               {"100"},
	"networkPolicy.enabled":                       {"true", "false"},
	"networkPolicy.clientPodSelector":             {"role=api"},
	"auth.enabled":                                {"true", "false"},
	"auth.existingSecret":                         {"team-auth"},
	"tls.issuer":                                  {"ClusterIssuer/internal-ca", "internal-ca"},
	"tls.secretName":                              {"valkey-tls"},
	"tls.authClients":                             {"true"},
	"tls.clusterDomain":                           {"example.org"},
	"metrics.enabled":                             {"true", "false"},
	"metrics.port":                                {"9200"},
	"metrics.image":                               {"docker.io/oliver006/redis_exporter:v1.67.0"},
	"image.valkey":                                {"registry.example.com/valkey/valkey:8.0.7"},
}

func (b *builder) edit() {
	c, sts := b.c, b.sts
	spec := &sts.Spec.Template.Spec
	switch c.intn(20) {
	case 0: // replicas
		if b.safe {
			sts.Spec.Replicas = ptr.To(int32(12 + c.intn(3)*6))
		} else if c.bool() {
			sts.Spec.Replicas = nil
		} else {
			sts.Spec.Replicas = ptr.To(int32(c.intn(13)))
		}
	case 1: // a container
		name := b.str(defaults.ValkeyContainer, defaults.MetricsContainer, "sidecar")
		image := b.str("docker.io/valkey/valkey:8.0.7", "registry.example.com/valkey/valkey-cluster:8.0", "busybox:1.36")
		if !b.safe && c.bool() {
			image = c.pick("valkey/valkey", "valkey:latest", "", "valkey@sha256:0123")
		}
		ctr := corev1.Container{Name: name, Image: image}
		if c.bool() {
			spec.InitContainers = append(spec.InitContainers, ctr)
		} else {
			spec.Containers = append(spec.Containers, ctr)
		}
	case 2: // command and args
		if ctr := b.container(); ctr != nil {
			lines := [][]string{nil, {"valkey-server"}, {"valkey-server", "/etc/valkey/valkey.conf"}, {"sh", "-c", "valkey-cli ping"}, {"--cluster-enabled", "yes"}}
			if !b.safe {
				lines = append(lines, []string{"valkey-cli", "-a", "hunter2"}, []string{"--requirepass", "x"}, []string{"sh", "-c", "redis-cli --pass=x ping"}, []string{c.raw()})
			}
			ctr.Command = lines[c.intn(len(lines))]
			ctr.Args = lines[c.intn(len(lines))]
		}
	case 3: // env
		if ctr := b.container(); ctr != nil {
			env := []corev1.EnvVar{
				{Name: "FOO", Value: "bar"},
				{Name: defaults.PodIPEnv, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
				{Name: "VALKEY_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}, Key: "password"}}},
				{Name: "VALKEY_PASSWORD_FILE", Value: "/etc/valkey/auth/password"},
				{Name: "ALLOW_EMPTY_PASSWORD", Value: "yes"},
			}
			if !b.safe {
				env = append(env, corev1.EnvVar{Name: "REDIS_PASSWORD", Value: "hunter2"}, corev1.EnvVar{Name: "VALKEY_CLUSTER_ENABLED", Value: "yes"}, corev1.EnvVar{Name: c.raw(), Value: c.raw()})
			}
			ctr.Env = append(ctr.Env, env[c.intn(len(env))])
		}
	case 4: // resources
		if ctr := b.container(); ctr != nil {
			limits := []string{"2Gi", "4Gi"}
			if !b.safe {
				limits = append(limits, "1", "512Mi", "1Gi", "0", "100Ti")
			}
			ctr.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(limits[c.intn(len(limits))])}
			if c.bool() {
				ctr.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}
			}
		}
	case 5: // container security context
		if ctr := b.container(); ctr != nil {
			sc := &corev1.SecurityContext{ReadOnlyRootFilesystem: c.optBool()}
			if b.safe {
				if c.bool() {
					sc.AllowPrivilegeEscalation = ptr.To(false)
				}
				if c.bool() {
					sc.RunAsUser = ptr.To(int64(1000))
				}
				if c.bool() {
					sc.RunAsNonRoot = ptr.To(true)
				}
				if c.bool() {
					sc.Capabilities = &corev1.Capabilities{Drop: []corev1.Capability{"NET_RAW"}}
				}
			} else {
				sc.Privileged = c.optBool()
				sc.AllowPrivilegeEscalation = c.optBool()
				sc.RunAsNonRoot = c.optBool()
				if c.bool() {
					sc.RunAsUser = ptr.To(int64(c.intn(2) * 1000))
				}
				if c.bool() {
					sc.Capabilities = &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}}
				}
			}
			if c.bool() {
				sc = nil
			}
			ctr.SecurityContext = sc
		}
	case 6: // pod security context
		psc := &corev1.PodSecurityContext{}
		if b.safe {
			if c.bool() {
				psc.RunAsUser = ptr.To(int64(1000))
			}
			if c.bool() {
				psc.RunAsNonRoot = ptr.To(true)
			}
		} else {
			psc.RunAsNonRoot = c.optBool()
			if c.bool() {
				psc.RunAsUser = ptr.To(int64(c.intn(2) * 1000))
			}
		}
		if c.bool() {
			psc.FSGroup = ptr.To(int64(2000))
		}
		if c.bool() {
			psc.RunAsGroup = ptr.To(int64(3000))
		}
		spec.SecurityContext = psc
	case 7: // a volume
		name := b.str(defaults.ConfigVolume, defaults.TLSVolume, defaults.AuthVolume, defaults.TmpVolume, "other", defaults.DataVolume)
		v := corev1.Volume{Name: name}
		switch c.intn(4) {
		case 0:
			v.PersistentVolumeClaim = &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "claim"}
		case 1:
			v.Secret = &corev1.SecretVolumeSource{SecretName: "s"}
		case 2:
			v.ConfigMap = &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}
		default:
			v.EmptyDir = &corev1.EmptyDirVolumeSource{}
		}
		if b.safe && name == defaults.DataVolume {
			v.VolumeSource = corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "claim"}}
		}
		spec.Volumes = append(spec.Volumes, v)
	case 8: // a volume mount
		if ctr := b.container(); ctr != nil {
			mounts := []corev1.VolumeMount{
				{Name: defaults.DataVolume, MountPath: defaults.DataDir},
				{Name: defaults.ConfigVolume, MountPath: defaults.ConfigFile, SubPath: defaults.ConfigKey},
				{Name: defaults.TLSVolume, MountPath: defaults.TLSDir},
				{Name: "other", MountPath: "/opt/other"},
				{Name: defaults.TmpVolume, MountPath: defaults.TmpDir},
			}
			if !b.safe {
				mounts = append(mounts, corev1.VolumeMount{Name: "other", MountPath: defaults.DataDir}, corev1.VolumeMount{Name: c.raw(), MountPath: c.raw()})
			}
			ctr.VolumeMounts = append(ctr.VolumeMounts, mounts[c.intn(len(mounts))])
		}
	case 9: // a claim template
		name := b.str(defaults.DataVolume, "other")
		sts.Spec.VolumeClaimTemplates = append(sts.Spec.VolumeClaimTemplates, corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: name}})
	case 10, 11: // an override annotation
		keys := config.AnnotationKeys()
		key := keys[c.intn(len(keys))]
		var value string
		if b.safe {
			values, ok := safeAnnotations[key]
			if !ok {
				return
			}
			value = values[c.intn(len(values))]
		} else {
			value = c.pick("true", "false", "0", "1", "3", "-1", "7000", "9121", "512Mi", "8Gi", "ClusterIssuer/ca", "Foo/x", "team-auth", "Bad_Name", "allkeys-lru", "no", "DoNotSchedule", "")
			if c.bool() {
				key = c.pick("foo", "enforcement.unlabeled", "cluster", "cluster.nodeTimeout ")
			}
		}
		if sts.Annotations == nil {
			sts.Annotations = map[string]string{}
		}
		sts.Annotations[config.AnnotationPrefix+key] = value
	case 12: // pod template metadata
		if sts.Spec.Template.Annotations == nil {
			sts.Spec.Template.Annotations = map[string]string{}
		}
		sts.Spec.Template.Annotations[b.str(defaults.ChecksumAnnotation, defaults.TLSChecksumAnnotation, "example.com/x")] = b.str("sha256:stale", "")
		if sts.Spec.Template.Labels == nil {
			sts.Spec.Template.Labels = map[string]string{}
		}
		sts.Spec.Template.Labels["app"] = b.str("cache", "other")
	case 13: // selector
		switch c.intn(3) {
		case 0:
			sts.Spec.Selector = nil
		case 1:
			sts.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": b.str("cache", "other")}}
		default:
			sts.Spec.Selector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpExists}}}
		}
	case 14: // fields fixed at CREATE
		sts.Spec.PodManagementPolicy = appsv1.PodManagementPolicyType(b.str("", string(appsv1.OrderedReadyPodManagement), string(appsv1.ParallelPodManagement)))
		sts.Spec.ServiceName = b.str("", "cache-headless", "custom")
	case 15: // update strategy
		switch c.intn(4) {
		case 0:
			sts.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{}
		case 1:
			sts.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
		default:
			ru := &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr.To(int32(c.intn(3)))}
			if b.safe {
				ru.MaxUnavailable = ptr.To(intstr.FromInt32(1))
			} else {
				ru.MaxUnavailable = ptr.To([]intstr.IntOrString{intstr.FromInt32(1), intstr.FromInt32(2), intstr.FromString("50%"), intstr.FromString("1%"), intstr.FromString("x")}[c.intn(5)])
			}
			sts.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType, RollingUpdate: ru}
		}
	case 16: // scheduling
		if c.bool() {
			spec.TopologySpreadConstraints = append(spec.TopologySpreadConstraints, corev1.TopologySpreadConstraint{
				MaxSkew: 1, TopologyKey: b.str("topology.kubernetes.io/zone", "kubernetes.io/hostname"), WhenUnsatisfiable: corev1.DoNotSchedule,
			})
		} else {
			spec.Affinity = &corev1.Affinity{}
			if c.bool() {
				spec.Affinity.PodAntiAffinity = &corev1.PodAntiAffinity{}
			}
		}
	case 17: // ports
		if ctr := b.container(); ctr != nil {
			ctr.Ports = append(ctr.Ports, corev1.ContainerPort{Name: b.str(defaults.ClientPortName, defaults.BusPortName, "other"), ContainerPort: int32([]int{6379, 16379, 7000, 9121}[c.intn(4)])})
		}
	case 18: // probes and hooks
		if ctr := b.container(); ctr != nil {
			cmd := []string{"sh", "-c", "valkey-cli ping"}
			if !b.safe && c.bool() {
				cmd = []string{"valkey-cli", "-a", "hunter2", "ping"}
			}
			probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: cmd}}}
			switch c.intn(4) {
			case 0:
				ctr.LivenessProbe = probe
			case 1:
				ctr.ReadinessProbe = probe
			case 2:
				ctr.StartupProbe = probe
			default:
				ctr.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: probe.Exec}}
			}
		}
	default: // pod-level switches
		spec.AutomountServiceAccountToken = c.optBool()
		if !b.safe {
			spec.HostNetwork = c.bool()
			spec.HostPID = c.bool()
		}
		if c.bool() {
			sts.Name = b.str("cache", "other", "a-very-long-name-"+strings.Repeat("x", 40))
		}
	}
}

// container returns one of the pod's containers or init containers, or nil when it
// has none.
func (b *builder) container() *corev1.Container {
	spec := &b.sts.Spec.Template.Spec
	n := len(spec.Containers) + len(spec.InitContainers)
	if n == 0 {
		return nil
	}
	i := b.c.intn(n)
	if i < len(spec.Containers) {
		return &spec.Containers[i]
	}
	return &spec.InitContainers[i-len(spec.Containers)]
}

// TestFuzzStatefulSetSafeStart keeps the builder honest: in safe mode, with no
// edits, it keeps a seed that validation admits once hardened (the minimal example),
// and what it starts from is admitted once hardened, whatever the seed.
func TestFuzzStatefulSetSafeStart(t *testing.T) {
	minimal, _ := fuzzStatefulSet(minimalJSON(t), []byte{0})
	if len(minimal.Spec.Template.Spec.Containers) == 0 {
		t.Errorf("safe mode dropped the minimal example")
	}
	for _, doc := range seedStatefulSets(t) {
		sts, safe := fuzzStatefulSet(doc, []byte{0})
		if !safe {
			t.Fatalf("choice 0 is not safe mode")
		}
		if err := Mutate(sts, nil, config.Default()); err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		if errs, _ := Validate(sts, config.Default()); len(errs) > 0 {
			t.Errorf("a safe start is denied once hardened: %v\n%s", errs, doc)
		}
	}
}

// TestAdmissionHandlerSeeds pins the answers to the seeds of FuzzAdmissionHandler
// in testdata, which FuzzAdmissionHandler itself only checks for a 5xx: each is a
// clear 4xx, or allowed, as docs/design.md promises.
func TestAdmissionHandlerSeeds(t *testing.T) {
	want := map[string]verdict{
		"bad-annotation":           {Code: 422},
		"delete":                   {Allowed: true, Code: 200},
		"dry-run":                  {Allowed: true, Code: 200, Patched: true},
		"huge-number":              {Allowed: true, Code: 200, Patched: true},
		"nested-unknown-field":     {Allowed: true, Code: 200, Patched: true},
		"no-apiversion":            {Code: 400},
		"object-apps-v1beta2":      {Code: 400},
		"pod-as-statefulset":       {Code: 400},
		"quantity-huge-exponent":   {Code: 422},
		"scale-subresource":        {Allowed: true, Code: 200},
		"truncated":                {Code: 400},
		"unknown-fields":           {Allowed: true, Code: 200, Patched: true},
		"update":                   {Allowed: true, Code: 200},
		"update-without-oldobject": {Code: 400},
		"v1beta1":                  {Allowed: true, Code: 200, Patched: true},
		"wrong-apiversion":         {Code: 400},
	}
	files, err := filepath.Glob("testdata/fuzz/FuzzAdmissionHandler/*")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(want) {
		t.Errorf("%d seeds, %d expected answers: keep the table in step with testdata", len(files), len(want))
	}
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(name, func(t *testing.T) {
			body := seedBytes(t, file)
			status, resp := serve(t, MutatePath, body)
			if status != http.StatusOK {
				t.Errorf("HTTP %d", status)
			}
			if got := verdictOf(resp); got != want[name] {
				t.Errorf("verdict %+v, want %+v (%+v)", got, want[name], resp.Result)
			}
		})
	}
}

// seedBytes reads the one []byte argument of a corpus file of go test's fuzzing.
func seedBytes(t *testing.T, file string) []byte {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(strings.TrimSpace(string(data)), "\n", 3)
	if len(lines) != 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "[]byte(") {
		t.Fatalf("%s: not a corpus file of one []byte", file)
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return []byte(s)
}
