package webhook

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// storedMinimal is the minimal example as the API server stores it under the
// default policy: hardened by Mutate.
func storedMinimal(t *testing.T) *appsv1.StatefulSet {
	t.Helper()
	var sts appsv1.StatefulSet
	if err := yaml.Unmarshal(minimalJSON(t), &sts); err != nil {
		t.Fatal(err)
	}
	if err := Mutate(&sts, nil, config.Default()); err != nil {
		t.Fatal(err)
	}
	return &sts
}

// answer is what one webhook answered: allowed or not, the denial's message,
// whether it patched, and its warnings.
type answer struct {
	Allowed  bool
	Message  string
	Patched  bool
	Warnings []string
}

// updateAnswers sends an UPDATE of old to sts to the webhooks of policy p at
// paths (the mutating and validating ones when none are given).
func updateAnswers(t *testing.T, p config.Policy, old, sts *appsv1.StatefulSet, paths ...string) map[string]answer {
	t.Helper()
	oldRaw, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(sts)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]answer{}
	if len(paths) == 0 {
		paths = []string{MutatePath, ValidatePath}
	}
	for _, path := range paths {
		_, resp := serveWith(t, p, path, review(t, "UPDATE", "StatefulSet", "statefulsets", "", raw, oldRaw))
		a := answer{Allowed: resp.Allowed, Patched: len(resp.Patch) > 0, Warnings: resp.Warnings}
		if resp.Result != nil && !resp.Allowed {
			a.Message = resp.Result.Message
		}
		out[path] = a
	}
	return out
}

