package defaults

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/valkey-webhook/valkey-webhook/config"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from the current output")

// goldenCases lists testdata/*.input.yaml by case name.
func goldenCases(t *testing.T) []string {
	t.Helper()
	inputs, err := filepath.Glob("testdata/*.input.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs in testdata: %v", err)
	}
	names := make([]string, len(inputs))
	for i, in := range inputs {
		names[i] = strings.TrimSuffix(filepath.Base(in), ".input.yaml")
	}
	return names
}

func readInput(t *testing.T, name string) (*appsv1.StatefulSet, config.Policy) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name+".input.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sts := &appsv1.StatefulSet{}
	if err := yaml.UnmarshalStrict(data, sts); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	p, errs := config.Effective(config.Default(), sts.Annotations, field.NewPath("metadata", "annotations"))
	if len(errs) > 0 {
		t.Fatalf("%s: annotations: %v", name, errs.ToAggregate())
	}
	return sts, p
}

// assertGolden compares got with testdata/<file>, or rewrites it with -update.
func assertGolden(t *testing.T, file string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", file)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./defaults -update to create it, then review the diff)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got); if the change is intended, run go test ./defaults -update and review the diff:\n%s", path, diff)
	}
}

func marshal(t *testing.T, sts *appsv1.StatefulSet) []byte {
	t.Helper()
	out, err := yaml.Marshal(sts)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestHardenGolden hardens every input on CREATE and compares the StatefulSet and
// its valkey.conf with the golden files.
func TestHardenGolden(t *testing.T) {
	for _, name := range goldenCases(t) {
		t.Run(name, func(t *testing.T) {
			sts, p := readInput(t, name)
			Harden(sts, nil, &p)
			assertGolden(t, name+".golden.yaml", marshal(t, sts))
			assertGolden(t, name+".valkey.conf", []byte(ValkeyConf(sts, &p)))
		})
	}
}

// TestHardenIdempotent checks Harden(Harden(x)) == Harden(x), byte for byte, on
// CREATE and on an UPDATE that re-hardens the template, and that the output does not
// depend on the run: hardening ten copies gives ten identical results.
func TestHardenIdempotent(t *testing.T) {
	for _, name := range goldenCases(t) {
		t.Run(name, func(t *testing.T) {
			sts, p := readInput(t, name)
			Harden(sts, nil, &p)
			once := marshal(t, sts)

			again := sts.DeepCopy()
			Harden(again, nil, &p)
			if diff := cmp.Diff(string(once), string(marshal(t, again))); diff != "" {
				t.Errorf("second CREATE hardening changed the object (-once +twice):\n%s", diff)
			}

			unlabeledOld := sts.DeepCopy()
			delete(unlabeledOld.Labels, ClusterLabel)
			updated := sts.DeepCopy()
			Harden(updated, unlabeledOld, &p)
			if diff := cmp.Diff(string(once), string(marshal(t, updated))); diff != "" {
				t.Errorf("UPDATE hardening of a hardened object changed it (-once +twice):\n%s", diff)
			}

			for range 10 {
				fresh, p := readInput(t, name)
				Harden(fresh, nil, &p)
				if string(marshal(t, fresh)) != string(once) {
					t.Fatal("hardening the same input twice gave different bytes")
				}
			}
		})
	}
}

// TestCompanionsGolden renders every companion object of each hardened input (the
// auth Secret with a fixed password) and compares them with the golden files.
func TestCompanionsGolden(t *testing.T) {
	for _, name := range goldenCases(t) {
		t.Run(name, func(t *testing.T) {
			sts, p := readInput(t, name)
			Harden(sts, nil, &p)
			objects := []any{
				ConfigMap(sts, &p),
				HeadlessService(sts, &p),
				ClientService(sts, &p),
				PodDisruptionBudget(sts, &p),
				NetworkPolicy(sts, &p),
				AuthSecret(sts, &p, "fixed-password-for-the-golden-file"),
			}
			if p.TLS.Issuer != "" {
				objects = append(objects, Certificate(sts, &p))
			}
			var out []byte
			for i, obj := range objects {
				if i > 0 {
					out = append(out, "---\n"...)
				}
				b, err := yaml.Marshal(obj)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, b...)
			}
			assertGolden(t, name+".companions.yaml", out)
		})
	}
}
