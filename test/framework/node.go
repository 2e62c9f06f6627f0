package framework

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Node is the real single-node Kubernetes of hack/node/up.sh (make node-up), as
// the real-node suite and make demo use it.
type Node struct {
	// Repo is the checkout.
	Repo string
	// Kubeconfig is the admin kubeconfig node-up printed last.
	Kubeconfig string
	// KubectlBinary is the node's kubectl (hack/node/build.sh).
	KubectlBinary string
	// Images maps each role node-up printed (valkey, exporter, valkey-webhook, ...)
	// to its image reference.
	Images map[string]string
}

// WebhookNamespace is where generate install puts valkey-webhook.
const WebhookNamespace = "valkey-webhook-system"

// NodeUp runs hack/node/up.sh in the checkout repo, its progress to progress, and
// reads what it printed: an `image ROLE=REF` line per image, then the kubeconfig.
func NodeUp(ctx context.Context, repo string, progress io.Writer) (*Node, error) {
	up := exec.CommandContext(ctx, filepath.Join(repo, "hack/node/up.sh"))
	up.Dir = repo
	var stdout bytes.Buffer
	up.Stdout, up.Stderr = &stdout, progress
	if err := up.Run(); err != nil {
		return nil, fmt.Errorf("hack/node/up.sh: %w (its output is above)", err)
	}
	n := &Node{Repo: repo, Images: map[string]string{}}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	for _, l := range lines[:len(lines)-1] {
		role, ref, ok := strings.Cut(strings.TrimPrefix(l, "image "), "=")
		if !ok || !strings.HasPrefix(l, "image ") {
			return nil, fmt.Errorf("hack/node/up.sh printed %q: want image ROLE=REF", l)
		}
		n.Images[role] = ref
	}
	n.Kubeconfig = lines[len(lines)-1]
	for _, role := range []string{"valkey", "exporter", "valkey-webhook", "busybox", "cluster-client"} {
		if n.Images[role] == "" {
			return nil, fmt.Errorf("hack/node/up.sh printed no image %s", role)
		}
	}
	bin, err := exec.CommandContext(ctx, filepath.Join(repo, "hack/node/build.sh")).Output()
	if err != nil {
		return nil, fmt.Errorf("hack/node/build.sh: %w", err)
	}
	n.KubectlBinary = filepath.Join(strings.TrimSpace(string(bin)), "kubectl")
	return n, nil
}

// NodeDown runs hack/node/down.sh, which removes the node and everything it
// created; idempotent.
func NodeDown(repo string, out io.Writer) error {
	down := exec.Command(filepath.Join(repo, "hack/node/down.sh"))
	down.Stdout, down.Stderr = out, out
	return down.Run()
}

// Kubectl runs the node's kubectl with the admin kubeconfig and stdin.
func (n *Node) Kubectl(ctx context.Context, stdin string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, n.KubectlBinary, append([]string{"--kubeconfig", n.Kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(e.String()))
	}
	return o.String(), e.String(), err
}

// ValkeyWebhook runs the checkout's valkey-webhook (go run) and returns its stdout.
func (n *Node) ValkeyWebhook(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", append([]string{"run", "./cmd/valkey-webhook"}, args...)...)
	cmd.Dir = n.Repo
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		return o.String(), fmt.Errorf("valkey-webhook %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(e.String()))
	}
	return o.String(), nil
}

// Policy is the policy valkey-webhook runs with on the node: its images (no
// registry is reachable), a CPU request of 10m (the node has 2 CPUs, and the
// suite runs four 6-pod clusters beside the control plane: at the default 100m
// the last one's pods stay Pending, Insufficient cpu), the rest the built-in
// defaults. The metrics image is the exporter STAND-IN
// (hack/node/exporter-stand-in), not redis_exporter.
func (n *Node) Policy() string {
	return fmt.Sprintf("image:\n  valkey: %s\nvalkey:\n  cpuRequest: 10m\nmetrics:\n  image: %s\n", n.Images["valkey"], n.Images["exporter"])
}

// InstallManifests is what a user applies to install valkey-webhook: `generate
// install --cert-mode self-managed --image <the node's image>`, with Policy in the
// policy ConfigMap (where a user's own policy goes).
func (n *Node) InstallManifests(ctx context.Context) (string, error) {
	manifests, err := n.ValkeyWebhook(ctx, "generate", "install", "--cert-mode", "self-managed", "--image", n.Images["valkey-webhook"])
	if err != nil {
		return "", err
	}
	const generated = "    enforcement:\n      unlabeled: warn\n"
	if strings.Count(manifests, generated) != 1 {
		return "", errors.New("generate install: the policy ConfigMap does not read as expected")
	}
	policy := generated + "    " + strings.ReplaceAll(strings.TrimSuffix(n.Policy(), "\n"), "\n", "\n    ") + "\n"
	return strings.Replace(manifests, generated, policy, 1), nil
}

// MinimalExample is examples/minimal-statefulset.yaml in namespace ns, with the
// node's Valkey image.
func (n *Node) MinimalExample(ns string) (string, error) {
	b, err := os.ReadFile(filepath.Join(n.Repo, "examples/minimal-statefulset.yaml"))
	if err != nil {
		return "", err
	}
	s := strings.Replace(string(b), "image: docker.io/valkey/valkey:8.0.7", "image: "+n.Images["valkey"], 1)
	s = strings.Replace(s, "namespace: team-a", "namespace: "+ns, 1)
	if !strings.Contains(s, n.Images["valkey"]) {
		return "", errors.New("examples/minimal-statefulset.yaml: no image docker.io/valkey/valkey:8.0.7 to replace")
	}
	return s, nil
}
