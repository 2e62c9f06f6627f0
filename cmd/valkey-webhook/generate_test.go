package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestGenerateClusterIsAFixedPoint: `generate cluster | mutate` gives the
// StatefulSet of `generate cluster --hardened`, mutating that again changes
// nothing, and the hardened output passes `validate`.
func TestGenerateClusterIsAFixedPoint(t *testing.T) {
	for _, flags := range [][]string{
		{"--name", "cache", "--namespace", "team-a"},
		{"--name", "sessions", "--namespace", "team-b", "--masters", "4", "--replicas-per-master", "2", "--tls-issuer", "ClusterIssuer/internal-ca", "--memory", "4Gi"},
		{"--name", "scratch", "--no-auth", "--storage", "1Gi"},
	} {
		t.Run(strings.Join(flags, " "), func(t *testing.T) {
			minimal := runCLI(t, "", append([]string{"generate", "cluster"}, flags...)...)
			if minimal.code != 0 {
				t.Fatalf("generate cluster: exit %d: %s", minimal.code, minimal.stderr)
			}
			once := runCLI(t, minimal.stdout, "mutate", "-f", "-")
			twice := runCLI(t, once.stdout, "mutate", "-f", "-")
			if once.code != 0 || twice.code != 0 {
				t.Fatalf("mutate: exit %d then %d: %s%s", once.code, twice.code, once.stderr, twice.stderr)
			}
			if diff := cmp.Diff(once.stdout, twice.stdout); diff != "" {
				t.Errorf("mutate twice differs from once (-once +twice):\n%s", diff)
			}
			if diff := runCLI(t, once.stdout, "mutate", "--diff", "-f", "-"); diff.stdout != "" {
				t.Errorf("mutate of a mutated object still patches:\n%s", diff.stdout)
			}

			hardened := runCLI(t, "", append([]string{"generate", "cluster", "--hardened"}, flags...)...)
			if hardened.code != 0 {
				t.Fatalf("generate cluster --hardened: exit %d: %s", hardened.code, hardened.stderr)
			}
			if diff := runCLI(t, hardened.stdout, "mutate", "--diff", "-f", "-"); diff.code != 0 || diff.stdout != "" {
				t.Errorf("admission would still change the hardened output (exit %d):\n%s", diff.code, diff.stdout)
			}
			if v := runCLI(t, hardened.stdout, "validate", "-f", "-"); v.code != 0 || strings.Contains(v.stdout, "warning") {
				t.Errorf("validate of the hardened output: exit %d:\n%s", v.code, v.stdout)
			}
			if strings.Contains(hardened.stdout, "kind: Secret") {
				t.Error("the hardened output prints a Secret: a password must never land in a committed file")
			}
		})
	}
}

func TestGenerateRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		mention string
	}{
		{[]string{"generate", "cluster", "--name", "Not_A_Label"}, "--name"},
		{[]string{"generate", "cluster", "--name", "c", "--replicas", "3"}, "--replicas"},
		{[]string{"generate", "cluster", "--name", "c", "--memory", "plenty"}, "--memory"},
		{[]string{"generate", "cluster", "--name", "c", "--tls-issuer", "internal-ca"}, "--tls-issuer"},
		{[]string{"generate", "cluster", "--name", "c", "--auth", "--no-auth"}, "--no-auth"},
		{[]string{"generate", "cluster", "--name", "c", "--hardened", "--storage", "x"}, "--storage"},
		{[]string{"generate", "cluster", "--name", "c", "--init-job"}, "--init-job"},
		{[]string{"generate", "cluster", "--name", "c", "--init-job=false"}, "--init-job"},
		{[]string{"generate", "cluster", "--name", "c", "--init-image", "registry.internal/valkey-webhook:v0.1.0"}, "--init-image"},
		{[]string{"generate", "cluster", "--name", "c", "--hardened", "--init-job=false", "--init-image", "registry.internal/valkey-webhook:v0.1.0"}, "--init-image"},
		{[]string{"generate", "cluster", "--name", "c", "--init-hook", "argocd"}, "--init-hook"},
		{[]string{"generate", "cluster", "--name", "c", "--hardened", "--init-hook", "flux"}, "--init-hook"},
		{[]string{"generate", "cluster", "--name", "c", "--hardened", "--replicas", "7"}, "--replicas"},
		{[]string{"generate", "install", "--failure-policy", "Maybe"}, "--failure-policy"},
		{[]string{"generate", "install", "--cert-mode", "vault"}, "--cert-mode"},
		{[]string{"generate", "install", "--dev-url", "https://127.0.0.1:9443"}, "--ca-file"},
		{[]string{"generate", "install", "--dev-url", "https://127.0.0.1:9443", "--ca-file", "/nonexistent/ca.crt"}, "--ca-file"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := runCLI(t, "", tc.args...)
			if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, tc.mention) {
				t.Errorf("exit %d (want 2), stdout %q (want nothing), stderr %q (want it to name %s)", r.code, r.stdout, r.stderr, tc.mention)
			}
		})
	}
}

