package config_test

import (
	"maps"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/valkey-webhook/valkey-webhook/config"
)

var annotationsPath = field.NewPath("metadata", "annotations")

// annotation is the field path of the annotation that overrides key.
func annotation(key string) *field.Path {
	return annotationsPath.Key(config.AnnotationPrefix + key)
}

func TestEffective(t *testing.T) {
	tests := []struct {
		name        string
		base        config.Policy
		annotations map[string]string
		want        config.Policy
		wantErr     field.ErrorList
	}{
		{
			name: "no annotations",
			base: config.Default(),
			want: config.Default(),
		},
		{
			name:        "empty annotations",
			base:        config.Default(),
			annotations: map[string]string{},
			want:        config.Default(),
		},
		{
			name: "base other than the defaults",
			base: withDefaults(func(p *config.Policy) {
				p.Cluster.NodeTimeout = 7000
				p.Enforcement.Unlabeled = config.EnforceDeny
			}),
			want: withDefaults(func(p *config.Policy) {
				p.Cluster.NodeTimeout = 7000
				p.Enforcement.Unlabeled = config.EnforceDeny
			}),
		},
		{
			name: "string, bool and int overrides",
			base: config.Default(),
			annotations: map[string]string{
				"valkey-webhook.io/cluster.nodeTimeout":          "15000",
				"valkey-webhook.io/cluster.replicasPerMaster":    " 2 ",
				"valkey-webhook.io/persistence.allowEphemeral":   "true",
				"valkey-webhook.io/metrics.enabled":              "false",
				"valkey-webhook.io/valkey.maxmemoryPolicy":       "allkeys-lru",
				"valkey-webhook.io/valkey.maxmemory":             "512Mi",
				"valkey-webhook.io/tls.issuer":                   "ClusterIssuer/internal-ca",
				"valkey-webhook.io/persistence.storageClassName": "fast-ssd",
			},
			want: withDefaults(func(p *config.Policy) {
				p.Cluster.NodeTimeout = 15000
				p.Cluster.ReplicasPerMaster = 2
				p.Persistence.AllowEphemeral = true
				p.Metrics.Enabled = false
				p.Valkey.MaxmemoryPolicy = "allkeys-lru"
				p.Valkey.Maxmemory = "512Mi"
				p.TLS.Issuer = "ClusterIssuer/internal-ca"
				p.Persistence.StorageClassName = "fast-ssd"
			}),
		},
		{
			name: "override to an empty string",
			base: config.Default(),
			annotations: map[string]string{
				"valkey-webhook.io/valkey.save": "",
			},
			want: withDefaults(func(p *config.Policy) { p.Valkey.Save = "" }),
		},
		{
			name: "non-prefixed annotations ignored",
			base: config.Default(),
			annotations: map[string]string{
				"cluster.nodeTimeout":                       "x",
				"example.com/cluster.nodeTimeout":           "x",
				"valkey-webhook.iox/cluster.nodeTimeout":    "x",
				"kubectl.kubernetes.io/last-applied-config": "{}",
				"valkey-webhook.io/cluster.nodeTimeout":     "6000",
			},
			want: withDefaults(func(p *config.Policy) { p.Cluster.NodeTimeout = 6000 }),
		},
		{
			name:        "unknown key",
			base:        config.Default(),
			annotations: map[string]string{"valkey-webhook.io/foo": "bar"},
			want:        config.Default(),
			wantErr:     field.ErrorList{field.NotSupported[string](annotation("foo"), "valkey-webhook.io/foo", nil)},
		},
		{
			name:        "a section is not a key",
			base:        config.Default(),
			annotations: map[string]string{"valkey-webhook.io/cluster": "enabled"},
			want:        config.Default(),
			wantErr:     field.ErrorList{field.NotSupported[string](annotation("cluster"), "valkey-webhook.io/cluster", nil)},
		},
		{
			name:        "enforcement.unlabeled is cluster-wide only",
			base:        config.Default(),
			annotations: map[string]string{"valkey-webhook.io/enforcement.unlabeled": "off"},
			want:        config.Default(),
			wantErr:     field.ErrorList{field.NotSupported[string](annotation("enforcement.unlabeled"), "valkey-webhook.io/enforcement.unlabeled", nil)},
		},
		{
			name:        "scaleGuard, a top-level key, per object",
			base:        config.Default(),
			annotations: map[string]string{"valkey-webhook.io/scaleGuard": "off"},
			want:        withDefaults(func(p *config.Policy) { p.ScaleGuard = config.ScaleGuardOff }),
		},
		{
			name:        "scaleGuard unknown mode, at the annotation",
			base:        config.Default(),
			annotations: map[string]string{"valkey-webhook.io/scaleGuard": "disabled"},
			want:        config.Default(),
			wantErr:     field.ErrorList{field.NotSupported(annotation("scaleGuard"), "disabled", []string{"enforce", "off", "warn"})},
		},
		{
			name:        "bad bool",
			base:        config.Default(),
			annotations: map[string]string{"valkey-webhook.io/persistence.allowEphemeral": "yes please"},
			want:        config.Default(),
			wantErr:     field.ErrorList{field.Invalid(annotation("persistence.allowEphemeral"), "yes please", "")},
		},
		{
			name:        "bad int",
			base:        config.Default(),
			annotations: map[string]string{"valkey-webhook.io/cluster.nodeTimeout": "5s"},
			want:        config.Default(),
			wantErr:     field.ErrorList{field.Invalid(annotation("cluster.nodeTimeout"), "5s", "")},
		},
		{
			name:        "int too large",
			base:        config.Default(),
			annotations: map[string]string{"valkey-webhook.io/cluster.nodeTimeout": "3000000000"},
			want:        config.Default(),
			wantErr:     field.ErrorList{field.Invalid(annotation("cluster.nodeTimeout"), "3000000000", "")},
		},
		{
			name:        "valid type, invalid value",
			base:        config.Default(),
			annotations: map[string]string{"valkey-webhook.io/podDisruptionBudget.maxUnavailable": "0"},
			want:        config.Default(),
			wantErr:     field.ErrorList{field.Invalid(annotation("podDisruptionBudget.maxUnavailable"), 0, "")},
		},
		{
			name:        "valid type, value not in the enum",
			base:        config.Default(),
			annotations: map[string]string{"valkey-webhook.io/valkey.appendfsync": "sometimes"},
			want:        config.Default(),
			wantErr:     field.ErrorList{field.NotSupported(annotation("valkey.appendfsync"), "sometimes", []string{"always", "everysec", "no"})},
		},
		{
			name:        "cross-field error at the annotation that caused it",
			base:        withDefaults(func(p *config.Policy) { p.TLS.Issuer = "ClusterIssuer/internal-ca" }),
			annotations: map[string]string{"valkey-webhook.io/tls.secretName": "my-tls"},
			want:        withDefaults(func(p *config.Policy) { p.TLS.Issuer = "ClusterIssuer/internal-ca" }),
			wantErr:     field.ErrorList{field.Forbidden(annotation("tls.secretName"), "")},
		},
		{
			name:        "tls.authClients without TLS at its annotation",
			base:        config.Default(),
			annotations: map[string]string{"valkey-webhook.io/tls.authClients": "true"},
			want:        config.Default(),
			wantErr:     field.ErrorList{field.Forbidden(annotation("tls.authClients"), "")},
		},
		{
			name:        "invalid base reported at its policy key",
			base:        withDefaults(func(p *config.Policy) { p.Cluster.MinMasters = 1 }),
			annotations: map[string]string{"valkey-webhook.io/cluster.nodeTimeout": "6000"},
			want:        withDefaults(func(p *config.Policy) { p.Cluster.MinMasters = 1 }),
			wantErr:     field.ErrorList{field.Invalid(config.KeyPath("cluster.minMasters"), 1, "")},
		},
		{
			name: "every parse error, sorted by annotation, validation skipped",
			base: config.Default(),
			annotations: map[string]string{
				"valkey-webhook.io/podDisruptionBudget.maxUnavailable": "0",
				"valkey-webhook.io/metrics.enabled":                    "maybe",
				"valkey-webhook.io/bogus":                              "1",
				"valkey-webhook.io/cluster.nodeTimeout":                "soon",
			},
			want: config.Default(),
			wantErr: field.ErrorList{
				field.NotSupported[string](annotation("bogus"), "valkey-webhook.io/bogus", nil),
				field.Invalid(annotation("cluster.nodeTimeout"), "soon", ""),
				field.Invalid(annotation("metrics.enabled"), "maybe", ""),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := tc.base
			got, errs := config.Effective(tc.base, tc.annotations, annotationsPath)
			if diff := cmp.Diff(tc.wantErr, errs, ignoreDetail); diff != "" {
				t.Errorf("Effective() errors mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Effective() policy mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(base, tc.base); diff != "" {
				t.Errorf("Effective() changed its base (-before +after):\n%s", diff)
			}
		})
	}
}

// TestEffectiveUnknownKeyMessage is about the message itself: it lists the
// annotations that exist, and not the cluster-wide keys.
func TestEffectiveUnknownKeyMessage(t *testing.T) {
	for _, name := range []string{"valkey-webhook.io/foo", "valkey-webhook.io/enforcement.unlabeled"} {
		t.Run(name, func(t *testing.T) {
			_, errs := config.Effective(config.Default(), map[string]string{name: "x"}, annotationsPath)
			if len(errs) != 1 {
				t.Fatalf("Effective() errors = %v, want one", errs)
			}
			detail := errs[0].Detail
			for _, known := range []string{`"valkey-webhook.io/cluster.nodeTimeout"`, `"valkey-webhook.io/tls.issuer"`, `"valkey-webhook.io/persistence.allowEphemeral"`} {
				if !strings.Contains(detail, known) {
					t.Errorf("detail %q does not list %s", detail, known)
				}
			}
			if strings.Contains(detail, "enforcement.") {
				t.Errorf("detail %q lists a cluster-wide key", detail)
			}
		})
	}
}

func TestAnnotationKeys(t *testing.T) {
	clusterWide := func(k string) bool {
		return strings.HasPrefix(k, "enforcement.") || strings.HasPrefix(k, "rollout.")
	}
	var want []string
	for _, k := range config.Keys() {
		if !clusterWide(k) {
			want = append(want, k)
		}
	}
	got := config.AnnotationKeys()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("AnnotationKeys() mismatch (-want +got):\n%s", diff)
	}
	if !sort.StringsAreSorted(got) {
		t.Errorf("AnnotationKeys() is not sorted: %v", got)
	}
	if len(got) != len(config.Keys())-4 {
		t.Errorf("AnnotationKeys() has %d keys, want all %d keys but enforcement.unlabeled, rollout.healthTimeoutSeconds, rollout.maxClusters and rollout.requireGo", len(got), len(config.Keys()))
	}
}

