package defaults

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/valkey-webhook/valkey-webhook/config"
)

// keyValues gives each policy key two valid values, A then B: the property tests
// below change every key from A to B. A key added to the policy fails them until
// it is given its pair here.
var keyValues = map[string][2]string{
	"auth.enabled":                                {"true", "false"},
	"auth.existingSecret":                         {"", "cache-password"},
	"cluster.allowReadsWhenDown":                  {"false", "true"},
	"cluster.minMasters":                          {"3", "4"},
	"cluster.nodeTimeout":                         {"5000", "6000"},
	"cluster.replicaValidityFactor":               {"10", "5"},
	"cluster.replicasPerMaster":                   {"1", "0"},
	"cluster.requireFullCoverage":                 {"false", "true"},
	"image.valkey":                                {"docker.io/valkey/valkey:8.0.7", "docker.io/valkey/valkey:8.0.8"},
	"metrics.enabled":                             {"true", "false"},
	"metrics.image":                               {"docker.io/oliver006/redis_exporter:v1.67.0", "docker.io/oliver006/redis_exporter:v1.68.0"},
	"metrics.port":                                {"9121", "9122"},
	"networkPolicy.clientNamespaceSelector":       {"", "team=a"},
	"networkPolicy.clientPodSelector":             {"", "role=client"},
	"networkPolicy.enabled":                       {"true", "false"},
	"networkPolicy.monitoringNamespaceSelector":   {"kubernetes.io/metadata.name=monitoring", "kubernetes.io/metadata.name=observability"},
	"networkPolicy.monitoringPodSelector":         {"", "app=prometheus"},
	"persistence.allowEphemeral":                  {"false", "true"},
	"persistence.size":                            {"8Gi", "16Gi"},
	"persistence.storageClassName":                {"", "fast"},
	"podDisruptionBudget.enabled":                 {"true", "false"},
	"podDisruptionBudget.maxUnavailable":          {"1", "2"},
	"scaleGuard":                                  {"enforce", "warn"},
	"security.fsGroup":                            {"999", "1000"},
	"security.runAsUser":                          {"999", "1000"},
	"startupProbe.enabled":                        {"true", "false"},
	"startupProbe.failureThreshold":               {"30", "60"},
	"startupProbe.periodSeconds":                  {"10", "5"},
	"tls.authClients":                             {"false", "true"},
	"tls.clusterDomain":                           {"cluster.local", "example.internal"},
	"tls.issuer":                                  {"", "ClusterIssuer/internal-ca"},
	"tls.secretName":                              {"", "cache-tls"},
	"topologySpreadConstraints.enabled":           {"true", "false"},
	"topologySpreadConstraints.maxSkew":           {"1", "2"},
	"topologySpreadConstraints.topologyKey":       {"topology.kubernetes.io/zone", "kubernetes.io/hostname"},
	"topologySpreadConstraints.whenUnsatisfiable": {"ScheduleAnyway", "DoNotSchedule"},
	"valkey.appendfsync":                          {"everysec", "always"},
	"valkey.appendonly":                           {"true", "false"},
	"valkey.cpuRequest":                           {"100m", "250m"},
	"valkey.maxmemory":                            {"", "512Mi"},
	"valkey.maxmemoryPercent":                     {"75", "60"},
	"valkey.maxmemoryPolicy":                      {"noeviction", "allkeys-lru"},
	"valkey.port":                                 {"6379", "6380"},
	"valkey.save":                                 {"3600 1 300 100 60 10000", "900 1"},
}

// baselines are the other overrides each key is changed under: TLS and auth
// change what most injected values look like.
var baselines = map[string]map[string]string{
	"defaults":             {},
	"tls.secretName, auth": {"tls.secretName": "cache-tls", "tls.authClients": "true"},
	"tls.issuer, no auth":  {"tls.issuer": "ClusterIssuer/internal-ca", "auth.enabled": "false"},
}

func withOverrides(sts *appsv1.StatefulSet, overrides map[string]string) {
	if sts.Annotations == nil {
		sts.Annotations = map[string]string{}
	}
	for k, v := range overrides {
		sts.Annotations[config.AnnotationPrefix+k] = v
	}
}

// created is the minimal example with these overrides as admission stores it on
// CREATE under base; ok is false when the combination is not a valid policy.
func created(t *testing.T, base config.Policy, overrides map[string]string) (*appsv1.StatefulSet, bool) {
	t.Helper()
	sts, _ := readInput(t, "minimal")
	withOverrides(sts, overrides)
	return sts, len(HardenWithOverrides(sts, nil, base)) == 0
}

// basePolicy is the default policy with the baseline's keys and key set to v,
// as a policy file would set them; ok is false when that is not a valid policy.
func basePolicy(baseline map[string]string, key, v string) (config.Policy, bool) {
	annotations := map[string]string{}
	for k, bv := range merged(baseline, key, v) {
		annotations[config.AnnotationPrefix+k] = bv
	}
	p, errs := config.Effective(config.Default(), annotations, AnnotationsPath)
	return p, len(errs) == 0
}

