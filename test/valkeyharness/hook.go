package valkeyharness

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	corev1 "k8s.io/api/core/v1"

	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// PreStop is the valkey container's preStop command as admission injects it into
// this cluster's StatefulSet, for a pod of grace period grace (nil: the API
// server's default of 30 s).
func (c *Cluster) PreStop(grace *int64) ([]string, error) {
	v, err := c.Container(grace)
	if err != nil {
		return nil, err
	}
	if v.Lifecycle == nil || v.Lifecycle.PreStop == nil || v.Lifecycle.PreStop.Exec == nil {
		return nil, errors.New("valkeyharness: the hardened valkey container has no exec preStop hook")
	}
	return v.Lifecycle.PreStop.Exec.Command, nil
}

// Container is the valkey container as admission injects it into this cluster's
// StatefulSet, for a pod of grace period grace (nil: the API server's default):
// its probes and hooks, to run with RunHook.
func (c *Cluster) Container(grace *int64) (*corev1.Container, error) {
	sts := minimalStatefulSet()
	sts.Spec.Template.Spec.TerminationGracePeriodSeconds = grace
	p := c.policy
	defaults.Harden(sts, nil, &p)
	v := defaults.FindContainer(sts.Spec.Template.Spec.Containers, defaults.ValkeyContainer)
	if v == nil {
		return nil, errors.New("valkeyharness: the hardened StatefulSet has no valkey container")
	}
	return v, nil
}

// RunHook runs an exec hook or probe command as the kubelet runs it in the pod,
// with the pod's address for 127.0.0.1, its paths, and its container log (PID 1's
// stdout) in the pod's directory, hook.log, whose content it returns.
func (p *Pod) RunHook(ctx context.Context, command []string) (string, error) {
	log := filepath.Join(p.Dir, "hook.log")
	if err := os.WriteFile(log, nil, 0o600); err != nil {
		return "", err
	}
	args := make([]string, len(command))
	for i, a := range command {
		a = strings.ReplaceAll(a, "127.0.0.1", p.IP)
		a = strings.ReplaceAll(a, "/proc/1/fd/1", log)
		args[i] = p.rewritePaths(a)
	}
	err := exec.CommandContext(ctx, args[0], args[1:]...).Run()
	out, rerr := os.ReadFile(log)
	return string(out), errors.Join(err, rerr)
}

// Pause stops the pod's process (SIGSTOP) as a partition or a hung node looks to
// its peers; Resume lets it go on.
func (p *Pod) Pause() error { return p.signal(syscall.SIGSTOP) }

// Resume continues a paused pod (SIGCONT).
func (p *Pod) Resume() error { return p.signal(syscall.SIGCONT) }

func (p *Pod) signal(sig syscall.Signal) error {
	if !p.Running() {
		return errors.New("valkeyharness: " + p.Name + " does not run")
	}
	return p.cmd.Process.Signal(sig)
}
