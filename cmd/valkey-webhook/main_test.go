package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite examples/hardened-statefulset.yaml from the current output")

const (
	minimalExample  = "../../examples/minimal-statefulset.yaml"
	hardenedExample = "../../examples/hardened-statefulset.yaml"
	unsafeExamples  = "../../examples/unsafe"
)

type result struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, strings.NewReader(stdin), &stdout, &stderr)
	return result{code, stdout.String(), stderr.String()}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestGoldenHardenedExample keeps examples/hardened-statefulset.yaml equal to what
// `mutate` prints for the minimal example.
func TestGoldenHardenedExample(t *testing.T) {
	r := runCLI(t, "", "mutate", "-f", minimalExample)
	if r.code != 0 {
		t.Fatalf("mutate exited %d: %s", r.code, r.stderr)
	}
	if *update {
		if err := os.WriteFile(hardenedExample, []byte(r.stdout), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(hardenedExample)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), r.stdout); diff != "" {
		t.Errorf("%s is stale (-file +mutate); run make golden and review the diff:\n%s", hardenedExample, diff)
	}
}

func TestMutateIsIdempotent(t *testing.T) {
	hardened, err := os.ReadFile(hardenedExample)
	if err != nil {
		t.Fatal(err)
	}
	again := runCLI(t, "", "mutate", "-f", hardenedExample)
	if again.code != 0 || again.stdout != string(hardened) {
		t.Errorf("mutate of the hardened example: exit %d, changed (-before +after):\n%s", again.code, cmp.Diff(string(hardened), again.stdout))
	}
	diff := runCLI(t, "", "mutate", "--diff", "-f", hardenedExample)
	if diff.code != 0 || diff.stdout != "" {
		t.Errorf("mutate --diff of the hardened example: exit %d, printed %q, want nothing", diff.code, diff.stdout)
	}
}

