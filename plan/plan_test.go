package plan

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// stored is the minimal example as admission stores it under the default
// policy, and the valkey.conf its ConfigMap holds.
func stored(t *testing.T) (*appsv1.StatefulSet, string) {
	t.Helper()
	data, err := os.ReadFile("../examples/minimal-statefulset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sts := &appsv1.StatefulSet{}
	if err := yaml.UnmarshalStrict(data, sts); err != nil {
		t.Fatal(err)
	}
	if errs := defaults.HardenWithOverrides(sts, nil, config.Default()); len(errs) > 0 {
		t.Fatal(errs)
	}
	p, errs := config.Effective(config.Default(), sts.Annotations, defaults.AnnotationsPath)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return sts, defaults.ValkeyConf(sts, &p)
}

func TestStatefulSet(t *testing.T) {
	checksum := "replace /spec/template/metadata/annotations/valkey-webhook.io~1config-checksum"
	// The gos for the roll to cluster.nodeTimeout 6000, and to a startup probe
	// every 7 s: a hash of the settings and the template's keys.
	goFor := func(edit func(*config.Policy)) string {
		sts, _ := stored(t)
		p := config.Default()
		edit(&p)
		value, _ := defaults.AwaitsGo(sts, &p, defaults.ValkeyConf(sts, &p))
		return value
	}
	requireGo6000 := func(p *config.Policy) { p.Cluster.NodeTimeout, p.Rollout.RequireGo = 6000, true }
	go6000 := goFor(requireGo6000)
	requireGoPeriod7 := func(p *config.Policy) { p.StartupProbe.PeriodSeconds, p.Rollout.RequireGo = 7, true }
	goPeriod7 := goFor(requireGoPeriod7)
	tests := []struct {
		name   string
		policy func(*config.Policy)
		stored func(sts *appsv1.StatefulSet, held string) (*appsv1.StatefulSet, string, bool)
		want   Change
	}{
		{
			name: "the same policy: unchanged",
			want: Change{},
		},
		{
			name:   "a setting: rolls, with the settings",
			policy: func(p *config.Policy) { p.Cluster.NodeTimeout = 6000 },
			want: Change{Rolls: true, Settings: true, Removed: []string{"cluster-node-timeout 5000"}, Added: []string{"cluster-node-timeout 6000"},
				Fields: []string{checksum}},
		},
		{
			name:   "a setting with rollout.requireGo: rolls after the go for its checksum",
			policy: requireGo6000,
			want: Change{Rolls: true, Settings: true, Go: go6000, Removed: []string{"cluster-node-timeout 5000"}, Added: []string{"cluster-node-timeout 6000"},
				Fields: []string{checksum}},
		},
		{
			name:   "a setting with rollout.requireGo, the go given: rolls in its turn",
			policy: requireGo6000,
			stored: func(sts *appsv1.StatefulSet, held string) (*appsv1.StatefulSet, string, bool) {
				sts.Annotations[config.RolloutGoAnnotation] = go6000
				return sts, held, true
			},
			want: Change{Rolls: true, Settings: true, Removed: []string{"cluster-node-timeout 5000"}, Added: []string{"cluster-node-timeout 6000"},
				Fields: []string{checksum}},
		},
		{
			name:   "a setting with rollout.requireGo, a go for another change: awaits its own",
			policy: requireGo6000,
			stored: func(sts *appsv1.StatefulSet, held string) (*appsv1.StatefulSet, string, bool) {
				sts.Annotations[config.RolloutGoAnnotation] = "sha256:earlier"
				return sts, held, true
			},
			want: Change{Rolls: true, Settings: true, Go: go6000, Removed: []string{"cluster-node-timeout 5000"}, Added: []string{"cluster-node-timeout 6000"},
				Fields: []string{checksum}},
		},
		{
			// A roll the gate let start whose checksum patch did not land: the
			// controller writes it without asking for a go.
			name:   "rollout.requireGo, the held settings unchanged but the checksum stale: rolls, no go asked",
			policy: func(p *config.Policy) { p.Rollout.RequireGo = true },
			stored: func(sts *appsv1.StatefulSet, held string) (*appsv1.StatefulSet, string, bool) {
				sts.Spec.Template.Annotations[defaults.ChecksumAnnotation] = "sha256:stale"
				return sts, held, true
			},
			want: Change{Rolls: true, Settings: true, Fields: []string{checksum}},
		},
		{
			name:   "a setting, without the ConfigMap: rolls, the settings unknown",
			policy: func(p *config.Policy) { p.Cluster.NodeTimeout = 6000 },
			stored: func(sts *appsv1.StatefulSet, _ string) (*appsv1.StatefulSet, string, bool) { return sts, "", false },
			want:   Change{Rolls: true, Settings: true, Fields: []string{checksum}},
		},
		{
			name:   "keys only the template reads: rolls, with the keys and the fields",
			policy: func(p *config.Policy) { p.StartupProbe.PeriodSeconds = 7; p.Metrics.Enabled = false },
			want: Change{Rolls: true, Keys: []string{"metrics.enabled", "startupProbe.periodSeconds"}, Fields: []string{
				"remove /spec/template/spec/containers/1",
				"replace /spec/template/spec/containers/0/startupProbe/periodSeconds",
			}},
		},
		{
			name:   "a key only the template reads, with rollout.requireGo: rolls after the go for it",
			policy: requireGoPeriod7,
			want: Change{Rolls: true, Keys: []string{"startupProbe.periodSeconds"}, Go: goPeriod7,
				Fields: []string{"replace /spec/template/spec/containers/0/startupProbe/periodSeconds"}},
		},
		{
			// An earlier release's object has no record of what was injected:
			// its overrides over the new policy stand for it, and nothing of
			// its template is told to be injected (docs/design.md).
			name:   "a key only the template reads, an object with no record: unchanged",
			policy: func(p *config.Policy) { p.StartupProbe.PeriodSeconds = 7 },
			stored: func(sts *appsv1.StatefulSet, held string) (*appsv1.StatefulSet, string, bool) {
				delete(sts.Annotations, config.HardenedWithAnnotation)
				return sts, held, true
			},
			want: Change{},
		},
		{
			// The controller keeps it; an update of the template, which rolls the
			// pods anyway, writes the checksum of what it renders, in the new form.
			name: "an earlier release's checksum of a text with the same settings: no roll, the new form at the next update",
			stored: func(sts *appsv1.StatefulSet, held string) (*appsv1.StatefulSet, string, bool) {
				held = "# written by an earlier release\n" + held
				sts.Spec.Template.Annotations[defaults.ChecksumAnnotation] = defaults.LegacyChecksum(held)
				return sts, held, true
			},
			want: Change{Fields: []string{checksum}},
		},
		{
			name: "an unknown override: left alone",
			stored: func(sts *appsv1.StatefulSet, held string) (*appsv1.StatefulSet, string, bool) {
				sts.Annotations["valkey-webhook.io/cluster.nodeTimout"] = "6000"
				return sts, held, true
			},
			want: Change{Invalid: "x"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sts, held := stored(t)
			hasHeld := true
			if tt.stored != nil {
				sts, held, hasHeld = tt.stored(sts, held)
			}
			p := config.Default()
			if tt.policy != nil {
				tt.policy(&p)
			}
			got, err := StatefulSet(sts, held, hasHeld, p)
			if err != nil {
				t.Fatal(err)
			}
			tt.want.Namespace, tt.want.Name = sts.Namespace, sts.Name
			if tt.want.Invalid != "" {
				// The field, the value refused, and the key the user meant among
				// those supported: the whole list is config's, tested there.
				prefix := `metadata.annotations[valkey-webhook.io/cluster.nodeTimout]: Unsupported value: "valkey-webhook.io/cluster.nodeTimout": supported values: `
				if !strings.HasPrefix(got.Invalid, prefix) || !strings.Contains(got.Invalid, `"valkey-webhook.io/cluster.nodeTimeout"`) {
					t.Errorf("Invalid = %q, want %q and the supported key valkey-webhook.io/cluster.nodeTimeout", got.Invalid, prefix)
				}
				tt.want.Invalid = got.Invalid
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

// TestRestart: a policy edit that turns TLS on holds a cluster whose pods run
// and would roll one at a time, and only such a cluster.
func TestRestart(t *testing.T) {
	tlsOn := config.Default()
	tlsOn.TLS.SecretName = "cache-tls"
	tests := []struct {
		name   string
		stored func(*appsv1.StatefulSet)
		want   string
	}{
		{"pods running, RollingUpdate", func(sts *appsv1.StatefulSet) { sts.Status.Replicas = 6 }, "turns TLS on"},
		{"pods running, OnDelete", func(sts *appsv1.StatefulSet) {
			sts.Status.Replicas = 6
			sts.Spec.UpdateStrategy.Type = appsv1.OnDeleteStatefulSetStrategyType
		}, ""},
		{"no pod", func(*appsv1.StatefulSet) {}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sts, held := stored(t)
			tt.stored(sts)
			got, err := StatefulSet(sts, held, true, tlsOn)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Rolls || !got.Settings || got.Restart != tt.want {
				t.Errorf("Rolls %v, Settings %v, Restart %q; want a roll of the settings, Restart %q", got.Rolls, got.Settings, got.Restart, tt.want)
			}
		})
	}
}

func TestText(t *testing.T) {
	tests := []struct {
		change Change
		want   string
	}{
		{Change{Namespace: "a", Name: "b"}, "a/b: unchanged\n"},
		{Change{Namespace: "a", Name: "b", Rolls: true, Settings: true, Removed: []string{"x 1"}, Added: []string{"x 2"}, Fields: []string{"replace /p"}},
			"a/b: rolls its pods, in its turn of the paced rollout: valkey.conf settings change\n    - x 1\n    + x 2\n  its pod template changes:\n    replace /p\n"},
		{Change{Namespace: "a", Name: "b", Rolls: true, Settings: true, Go: "sha256:1", Removed: []string{"x 1"}, Added: []string{"x 2"}},
			"a/b: rolls its pods once it has its go (kubectl annotate statefulset -n a b valkey-webhook.io/rollout-go=sha256:1 --overwrite), then in its turn of the paced rollout: valkey.conf settings change\n    - x 1\n    + x 2\n"},
		{Change{Namespace: "a", Name: "b", Rolls: true, Settings: true, Keys: []string{"tls.secretName"}, Restart: "turns TLS on", Go: "sha256:1", Removed: []string{"port 6379"}},
			"a/b: rolls its pods once its spec.updateStrategy.type is OnDelete (it turns TLS on while the pods run, which cannot roll one pod at a time; then delete its pods together) and it has its go (kubectl annotate statefulset -n a b valkey-webhook.io/rollout-go=sha256:1 --overwrite), then in its turn of the paced rollout: valkey.conf settings change; its pod template takes the policy's tls.secretName\n    - port 6379\n"},
		{Change{Namespace: "a", Name: "b", Rolls: true, Settings: true},
			"a/b: rolls its pods, in its turn of the paced rollout: valkey.conf settings change\n    (the settings its pods run with are not known: give its ConfigMap b-config to see them)\n"},
		{Change{Namespace: "a", Name: "b", Rolls: true, Settings: true, Keys: []string{"k.a", "k.b"}, Removed: []string{"x 1"}, Added: []string{"x 2"}},
			"a/b: rolls its pods, in its turn of the paced rollout: valkey.conf settings change; its pod template takes the policy's k.a, k.b\n    - x 1\n    + x 2\n"},
		{Change{Namespace: "a", Name: "b", Rolls: true, Keys: []string{"k.a"}, Fields: []string{"replace /p"}},
			"a/b: rolls its pods, in its turn of the paced rollout: its pod template takes the policy's k.a\n  its pod template changes:\n    replace /p\n"},
		{Change{Namespace: "a", Name: "b", Fields: []string{"remove /q"}},
			"a/b: no roll now; its next template update (which rolls the pods anyway) also changes:\n    remove /q\n"},
		{Change{Namespace: "a", Name: "b", Invalid: "bad"},
			"a/b: left alone, its overrides do not hold under this policy (fix them first): bad\n"},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, tt.change.Text()); diff != "" {
			t.Errorf("(-want +got)\n%s", diff)
		}
	}
	got := Summary([]Change{{Rolls: true}, {Fields: []string{"x"}}, {}, {}, {Invalid: "bad"}})
	want := "5 labeled StatefulSets: 1 roll their pods (paced: rollout.maxClusters at a time), 1 change at their next template update, 2 unchanged, 1 with overrides the policy refuses"
	if got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
}