func TestOverrides(t *testing.T) {
	got := config.Overrides(map[string]string{
		"valkey-webhook.io/cluster.nodeTimeout": "6000",
		"valkey-webhook.io/foo":                 "bar",
		"example.com/cluster.nodeTimeout":       "7000",
	})
	want := map[string]string{
		"valkey-webhook.io/cluster.nodeTimeout": "6000",
		"valkey-webhook.io/foo":                 "bar",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Overrides() mismatch (-want +got):\n%s", diff)
	}
}

func TestWithoutInheritedUnknown(t *testing.T) {
	tests := []struct {
		name        string
		annotations map[string]string
		old         map[string]string
		want        map[string]string
		dropped     []string
	}{{
		name:        "an unknown key the stored object carries with the same value: dropped",
		annotations: map[string]string{"valkey-webhook.io/cluster.oldName": "1", "valkey-webhook.io/cluster.nodeTimeout": "6000", "team": "a"},
		old:         map[string]string{"valkey-webhook.io/cluster.oldName": "1"},
		want:        map[string]string{"valkey-webhook.io/cluster.nodeTimeout": "6000", "team": "a"},
		dropped:     []string{"valkey-webhook.io/cluster.oldName"},
	}, {
		name:        "an unknown key the update adds: kept, for Effective to refuse",
		annotations: map[string]string{"valkey-webhook.io/cluster.oldName": "1"},
		old:         map[string]string{},
		want:        map[string]string{"valkey-webhook.io/cluster.oldName": "1"},
	}, {
		name:        "an unknown key the update changes: kept",
		annotations: map[string]string{"valkey-webhook.io/cluster.oldName": "2"},
		old:         map[string]string{"valkey-webhook.io/cluster.oldName": "1"},
		want:        map[string]string{"valkey-webhook.io/cluster.oldName": "2"},
	}, {
		name:        "a cluster-wide key as an annotation, carried over: dropped like an unknown one",
		annotations: map[string]string{"valkey-webhook.io/enforcement.unlabeled": "deny"},
		old:         map[string]string{"valkey-webhook.io/enforcement.unlabeled": "deny"},
		want:        map[string]string{},
		dropped:     []string{"valkey-webhook.io/enforcement.unlabeled"},
	}, {
		name:        "a known key carried over: kept (its value is checked as always)",
		annotations: map[string]string{"valkey-webhook.io/cluster.nodeTimeout": "1"},
		old:         map[string]string{"valkey-webhook.io/cluster.nodeTimeout": "1"},
		want:        map[string]string{"valkey-webhook.io/cluster.nodeTimeout": "1"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := maps.Clone(tt.annotations)
			got, dropped := config.WithoutInheritedUnknown(tt.annotations, tt.old)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("annotations (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.dropped, dropped); diff != "" {
				t.Errorf("dropped (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, tt.annotations); diff != "" {
				t.Errorf("the input changed (-before +after):\n%s", diff)
			}
		})
	}
}