func merged(a map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for ak, av := range a {
		if ak != k {
			out[ak] = av
		}
	}
	return out
}

// templateDiff compares two pod templates, and the records of their settings.
func templateDiff(want, got *appsv1.StatefulSet) string {
	return cmp.Diff(want.Spec.Template, got.Spec.Template) +
		cmp.Diff(want.Annotations[config.HardenedWithAnnotation], got.Annotations[config.HardenedWithAnnotation])
}

// TestUpdateOwnsInjectedState: for every override key and under each baseline,
// changing the key from A to B on UPDATE of what admission stored gives the pod
// template a CREATE with B gives; the keys fixed at CREATE keep the stored values
// (validation refuses their change, webhook.TestUpdateRefusesWhatCannotChange).
// The same holds for an object of an earlier release, which has no record of its
// settings.
func TestUpdateOwnsInjectedState(t *testing.T) {
	base := config.Default()
	for _, key := range config.AnnotationKeys() {
		values, ok := keyValues[key]
		if !ok {
			t.Errorf("%s: no values in keyValues", key)
			continue
		}
		tried := 0
		for name, baseline := range baselines {
			stored, okA := created(t, base, merged(baseline, key, values[0]))
			want, okB := created(t, base, merged(baseline, key, values[1]))
			if !okA || !okB {
				continue // e.g. tls.issuer with tls.secretName: refused at admission
			}
			tried++
			for _, record := range []bool{true, false} {
				old := stored.DeepCopy()
				if !record {
					delete(old.Annotations, config.HardenedWithAnnotation)
				}
				got := old.DeepCopy()
				withOverrides(got, map[string]string{key: values[1]})
				if errs := HardenWithOverrides(got, old, base); len(errs) > 0 {
					t.Fatalf("%s under %s: UPDATE refused: %v", key, name, errs)
				}
				if slices.Contains(FixedAtCreate, key) {
					want = stored.DeepCopy()
					want.Annotations[config.HardenedWithAnnotation] = hardenedWith(effective(t, got))
					want.Spec.Template.Annotations[ChecksumAnnotation] = got.Spec.Template.Annotations[ChecksumAnnotation]
				}
				if diff := templateDiff(want, got); diff != "" {
					t.Errorf("%s %s -> %s under %s (record %v): UPDATE differs from CREATE (-create +update):\n%s", key, values[0], values[1], name, record, diff)
				}
			}
		}
		if tried == 0 {
			t.Errorf("%s: no baseline admits both values", key)
		}
	}
}

// TestPolicyChangeReachesTemplateOnUpdate: a template stored under one policy and
// updated (a change of the user's own) under a policy whose key changed from A to
// B gives what a CREATE under the new policy gives: the record tells what the
// webhook injected, whatever the current policy says.
func TestPolicyChangeReachesTemplateOnUpdate(t *testing.T) {
	userChange := func(sts *appsv1.StatefulSet) { sts.Spec.Template.Labels["tier"] = "cache" }
	for _, key := range config.AnnotationKeys() {
		values := keyValues[key]
		tried := 0
		for name, baseline := range baselines {
			before, okA := basePolicy(baseline, key, values[0])
			after, okB := basePolicy(baseline, key, values[1])
			if !okA || !okB {
				continue
			}
			tried++
			old, ok := created(t, before, nil)
			if !ok {
				t.Fatalf("%s under %s: CREATE under the first policy refused", key, name)
			}
			got := old.DeepCopy()
			userChange(got)
			if errs := HardenWithOverrides(got, old, after); len(errs) > 0 {
				t.Fatalf("%s under %s: UPDATE refused: %v", key, name, errs)
			}
			want, _ := readInput(t, "minimal")
			userChange(want)
			if errs := HardenWithOverrides(want, nil, after); len(errs) > 0 {
				t.Fatal(errs)
			}
			if slices.Contains(FixedAtCreate, key) {
				continue // the stored UID and claim templates stay; docs/design.md
			}
			if diff := templateDiff(want, got); diff != "" {
				t.Errorf("%s %s -> %s in the policy, under %s: UPDATE differs from CREATE (-create +update):\n%s", key, values[0], values[1], name, diff)
			}
		}
		if tried == 0 {
			t.Errorf("%s: no baseline admits both values", key)
		}
	}
}

// TestTemplateKeys: a key changes the hardened pod template (apart from the config
// checksum) under some baseline exactly when it is one of templateKeys, so that
// the record holds every setting the template depends on, and the tests above
// change something for each of them.
func TestTemplateKeys(t *testing.T) {
	for _, key := range config.AnnotationKeys() {
		values := keyValues[key]
		changes := false
		for _, baseline := range baselines {
			a, okA := created(t, config.Default(), merged(baseline, key, values[0]))
			b, okB := created(t, config.Default(), merged(baseline, key, values[1]))
			if okA && okB && !sameApartFromChecksum(a.Spec.Template, b.Spec.Template) {
				changes = true
			}
		}
		// image.valkey is the image of the container added to a template without one.
		bare := func(v string) corev1.PodTemplateSpec {
			sts, _ := readInput(t, "minimal")
			sts.Spec.Template.Spec.Containers = nil
			withOverrides(sts, map[string]string{key: v})
			HardenWithOverrides(sts, nil, config.Default())
			return sts.Spec.Template
		}
		if !sameApartFromChecksum(bare(values[0]), bare(values[1])) {
			changes = true
		}
		if listed := slices.Contains(templateKeys, key); changes != listed {
			t.Errorf("%s: changes the pod template %v, listed in templateKeys %v", key, changes, listed)
		}
	}
}

