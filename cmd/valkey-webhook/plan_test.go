package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
	appsv1 "k8s.io/api/apps/v1"
)

// storedList is the hardened example and the ConfigMap the controller writes
// for it, as `kubectl get sts,cm -o yaml` prints them: one List.
func storedList(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(hardenedExample)
	if err != nil {
		t.Fatal(err)
	}
	sts := &appsv1.StatefulSet{}
	if err := yaml.Unmarshal(data, sts); err != nil {
		t.Fatal(err)
	}
	p, errs := config.Effective(config.Default(), sts.Annotations, defaults.AnnotationsPath)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	stsJSON, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	cm, err := json.Marshal(defaults.ConfigMap(sts, &p))
	if err != nil {
		t.Fatal(err)
	}
	list, err := yaml.JSONToYAML([]byte(`{"apiVersion":"v1","kind":"List","items":[` + string(stsJSON) + `,` + string(cm) + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	return string(list)
}

func TestPlan(t *testing.T) {
	list := storedList(t)
	tests := []struct {
		name   string
		policy string
		stdin  string
		want   result
	}{
		{"the policy it was stored with", "", list, result{code: exitOK, stdout: "team-a/cache: unchanged\n" +
			"1 labeled StatefulSets: 0 roll their pods (paced: rollout.maxClusters at a time), 0 change at their next template update, 1 unchanged\n"}},
		{"a setting changed", "cluster:\n  nodeTimeout: 6000\n", list, result{code: exitOK, stdout: "team-a/cache: rolls its pods, in its turn of the paced rollout: valkey.conf settings change\n" +
			"    - cluster-node-timeout 5000\n    + cluster-node-timeout 6000\n  its pod template changes:\n" +
			"    replace /spec/template/metadata/annotations/valkey-webhook.io~1config-checksum\n" +
			"1 labeled StatefulSets: 1 roll their pods (paced: rollout.maxClusters at a time), 0 change at their next template update, 0 unchanged\n"}},
		{"no labeled StatefulSet", "", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n", result{code: exitOK,
			stdout: "0 labeled StatefulSets: 0 roll their pods (paced: rollout.maxClusters at a time), 0 change at their next template update, 0 unchanged\n"}},
		{"a StatefulSet that does not decode", "", "apiVersion: apps/v1\nkind: StatefulSet\nspec:\n  replicas: six\n", result{code: exitBadInput,
			stderr: "Error: - (document 1): the StatefulSet does not decode: json: cannot unmarshal string into Go struct field StatefulSet.spec.replicas of type int32\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"plan", "-f", "-"}
			if tt.policy != "" {
				args = append(args, "--config", writeFile(t, "policy.yaml", tt.policy))
			}
			if diff := cmp.Diff(tt.want, runCLI(t, tt.stdin, args...), cmp.AllowUnexported(result{})); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestPlanNeedsOneSource(t *testing.T) {
	for _, args := range [][]string{{"plan"}, {"plan", "-f", "-", "--kubeconfig", "/nonexistent"}} {
		got := runCLI(t, "", args...)
		if got.code != exitBadInput || !strings.Contains(got.stderr, "either -f") {
			t.Errorf("%v: %+v, want exit %d naming -f and --kubeconfig", args, got, exitBadInput)
		}
	}
}