// TestUpdateUnderTightenedPolicy: the policy now wants 4 masters (8 pods) and
// the stored StatefulSet has 6. An update is refused only for what it changes.
func TestUpdateUnderTightenedPolicy(t *testing.T) {
	tight := config.Default()
	tight.Cluster.MinMasters = 4
	replicasDenial := "spec.replicas: Invalid value: 6: must be at least 8"
	replicasCarried := replicasDenial + ": 4 masters x (1 + 1 replicas per master); raise spec.replicas, or lower valkey-webhook.io/cluster.replicasPerMaster (the stored object breaks this rule already: allowed on UPDATE, fix it when you can)"
	unknown := "valkey-webhook.io/cluster.renamedKey"
	unknownCarried := "metadata.annotations[valkey-webhook.io/cluster.renamedKey]: unknown key, kept from the stored object and ignored: remove it (the known keys are in the README, The policy)"
	tests := []struct {
		name   string
		policy config.Policy
		old    func(*appsv1.StatefulSet)
		update func(*appsv1.StatefulSet)
		want   map[string]answer
	}{{
		name:   "a label outside valkey-webhook.io/: allowed, the carried violation warned",
		policy: tight,
		update: func(s *appsv1.StatefulSet) { s.Labels["team"] = "payments" },
		want: map[string]answer{
			MutatePath:   {Allowed: true},
			ValidatePath: {Allowed: true, Warnings: []string{replicasCarried}},
		},
	}, {
		name:   "a finalizer added: allowed",
		policy: tight,
		update: func(s *appsv1.StatefulSet) { s.Finalizers = append(s.Finalizers, "example.com/backup") },
		want: map[string]answer{
			MutatePath:   {Allowed: true},
			ValidatePath: {Allowed: true, Warnings: []string{replicasCarried}},
		},
	}, {
		name:   "the garbage collector's finalizer removal on an object being deleted: allowed, nothing said",
		policy: tight,
		old: func(s *appsv1.StatefulSet) {
			s.DeletionTimestamp = &metav1.Time{Time: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
			s.Finalizers = []string{metav1.FinalizerOrphanDependents}
		},
		update: func(s *appsv1.StatefulSet) { s.Finalizers = nil },
		want: map[string]answer{
			MutatePath:   {Allowed: true},
			ValidatePath: {Allowed: true},
		},
	}, {
		name:   "a scale down that makes the violation worse: refused",
		policy: tight,
		update: func(s *appsv1.StatefulSet) { s.Spec.Replicas = new(int32(5)) },
		want: map[string]answer{
			MutatePath: {Allowed: true},
			ValidatePath: {
				Message:  `StatefulSet.apps "cache" is invalid: spec.replicas: Invalid value: 5: must be at least 8: 4 masters x (1 + 1 replicas per master); raise spec.replicas, or lower valkey-webhook.io/cluster.replicasPerMaster`,
				Warnings: []string{"spec.replicas: 5 is not a multiple of the shard size 2"},
			},
		},
	}, {
		name:   "an unknown key the stored object carries, on a label update: warned, not refused",
		policy: config.Default(),
		old:    func(s *appsv1.StatefulSet) { s.Annotations = map[string]string{unknown: "1"} },
		update: func(s *appsv1.StatefulSet) { s.Labels["team"] = "payments" },
		want: map[string]answer{
			MutatePath:   {Allowed: true},
			ValidatePath: {Allowed: true, Warnings: []string{unknownCarried}},
		},
	}, {
		name:   "an unknown key the stored object carries, on a template change: hardened, warned",
		policy: config.Default(),
		old:    func(s *appsv1.StatefulSet) { s.Annotations = map[string]string{unknown: "1"} },
		update: func(s *appsv1.StatefulSet) {
			s.Spec.Template.Spec.Containers[0].Env = nil
		},
		want: map[string]answer{
			MutatePath:   {Allowed: true, Patched: true},
			ValidatePath: {Allowed: true, Warnings: []string{unknownCarried}},
		},
	}, {
		name:   "an unknown key the update adds: refused",
		policy: config.Default(),
		update: func(s *appsv1.StatefulSet) { s.Annotations = map[string]string{unknown: "1"} },
		want: map[string]answer{
			MutatePath:   {Message: `Unsupported value: "valkey-webhook.io/cluster.renamedKey"`},
			ValidatePath: {Message: `Unsupported value: "valkey-webhook.io/cluster.renamedKey"`},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := storedMinimal(t)
			if tt.old != nil {
				tt.old(old)
			}
			sts := old.DeepCopy()
			tt.update(sts)
			got := updateAnswers(t, tt.policy, old, sts)
			for path, a := range got {
				// A denial and a warning of another rule are compared by the text
				// they must start with or carry.
				want := tt.want[path]
				if !want.Allowed && want.Message != "" && strings.Contains(a.Message, want.Message) {
					a.Message = want.Message
				}
				for i, w := range a.Warnings {
					if i < len(want.Warnings) && strings.HasPrefix(w, want.Warnings[i]) {
						a.Warnings[i] = want.Warnings[i]
					}
				}
				got[path] = a
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("answers (-want +got):\n%s", diff)
			}
		})
	}
}

// TestEnforceUpdateRatchets: with enforcement.unlabeled deny, an unlabeled Valkey
// cluster stored before the setting can still be updated (warned), while an
// update that takes the label off a labeled one is refused.
func TestEnforceUpdateRatchets(t *testing.T) {
	deny := config.Default()
	deny.Enforcement.Unlabeled = config.EnforceDeny
	unlabeled := makeSTS("cache").Unlabeled().Image(bitnamiCluster).Obj()
	labeled := makeSTS("cache").Image(bitnamiCluster).Obj()
	denial := "metadata.labels[valkey-webhook.io/cluster]: Required value: container \"valkey\" runs Valkey in cluster mode"

	scaled := unlabeled.DeepCopy()
	scaled.Spec.Replicas = new(int32(8))
	got := updateAnswers(t, deny, unlabeled, scaled, EnforcePath)[EnforcePath]
	if !got.Allowed || len(got.Warnings) != 1 || !strings.HasPrefix(got.Warnings[0], denial) || !strings.Contains(got.Warnings[0], "the stored object breaks this rule already") {
		t.Errorf("a scale of a cluster stored unlabeled: want allowed with the denial as a warning, got %+v", got)
	}

	unlabel := labeled.DeepCopy()
	delete(unlabel.Labels, "valkey-webhook.io/cluster")
	got = updateAnswers(t, deny, labeled, unlabel, EnforcePath)[EnforcePath]
	if got.Allowed || !strings.Contains(got.Message, denial) {
		t.Errorf("taking the label off: want refused with %q, got %+v", denial, got)
	}
}

// TestUpdateRefusesWhatCannotChange: an UPDATE is mutated, then validated, as
// the API server does; a change of settings that cannot reach the stored object
// in place is refused with the field and the way to make it, and everything
// else is admitted with the new settings injected.
func TestUpdateRefusesWhatCannotChange(t *testing.T) {
	tlsIssuer := config.Default()
	tlsIssuer.TLS.Issuer = "ClusterIssuer/internal-ca"
	running := func(sts *appsv1.StatefulSet) { sts.Status.Replicas = 6 }
	annotate := func(key, value string) func(*appsv1.StatefulSet) {
		return func(sts *appsv1.StatefulSet) { sts.Annotations[config.AnnotationPrefix+key] = value }
	}
	tests := []struct {
		name    string
		policy  config.Policy // the policy at the UPDATE; the object was stored under the default
		stored  func(*appsv1.StatefulSet)
		update  []func(*appsv1.StatefulSet)
		refused string // the denial's start, "" when admitted
		check   func(*testing.T, *appsv1.StatefulSet)
	}{
		{
			name: "TLS turned on by annotation while the pods run: refused", policy: config.Default(), stored: running,
			update:  []func(*appsv1.StatefulSet){annotate("tls.secretName", "cache-tls")},
			refused: "metadata.annotations[valkey-webhook.io/tls.secretName]: Forbidden: turns TLS on while the pods run: rolled one at a time, the first new pod speaks TLS",
		},
		{
			name: "TLS turned on by annotation with OnDelete: admitted, with TLS probes and exporter", policy: config.Default(), stored: running,
			update: []func(*appsv1.StatefulSet){annotate("tls.secretName", "cache-tls"), func(sts *appsv1.StatefulSet) {
				sts.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
			}},
			check: func(t *testing.T, sts *appsv1.StatefulSet) {
				c := defaults.FindContainer(sts.Spec.Template.Spec.Containers, defaults.ValkeyContainer)
				for name, probe := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
					if !strings.Contains(strings.Join(probe.Exec.Command, " "), "--tls --cacert") {
						t.Errorf("the %s probe does not use TLS: %v", name, probe.Exec.Command)
					}
				}
				m := defaults.FindContainer(sts.Spec.Template.Spec.Containers, defaults.MetricsContainer)
				if m == nil || !slices.ContainsFunc(m.Env, func(e corev1.EnvVar) bool { return e.Name == "REDIS_ADDR" && strings.HasPrefix(e.Value, "rediss://") }) {
					t.Errorf("the exporter does not reach Valkey over TLS: %+v", m)
				}
			},
		},
		{
			name: "TLS turned on by annotation before any pod runs: admitted", policy: config.Default(),
			update: []func(*appsv1.StatefulSet){annotate("tls.secretName", "cache-tls")},
		},
		{
			name: "auth turned off by annotation while the pods run: refused", policy: config.Default(), stored: running,
			update:  []func(*appsv1.StatefulSet){annotate("auth.enabled", "false")},
			refused: "metadata.annotations[valkey-webhook.io/auth.enabled]: Forbidden: turns auth off while the pods run",
		},
		{
			name: "TLS turned on by a policy edit, then a change of the template: refused at the policy key", policy: tlsIssuer, stored: running,
			update:  []func(*appsv1.StatefulSet){func(sts *appsv1.StatefulSet) { sts.Spec.Template.Labels["tier"] = "cache" }},
			refused: "tls.issuer: Forbidden: turns TLS on while the pods run",
		},
		{
			name: "TLS turned on by a policy edit, then a label on the StatefulSet: admitted, nothing rolls", policy: tlsIssuer, stored: running,
			update: []func(*appsv1.StatefulSet){func(sts *appsv1.StatefulSet) { sts.Labels["team"] = "payments" }},
			check: func(t *testing.T, sts *appsv1.StatefulSet) {
				if c := defaults.FindContainer(sts.Spec.Template.Spec.Containers, defaults.ValkeyContainer); strings.Contains(strings.Join(c.LivenessProbe.Exec.Command, " "), "--tls") {
					t.Errorf("a label-only update changed the probes: %v", c.LivenessProbe.Exec.Command)
				}
			},
		},
		{
			name: "the pods' UID changed by annotation: refused", policy: config.Default(),
			update:  []func(*appsv1.StatefulSet){annotate("security.runAsUser", "1000")},
			refused: `metadata.annotations[valkey-webhook.io/security.runAsUser]: Forbidden: security.runAsUser cannot change from "999" to "1000" on a StatefulSet that exists: the files on the data volumes belong to the UID`,
		},
		{
			name: "the volume size changed by annotation: refused", policy: config.Default(),
			update:  []func(*appsv1.StatefulSet){annotate("persistence.size", "16Gi")},
			refused: `metadata.annotations[valkey-webhook.io/persistence.size]: Forbidden: persistence.size cannot change from "8Gi" to "16Gi" on a StatefulSet that exists: the API server keeps a StatefulSet's volumeClaimTemplates as created`,
		},
		{
			name: "the port changed by annotation while the pods run: admitted, probes and ports follow", policy: config.Default(), stored: running,
			update: []func(*appsv1.StatefulSet){annotate("valkey.port", "6380")},
			check: func(t *testing.T, sts *appsv1.StatefulSet) {
				c := defaults.FindContainer(sts.Spec.Template.Spec.Containers, defaults.ValkeyContainer)
				if !strings.Contains(strings.Join(c.ReadinessProbe.Exec.Command, " "), "-p 6380") || !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.ContainerPort == 16380 }) {
					t.Errorf("the probes or ports do not follow the port: %v %v", c.ReadinessProbe.Exec.Command, c.Ports)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := storedMinimal(t)
			if tt.stored != nil {
				tt.stored(old)
			}
			sts := old.DeepCopy()
			for _, u := range tt.update {
				u(sts)
			}
			if err := Mutate(sts, old, tt.policy); err != nil {
				t.Fatalf("mutation refused: %v", err)
			}
			errs, _ := validate(sts, old, tt.policy)
			stored, _ := validate(old, old, tt.policy)
			refused, _ := ratchet(errs, stored)
			switch {
			case tt.refused == "" && len(refused) > 0:
				t.Fatalf("refused: %v", refused)
			case tt.refused != "" && (len(refused) != 1 || !strings.HasPrefix(refused[0].Error(), tt.refused)):
				t.Fatalf("refused with %v, want one error starting %q", refused, tt.refused)
			}
			if tt.refused != "" && !strings.Contains(refused[0].Error(), "set it back") && !strings.Contains(refused[0].Error(), "OnDelete") {
				t.Errorf("the denial does not say what to do: %v", refused[0])
			}
			if tt.check != nil {
				tt.check(t, sts)
			}
		})
	}
}