// TestUpdateKeepsWhatTheUserSet: a value the user set differently from what
// would be injected stays through a change of settings.
func TestUpdateKeepsWhatTheUserSet(t *testing.T) {
	old, _ := created(t, config.Default(), nil)
	own := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}, PeriodSeconds: 7}
	FindContainer(old.Spec.Template.Spec.Containers, ValkeyContainer).ReadinessProbe = own.DeepCopy()
	got := old.DeepCopy()
	withOverrides(got, map[string]string{"valkey.port": "6380"})
	if errs := HardenWithOverrides(got, old, config.Default()); len(errs) > 0 {
		t.Fatal(errs)
	}
	c := FindContainer(got.Spec.Template.Spec.Containers, ValkeyContainer)
	if diff := cmp.Diff(own, c.ReadinessProbe); diff != "" {
		t.Errorf("the user's readiness probe changed:\n%s", diff)
	}
	if diff := cmp.Diff(livenessProbe(effective(t, got)), c.LivenessProbe); diff != "" {
		t.Errorf("the injected liveness probe is not the new port's:\n%s", diff)
	}
}

func effective(t *testing.T, sts *appsv1.StatefulSet) *config.Policy {
	t.Helper()
	p, errs := config.Effective(config.Default(), sts.Annotations, AnnotationsPath)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return &p
}

// TestRehardenedIsTheUpdate: for every policy key, under each baseline, a
// template stored under a policy with the key's value A, rehardened under one
// with B, is what a CREATE under B gives (the config checksum as stored), with
// the key named; a key fixed at CREATE, or one the template does not read,
// changes nothing and names nothing. Admission then stores the rehardened
// object as it is (its volumes perhaps in another order), and that stored
// object is not rehardened again: the companion controller's patch and the
// webhook never disagree, nor take turns. Under the same policy nothing changes.
func TestRehardenedIsTheUpdate(t *testing.T) {
	for _, key := range config.AnnotationKeys() {
		values := keyValues[key]
		for name, baseline := range baselines {
			before, okA := basePolicy(baseline, key, values[0])
			after, okB := basePolicy(baseline, key, values[1])
			if !okA || !okB {
				continue
			}
			old, _ := created(t, before, nil)
			same, keys := Rehardened(old, before, &before)
			if diff := cmp.Diff(old, same); diff != "" || keys != nil {
				t.Errorf("%s under %s, the same policy: keys %v, changes (-stored +rehardened):\n%s", key, name, keys, diff)
			}

			got, keys := Rehardened(old, after, &after)
			want, _ := created(t, after, nil)
			want.Spec.Template.Annotations[ChecksumAnnotation] = old.Spec.Template.Annotations[ChecksumAnnotation]
			if slices.Contains(FixedAtCreate, key) || !slices.Contains(templateKeys, key) {
				want = old
			}
			if diff := cmp.Diff(want.Spec.Template, got.Spec.Template); diff != "" {
				t.Errorf("%s %s -> %s in the policy, under %s: rehardened differs from CREATE (-create +rehardened):\n%s", key, values[0], values[1], name, diff)
			}
			wantKeys := []string{key}
			if equality.Semantic.DeepEqual(old.Spec.Template, want.Spec.Template) {
				wantKeys = nil
			}
			if !slices.Equal(keys, wantKeys) {
				t.Errorf("%s under %s: keys %v, want %v", key, name, keys, wantKeys)
			}
			if keys == nil {
				continue
			}
			// The controller's patch asks for the checksum of the settings
			// rendered now, as it does when they change.
			got.Spec.Template.Annotations[ChecksumAnnotation] = Checksum(ValkeyConf(got, &after))
			admitted := got.DeepCopy()
			if errs := HardenWithOverrides(admitted, old, after); len(errs) > 0 {
				t.Fatalf("%s under %s: admission refuses the rehardened object: %v", key, name, errs)
			}
			// Admission may keep, as the user's, a volume that the new settings
			// name differently (auth.existingSecret) ahead of those it adds: the
			// same volumes in another order.
			byName := cmpopts.SortSlices(func(a, b corev1.Volume) bool { return a.Name < b.Name })
			if diff := cmp.Diff(got, admitted, byName); diff != "" {
				t.Errorf("%s under %s: admission changes the rehardened object (-rehardened +admitted):\n%s", key, name, diff)
			}
			if again, keys := Rehardened(admitted, after, &after); keys != nil || !equality.Semantic.DeepEqual(again, admitted) {
				t.Errorf("%s under %s: what admission stored is rehardened again (keys %v): the controller would patch it again", key, name, keys)
			}
		}
	}
}
