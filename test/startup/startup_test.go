// Package startup runs the valkey container's startup and liveness probes, as
// admission injects them, against a real valkey-server that loads a dataset more
// slowly than the startup window allows (test/valkeyharness, loopback): the
// probes must not restart a node whose load goes on.
package startup

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valkey-webhook/valkey-webhook/test/valkeyharness"
)

const (
	// keys are written before the restart; each one's load is slowed by
	// loadDelay microseconds (valkey-server's key-load-delay), about 8 s in all.
	keys      = 20000
	loadDelay = 400
	// The kubelet of this test probes every period and gives up after failures
	// in a row: a startup window of 1.5 s, far shorter than the load.
	period   = 500 * time.Millisecond
	failures = 3
)

func TestProbesWaitOutALoadLongerThanTheStartupWindow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := exec.LookPath("valkey-server"); err != nil {
		t.Fatal("valkey-server 8 must be installed (.ci/run installs it from bookworm-backports)")
	}
	c, err := valkeyharness.Start(valkeyharness.Options{
		Pods: 1, Dir: t.TempDir(),
		// Valkey answers clients during a load every so many bytes read (2 MB by
		// default): this small dataset must be read in small steps to be answered
		// during its load, as a large one is.
		ExtraArgs: []string{"--key-load-delay", strconv.Itoa(loadDelay), "--loading-process-events-interval-bytes", "1024"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(c.Logs())
		}
		c.Close()
	})
	pod := c.Pods[0]
	v, err := c.Container(nil)
	if err != nil {
		t.Fatal(err)
	}
	if v.StartupProbe == nil || v.StartupProbe.Exec == nil || v.LivenessProbe == nil || v.LivenessProbe.Exec == nil {
		t.Fatal("the hardened valkey container has no exec startup or liveness probe")
	}
	startup, liveness, readiness := v.StartupProbe.Exec.Command, v.LivenessProbe.Exec.Command, v.ReadinessProbe.Exec.Command

	t.Log("giving the lone node every slot, so that it takes writes")
	cli(ctx, t, pod, "", "CLUSTER", "ADDSLOTSRANGE", "0", strconv.Itoa(16383))
	waitFor(ctx, t, 30*time.Second, "cluster_state:ok", func() bool {
		return strings.Contains(cli(ctx, t, pod, "", "CLUSTER", "INFO"), "cluster_state:ok")
	})
	t.Logf("writing %d keys, then rewriting the AOF so that its base holds them all", keys)
	var script strings.Builder
	for i := range keys {
		fmt.Fprintf(&script, "SET key:%d value-%d\n", i, i)
	}
	cli(ctx, t, pod, script.String(), "--pipe")
	cli(ctx, t, pod, "", "BGREWRITEAOF")
	waitFor(ctx, t, 30*time.Second, "the AOF rewrite ends", func() bool {
		return strings.Contains(cli(ctx, t, pod, "", "INFO", "persistence"), "aof_rewrite_in_progress:0\r\naof_rewrite_scheduled:0")
	})

	t.Log("restarting the node: it loads the dataset again, slowly")
	if err := pod.RestartInPlace(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	sawLoading := false
	tick := time.NewTicker(period)
	defer tick.Stop()
	for failed := 0; ; {
		if ctx.Err() != nil {
			t.Fatal("the node did not finish its load within the test's bound")
		}
		ok := run(ctx, pod, startup)
		persistence, _ := cliErr(ctx, pod, "", "INFO", "persistence")
		loading := strings.Contains(persistence, "loading:1")
		sawLoading = sawLoading || loading
		switch {
		case ok && loading:
			// The startup probe passed during the load: from here the kubelet runs
			// liveness instead, which must pass for the rest of the load.
			t.Logf("startup probe passed %s after the restart, the node still loading", time.Since(start).Round(time.Millisecond))
			if run(ctx, pod, pongOnly(t, startup)) {
				t.Fatal("a startup probe that takes only PONG passed during the load too: the node answers PONG while loading, and nothing is proven")
			}
			expectAliveWhileLoading(ctx, t, pod, liveness, readiness, start)
			return
		case ok:
			t.Fatalf("the startup probe passed only after the load (%s): the test's load was too short to prove anything; raise keys or loadDelay", time.Since(start).Round(time.Millisecond))
		}
		if failed++; failed >= failures {
			t.Fatalf("the startup probe failed %d times in a row (the kubelet would restart the node), loading=%v", failed, loading)
		}
		nextProbe(ctx, tick)
	}
}

