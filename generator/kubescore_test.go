package generator

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/valkey-webhook/valkey-webhook/config"
)

// kubeScoreAccepted are the CRITICAL findings of kube-score on the hardened output
// that are kept on purpose, each explained in docs/design.md ("What kube-score
// says"): "object container: check".
var kubeScoreAccepted = []string{
	"cache-init/team-a batch/v1/Job cluster-init: ImagePullPolicy is not set to Always",
	"cache/team-a apps/v1/StatefulSet metrics: ImagePullPolicy is not set to Always",
	"cache/team-a apps/v1/StatefulSet metrics: The container is running with a low user ID",
	"cache/team-a apps/v1/StatefulSet metrics: The container running with a low group ID",
	"cache/team-a apps/v1/StatefulSet valkey: CPU limit is not set",
	"cache/team-a apps/v1/StatefulSet valkey: ImagePullPolicy is not set to Always",
	"cache/team-a apps/v1/StatefulSet valkey: The container is running with a low user ID",
	"cache/team-a apps/v1/StatefulSet valkey: The container running with a low group ID",
}

// kubeScoreLine is one finding of `kube-score score --output-format ci`:
// "[CRITICAL] name/namespace group/version/Kind: (container) text".
var kubeScoreLine = regexp.MustCompile(`^\[(CRITICAL|WARNING)\] (\S+ \S+): (?:\((\S+)\) )?(.*)$`)

// TestKubeScoreHardened runs kube-score (KUBE_SCORE, built by hack/kube-score.sh;
// make test sets it) on `generate cluster --hardened` and fails on any CRITICAL
// finding that kubeScoreAccepted does not name, and on an accepted one that is
// gone (so that the list and docs/design.md stay true).
func TestKubeScoreHardened(t *testing.T) {
	bin := os.Getenv("KUBE_SCORE")
	if bin == "" {
		t.Skip("KUBE_SCORE is not set: KUBE_SCORE=$(hack/kube-score.sh) go test ./generator (make test sets it)")
	}
	objects, header, err := HardenedCluster(ClusterOptions{Name: "cache", Namespace: "team-a"}, config.Default())
	if err != nil {
		t.Fatal(err)
	}
	out, err := Render(objects, header)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "hardened.yaml")
	if err := os.WriteFile(file, out, 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "score", "--output-format", "ci", file)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// kube-score exits 1 when it reports a CRITICAL finding; the findings decide.
	if err := cmd.Run(); err != nil && cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("%s: %v\n%s", bin, err, stderr.String())
	}

	var critical, warnings []string
	for line := range strings.Lines(stdout.String()) {
		m := kubeScoreLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		finding := m[2] + " " + m[3] + ": " + m[4]
		if m[3] == "" {
			finding = m[2] + ": " + m[4]
		}
		if m[1] == "CRITICAL" {
			critical = append(critical, finding)
		} else {
			warnings = append(warnings, finding)
		}
	}
	sort.Strings(critical)
	if len(critical) == 0 && len(warnings) == 0 {
		t.Fatalf("kube-score reported nothing; is the output format still ci?\n%s", stdout.String())
	}
	accepted := map[string]bool{}
	for _, a := range kubeScoreAccepted {
		accepted[a] = true
	}
	for _, c := range critical {
		if !accepted[c] {
			t.Errorf("kube-score: CRITICAL %s: fix it, or add it to kubeScoreAccepted with its reason in docs/design.md", c)
		}
		delete(accepted, c)
	}
	for a := range accepted {
		t.Errorf("kube-score no longer reports %q: remove it from kubeScoreAccepted and docs/design.md", a)
	}
	t.Logf("kube-score: %d CRITICAL, %d WARNING: %s", len(critical), len(warnings), strings.Join(warnings, "; "))
}