// TestGenerateClusterInitJob: --hardened prints the cluster-init Job, running
// --init-image; --init-job=false leaves it out and gives the command instead.
func TestGenerateClusterInitJob(t *testing.T) {
	with := runCLI(t, "", "generate", "cluster", "--hardened", "--name", "cache", "--namespace", "team-a", "--init-image", "registry.internal/valkey-webhook:v0.1.0")
	if with.code != 0 {
		t.Fatalf("exit %d: %s", with.code, with.stderr)
	}
	for _, want := range []string{
		"kind: Job",
		"name: cache-init",
		"image: registry.internal/valkey-webhook:v0.1.0",
		"- --nodes=cache-0.cache-headless.team-a.svc.cluster.local:6379,",
		"- --password-file=/etc/valkey/auth/password",
		"# The Job cache-init forms the cluster",
	} {
		if !strings.Contains(with.stdout, want) {
			t.Errorf("--hardened output lacks %q", want)
		}
	}
	if strings.Contains(with.stdout, "# Form the cluster once every pod runs") {
		t.Error("--hardened still tells the user to run cluster init by hand")
	}

	hook := runCLI(t, "", "generate", "cluster", "--hardened", "--name", "cache", "--namespace", "team-a", "--init-hook", "argocd")
	if hook.code != 0 {
		t.Fatalf("--init-hook argocd: exit %d: %s", hook.code, hook.stderr)
	}
	if !strings.Contains(hook.stdout, "  annotations:\n    argocd.argoproj.io/hook: PostSync\n    argocd.argoproj.io/hook-delete-policy: BeforeHookCreation\n  labels:") {
		t.Errorf("--init-hook argocd: the Job is not annotated as a PostSync hook:\n%s", hook.stdout)
	}

	without := runCLI(t, "", "generate", "cluster", "--hardened", "--name", "cache", "--namespace", "team-a", "--init-job=false")
	if without.code != 0 {
		t.Fatalf("exit %d: %s", without.code, without.stderr)
	}
	if strings.Contains(without.stdout, "kind: Job") {
		t.Error("--init-job=false prints the Job")
	}
	if !strings.Contains(without.stdout, "#   valkey-webhook cluster init --password-file") {
		t.Error("--init-job=false does not give the cluster init command")
	}
}

func TestGenerateInstallDev(t *testing.T) {
	ca := writeFile(t, "ca.crt", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	r := runCLI(t, "", "generate", "install", "--dev-url", "https://127.0.0.1:9443", "--ca-file", ca)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"kind: MutatingWebhookConfiguration", "url: https://127.0.0.1:9443/mutate-statefulset", "url: https://127.0.0.1:9443/enforce-statefulset"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(r.stdout, "kind: Deployment") {
		t.Error("--dev-url prints more than the webhook configurations")
	}
}