// expectAliveWhileLoading runs the liveness and readiness probes every period
// until the node has loaded its keys: liveness must never fail failures times
// in a row, readiness never pass, and the load must take longer than the
// startup window.
func expectAliveWhileLoading(ctx context.Context, t *testing.T, pod *valkeyharness.Pod, liveness, readiness []string, start time.Time) {
	t.Helper()
	passedWhileLoading, failed := 0, 0
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		if ctx.Err() != nil {
			t.Fatal("the node did not finish its load within the test's bound")
		}
		ok, ready := run(ctx, pod, liveness), run(ctx, pod, readiness)
		persistence, _ := cliErr(ctx, pod, "", "INFO", "persistence")
		if !strings.Contains(persistence, "loading:1") {
			break
		}
		if ready {
			t.Fatal("the readiness probe passed while the node loads: it serves no data yet")
		}
		if ok {
			passedWhileLoading, failed = passedWhileLoading+1, 0
		} else if failed++; failed >= failures {
			t.Fatalf("the liveness probe failed %d times in a row while the node loads", failed)
		}
		nextProbe(ctx, tick)
	}
	loaded := time.Since(start)
	t.Logf("the load ended %s after the restart; liveness passed %d times during it", loaded.Round(time.Millisecond), passedWhileLoading)
	if window := period * failures; loaded <= window {
		t.Fatalf("the load took %s, not longer than the startup window of %s: nothing proven", loaded, window)
	}
	if passedWhileLoading == 0 {
		t.Fatal("liveness never ran during the load: nothing proven")
	}
	if got := strings.TrimSpace(cli(ctx, t, pod, "", "DBSIZE")); got != strconv.Itoa(keys) {
		t.Fatalf("DBSIZE after the load is %s, want %d", got, keys)
	}
}

// pongOnly is the startup probe as releases before this one injected it: only
// PONG is alive.
func pongOnly(t *testing.T, startup []string) []string {
	t.Helper()
	out := slices.Clone(startup)
	last := out[len(out)-1]
	if !strings.Contains(last, "'^(PONG|LOADING|MASTERDOWN)'") {
		t.Fatalf("the startup probe does not match the alive pattern this test expects: %q", last)
	}
	out[len(out)-1] = strings.Replace(last, "'^(PONG|LOADING|MASTERDOWN)'", "'^PONG$'", 1)
	return out
}

// run runs a probe command against the pod, as the kubelet does, with its
// timeout.
func run(ctx context.Context, pod *valkeyharness.Pod, command []string) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := pod.RunHook(ctx, command)
	return err == nil
}

// cli runs valkey-cli against the pod with args, stdin as its input.
func cli(ctx context.Context, t *testing.T, pod *valkeyharness.Pod, stdin string, args ...string) string {
	t.Helper()
	out, err := cliErr(ctx, pod, stdin, args...)
	if err != nil {
		t.Fatalf("valkey-cli %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return out
}

func cliErr(ctx context.Context, pod *valkeyharness.Pod, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "valkey-cli", append([]string{"-h", pod.IP, "-p", strconv.Itoa(valkeyharness.Port)}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func waitFor(ctx context.Context, t *testing.T, bound time.Duration, what string, done func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !done() {
		if ctx.Err() != nil {
			t.Fatalf("waited %s for %s", bound, what)
		}
		nextProbe(ctx, tick)
	}
}

// nextProbe waits for the next tick of the probes' cadence, as the kubelet
// probes every period, or for ctx to end; the callers check ctx.
func nextProbe(ctx context.Context, tick *time.Ticker) {
	select {
	case <-ctx.Done():
	case <-tick.C:
	}
}