func TestMutateDiffPrintsThePatch(t *testing.T) {
	r := runCLI(t, "", "mutate", "--diff", "-f", minimalExample)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{
		"# " + minimalExample + " (document 1) StatefulSet team-a/cache\n",
		"path: /spec/podManagementPolicy\n",
		"path: /spec/template/metadata/annotations\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("--diff output lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestMutatePassesOtherObjectsThrough(t *testing.T) {
	input := `apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  a: "1"
---
# only a comment
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: plain
spec:
  selector:
    matchLabels: {app: plain}
  template:
    metadata:
      labels: {app: plain}
    spec:
      containers: [{name: web, image: nginx:1.27}]
`
	r := runCLI(t, input, "mutate", "-f", "-")
	want := `apiVersion: v1
data:
  a: "1"
kind: ConfigMap
metadata:
  name: settings
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: plain
spec:
  selector:
    matchLabels:
      app: plain
  template:
    metadata:
      labels:
        app: plain
    spec:
      containers:
      - image: nginx:1.27
        name: web
`
	if r.code != 0 || r.stdout != want {
		t.Errorf("exit %d, stderr %q, output (-want +got):\n%s", r.code, r.stderr, cmp.Diff(want, r.stdout))
	}
}

func TestMutateJSON(t *testing.T) {
	r := runCLI(t, "", "mutate", "-o", "json", "-f", minimalExample)
	var obj map[string]any
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &obj) != nil || obj["kind"] != "StatefulSet" {
		t.Errorf("exit %d, not one StatefulSet as JSON: %s", r.code, r.stdout)
	}
	dir := t.TempDir()
	for _, name := range []string{"a.yaml", "b.yml"} {
		data, err := os.ReadFile(minimalExample)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r = runCLI(t, "", "mutate", "-o", "json", "-f", dir)
	var list struct {
		Kind  string
		Items []map[string]any
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &list) != nil || list.Kind != "List" || len(list.Items) != 2 {
		t.Errorf("a directory of two files: exit %d, want a List of 2 items: %s", r.code, r.stdout)
	}
}

func TestValidateExamples(t *testing.T) {
	for _, ok := range []string{minimalExample, hardenedExample} {
		if r := runCLI(t, "", "validate", "-f", ok); r.code != 0 || !strings.Contains(r.stdout, "allowed") {
			t.Errorf("validate %s: exit %d, want 0:\n%s%s", ok, r.code, r.stdout, r.stderr)
		}
	}
	unsafe, err := filepath.Glob(filepath.Join(unsafeExamples, "*.yaml"))
	if err != nil || len(unsafe) == 0 {
		t.Fatalf("no unsafe examples: %v", err)
	}
	for _, file := range unsafe {
		t.Run(filepath.Base(file), func(t *testing.T) {
			path := expectedDenial(t, file)
			r := runCLI(t, "", "validate", "-f", file)
			if r.code != 1 {
				t.Errorf("exit %d, want 1:\n%s%s", r.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout, "denied\n  "+path+": ") {
				t.Errorf("output does not deny at %s:\n%s", path, r.stdout)
			}
		})
	}
}

// expectedDenial reads the "# expect-denied: PATH" line of an unsafe example.
func expectedDenial(t *testing.T, file string) string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if path, ok := strings.CutPrefix(s.Text(), "# expect-denied: "); ok {
			return path
		}
	}
	t.Fatalf("%s has no '# expect-denied: PATH' line", file)
	return ""
}

func TestValidateWarns(t *testing.T) {
	input := strings.Replace(mustRead(t, minimalExample), "valkey:8.0.7", "valkey:latest", 1)
	r := runCLI(t, input, "validate", "-f", "-")
	if r.code != 0 || !strings.Contains(r.stdout, "warning: spec.template.spec.containers[0].image: ") {
		t.Errorf("exit %d, want 0 and an image warning:\n%s", r.code, r.stdout)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestBadInput(t *testing.T) {
	badPolicy := writeFile(t, "policy.yaml", "cluster:\n  nodeTimout: 1000\n")
	tests := []struct {
		name    string
		args    []string
		stdin   string
		code    int
		mention []string
	}{
		{
			name:    "not valid YAML",
			args:    []string{"validate", "-f", writeFile(t, "bad.yaml", "apiVersion: v1\nkind: ConfigMap\n---\nmetadata: [\n")},
			code:    2,
			mention: []string{"bad.yaml (document 2)", "not valid YAML"},
		},
		{
			name:    "an object that does not decode",
			args:    []string{"mutate", "-f", "-"},
			stdin:   "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: x\n  labels: {valkey-webhook.io/cluster: enabled}\nspec:\n  replicas: six\n",
			code:    2,
			mention: []string{"- (document 1)", "does not decode"},
		},
		{
			name:    "a document without kind",
			args:    []string{"validate", "-f", "-"},
			stdin:   "metadata:\n  name: x\n",
			code:    2,
			mention: []string{"- (document 1)", "no apiVersion or kind"},
		},
		{
			name:    "a missing file",
			args:    []string{"validate", "-f", "/nonexistent/file.yaml"},
			code:    2,
			mention: []string{"/nonexistent/file.yaml"},
		},
		{
			name:    "no -f",
			args:    []string{"mutate"},
			code:    2,
			mention: []string{"-f is required"},
		},
		{
			name:    "a bad policy file",
			args:    []string{"validate", "--config", badPolicy, "-f", minimalExample},
			code:    2,
			mention: []string{badPolicy, "cluster.nodeTimout"},
		},
		{
			name:    "an unknown output format",
			args:    []string{"mutate", "-o", "xml", "-f", minimalExample},
			code:    2,
			mention: []string{"-o must be yaml or json"},
		},
		{
			name:    "an unknown flag",
			args:    []string{"validate", "--nope"},
			code:    2,
			mention: []string{"unknown flag: --nope"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, tc.stdin, tc.args...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d; stderr: %s", r.code, tc.code, r.stderr)
			}
			for _, m := range tc.mention {
				if !strings.Contains(r.stderr, m) {
					t.Errorf("stderr does not mention %q: %s", m, r.stderr)
				}
			}
			if r.stdout != "" {
				t.Errorf("printed to stdout on bad input: %q", r.stdout)
			}
		})
	}
}
