package webhook

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/valkey-webhook/valkey-webhook/config"
)

// TestRuleOrigins: every denial and warning carries the rule it is counted by
// in valkey_webhook_admission_denials_total and _warnings_total.
func TestRuleOrigins(t *testing.T) {
	tests := []struct {
		name               string
		sts                *appsv1.StatefulSet
		check              func(*appsv1.StatefulSet, config.Policy) ([]string, []string)
		errRules, warnings []string
	}{
		{"replicas and shard size", makeSTS("cache").Replicas(5).Obj(), validateRules, []string{"replicas"}, []string{"shardSize"}},
		{"a bad annotation", makeSTS("cache").Annotation("valkey-webhook.io/podDisruptionBudget.maxUnavailable", "0").Obj(), validateRules, []string{"annotations"}, nil},
		{"no data volume", makeSTS("cache").NoClaimTemplates().Obj(), validateRules, []string{"dataVolume"}, nil},
		{"privileged", makeSTS("cache").SecurityContext(&corev1.SecurityContext{Privileged: ptr.To(true)}).Obj(), validateRules, []string{"podSecurity"}, nil},
		{"maxmemory at the limit", makeSTS("cache").Annotation("valkey-webhook.io/valkey.maxmemory", "1Gi").MemoryLimit("1Gi").Obj(), validateRules, []string{"maxmemory"}, nil},
		{"a literal password", makeSTS("cache").Env(corev1.EnvVar{Name: "VALKEY_PASSWORD", Value: "hunter2"}).Obj(), validateRules, []string{"literalPassword"}, nil},
		{"maxUnavailable 2", makeSTS("cache").MaxUnavailable(intstr.FromInt32(2)).Obj(), validateRules, []string{"rollingUpdate"}, nil},
		{"a port named redis", makeSTS("cache").Ports(corev1.ContainerPort{Name: "redis", ContainerPort: 6379}).Obj(), validateRules, []string{"portNames"}, nil},
		{"no memory limit, latest, OnDelete", makeSTS("cache").NoMemoryLimit().Image("valkey/valkey:latest").OnDelete().Obj(), validateRules, nil, []string{"memoryLimit", "imageTag", "onDelete"}},
		{"unlabeled, denied", makeSTS("cache").Unlabeled().Image(bitnamiCluster).Obj(), enforceRules(config.EnforceDeny), []string{"unlabeled"}, nil},
		{"unlabeled, warned", makeSTS("cache").Unlabeled().Image(bitnamiCluster).Obj(), enforceRules(config.EnforceWarn), nil, []string{"unlabeled"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			errRules, warnings := tc.check(tc.sts, config.Default())
			if diff := cmp.Diff(tc.errRules, errRules); diff != "" {
				t.Errorf("rules of the errors (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.warnings, warnings); diff != "" {
				t.Errorf("rules of the warnings (-want +got):\n%s", diff)
			}
		})
	}
}

func validateRules(sts *appsv1.StatefulSet, p config.Policy) ([]string, []string) {
	errs, warnings := validate(sts, nil, p)
	return origins(errs), warningRules(warnings)
}

func enforceRules(mode string) func(*appsv1.StatefulSet, config.Policy) ([]string, []string) {
	return func(sts *appsv1.StatefulSet, p config.Policy) ([]string, []string) {
		p.Enforcement.Unlabeled = mode
		errs, warnings := enforce(sts, p)
		return origins(errs), warningRules(warnings)
	}
}

func origins(errs field.ErrorList) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Origin)
	}
	return out
}

func warningRules(ws []ruleWarning) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.rule)
	}
	return out
}

// TestCountRules: the ratchet keeps the rule of an error it turns into a
// warning, and countRules counts each by it.
func TestCountRules(t *testing.T) {
	stored := makeSTS("cache").Replicas(4).Obj()
	updated := stored.DeepCopy()
	updated.Labels["team"] = "payments"
	p := config.Default()
	p.Cluster.MinMasters = 4
	v := ruleValidator{webhook: "validate-test", checkUpdate: validate, p: p}

	before := counterValue(admissionWarnings.WithLabelValues("validate-test", "replicas"))
	if _, err := v.ValidateUpdate(t.Context(), stored, updated); err != nil {
		t.Fatalf("a label-only update of an object that breaks a rule already is refused: %v", err)
	}
	if got := counterValue(admissionWarnings.WithLabelValues("validate-test", "replicas")) - before; got != 1 {
		t.Errorf("warnings{rule=replicas} grew by %v, want 1", got)
	}

	worse := updated.DeepCopy()
	worse.Spec.Replicas = ptr.To(int32(3))
	before = counterValue(admissionDenials.WithLabelValues("validate-test", "replicas"))
	if _, err := v.ValidateUpdate(t.Context(), stored, worse); err == nil {
		t.Fatal("fewer replicas still is allowed")
	}
	if got := counterValue(admissionDenials.WithLabelValues("validate-test", "replicas")) - before; got != 1 {
		t.Errorf("denials{rule=replicas} grew by %v, want 1", got)
	}
}

// counterValue reads a counter as /metrics would show it.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}
