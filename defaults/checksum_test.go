package defaults

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/valkey-webhook/valkey-webhook/config"
)

func TestChecksumCountsSettingsOnly(t *testing.T) {
	const base = "# Rendered by valkey-webhook\nport 6379\nsave 3600 1\nsave 300 100\nmaxmemory-policy noeviction\n"
	tests := []struct {
		name string
		conf string
		same bool
	}{
		{"a comment changed", "# Written by valkey-webhook\nport 6379\nsave 3600 1\nsave 300 100\nmaxmemory-policy noeviction\n", true},
		{"a comment and blank lines added", "# a\n\nport 6379\n   # b\nsave 3600 1\nsave 300 100\n\nmaxmemory-policy noeviction\n", true},
		{"different directives reordered", "maxmemory-policy noeviction\nsave 3600 1\nsave 300 100\nport 6379\n", true},
		{"spacing and the case of a name", "PORT   6379\nsave 3600   1\n\tsave 300 100\nmaxmemory-policy noeviction", true},
		{"a value changed", "port 6380\nsave 3600 1\nsave 300 100\nmaxmemory-policy noeviction\n", false},
		{"a directive added", base + "appendonly yes\n", false},
		{"a directive removed", "port 6379\nsave 3600 1\nsave 300 100\n", false},
		{"one directive's repeated lines reordered", "port 6379\nsave 300 100\nsave 3600 1\nmaxmemory-policy noeviction\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Checksum(tt.conf) == Checksum(base); got != tt.same {
				t.Errorf("same checksum = %v, want %v:\n%s", got, tt.same, tt.conf)
			}
			if got := SameSettings(tt.conf, base); got != tt.same {
				t.Errorf("SameSettings = %v, want %v", got, tt.same)
			}
		})
	}
	if LegacyChecksum(base) == Checksum(base) {
		t.Error("the legacy checksum (of the whole text) equals the settings checksum: the two forms cannot be told apart")
	}
}

// TestUpdateKeepsChecksumWithoutSettingsChange: an UPDATE keeps the checksum the
// stored object carries, in whatever form, unless it changes what Valkey reads.
func TestUpdateKeepsChecksumWithoutSettingsChange(t *testing.T) {
	stored := func() *appsv1.StatefulSet {
		sts, _ := readInput(t, "minimal")
		if errs := HardenWithOverrides(sts, nil, config.Default()); len(errs) > 0 {
			t.Fatal(errs)
		}
		sts.Spec.Template.Annotations[ChecksumAnnotation] = LegacyChecksum(ValkeyConf(sts, new(config.Default())))
		return sts
	}
	legacy := stored().Spec.Template.Annotations[ChecksumAnnotation]
	tests := []struct {
		name   string
		update func(*appsv1.StatefulSet)
		keep   bool
	}{
		{"an env var added to the valkey container: kept", func(s *appsv1.StatefulSet) {
			s.Spec.Template.Spec.Containers[0].Env = append(s.Spec.Template.Spec.Containers[0].Env, corev1.EnvVar{Name: "TZ", Value: "UTC"})
		}, true},
		{"the annotation dropped by a PUT of the manifest: put back as stored", func(s *appsv1.StatefulSet) {
			delete(s.Spec.Template.Annotations, ChecksumAnnotation)
		}, true},
		{"an override that changes no setting (the NetworkPolicy): kept", func(s *appsv1.StatefulSet) {
			s.Annotations = map[string]string{"valkey-webhook.io/networkPolicy.enabled": "false"}
		}, true},
		{"the memory limit, which sets maxmemory: recomputed", func(s *appsv1.StatefulSet) {
			s.Spec.Template.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory] = resource.MustParse("2Gi")
		}, false},
		{"an override of a setting: recomputed", func(s *appsv1.StatefulSet) {
			s.Annotations = map[string]string{"valkey-webhook.io/cluster.nodeTimeout": "15000"}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := stored()
			sts := old.DeepCopy()
			tt.update(sts)
			if errs := HardenWithOverrides(sts, old, config.Default()); len(errs) > 0 {
				t.Fatal(errs)
			}
			p, errs := config.Effective(config.Default(), sts.Annotations, AnnotationsPath)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			want := Checksum(ValkeyConf(sts, &p))
			if tt.keep {
				want = legacy
			}
			if got := sts.Spec.Template.Annotations[ChecksumAnnotation]; got != want {
				t.Errorf("checksum %s, want %s (keep=%v)", got, want, tt.keep)
			}
		})
	}
}

// TestUpdateTakesTheControllersChecksumPatch: after the base policy changed, the
// companion controller's patch of the checksum, and nothing else, to that of the
// settings rendered now is what rolls the pods: admission keeps it. A stale
// checksum put back by a PUT, or one for settings other than those rendered now,
// is not a roll anyone asked for: the stored one stays.
func TestUpdateTakesTheControllersChecksumPatch(t *testing.T) {
	sts, _ := readInput(t, "minimal")
	if errs := HardenWithOverrides(sts, nil, config.Default()); len(errs) > 0 {
		t.Fatal(errs)
	}
	before := sts.Spec.Template.Annotations[ChecksumAnnotation]
	edited := config.Default()
	edited.Cluster.NodeTimeout = 6000
	now := Checksum(ValkeyConf(sts, &edited))
	if now == before {
		t.Fatal("the edited policy renders the same settings: the test proves nothing")
	}
	tests := []struct {
		name   string
		stored string
		asked  string
		want   string
	}{
		{"the checksum of the settings rendered now: taken", before, now, now},
		{"a stale checksum: the stored one stays", now, before, now},
		{"an arbitrary value: the stored one stays", before, "sha256:0000", before},
		{"the stored one is the earlier form of the settings rendered now: it stays", LegacyChecksum(ValkeyConf(sts, &edited)), now, LegacyChecksum(ValkeyConf(sts, &edited))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := sts.DeepCopy()
			old.Spec.Template.Annotations[ChecksumAnnotation] = tt.stored
			update := old.DeepCopy()
			update.Spec.Template.Annotations[ChecksumAnnotation] = tt.asked
			if errs := HardenWithOverrides(update, old, edited); len(errs) > 0 {
				t.Fatal(errs)
			}
			if got := update.Spec.Template.Annotations[ChecksumAnnotation]; got != tt.want {
				t.Errorf("checksum %s, want %s", got, tt.want)
			}
		})
	}
}
