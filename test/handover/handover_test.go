// Package handover runs the valkey container's preStop hook, as admission injects
// it, against real valkey-server processes on loopback (test/valkeyharness): a
// master hands over to its replica in sync; a replica, a master whose replica is
// gone or does not answer (paused, as a partition looks), and a pod whose grace
// period leaves no time stop without a hand-over, within the hook's deadline. The kubelet running the hook in a pod is
// test/realnode's part.
package handover

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/valkey-webhook/valkey-webhook/cluster"
	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
	"github.com/valkey-webhook/valkey-webhook/test/valkeyharness"
)

// shard is one master of the test cluster and its replica.
type shard struct{ master, replica *valkeyharness.Pod }

// start forms a 3-master cluster of six pods with auth, and returns it with a
// shard.
func start(ctx context.Context, t *testing.T) (*valkeyharness.Cluster, shard) {
	t.Helper()
	if _, err := exec.LookPath("valkey-server"); err != nil {
		t.Fatal("valkey-server 8 must be installed (.ci/run installs it from bookworm-backports)")
	}
	c, err := valkeyharness.Start(valkeyharness.Options{
		Pods: 6, Dir: t.TempDir(), Auth: true,
		Policy: func(p *config.Policy) { p.Cluster.NodeTimeout = 2000 },
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
	var nodes []cluster.Node
	for i, addr := range c.Addresses() {
		nodes = append(nodes, cluster.Node{Address: addr, Zone: fmt.Sprint("z", i%3), Host: fmt.Sprint("h", i)})
	}
	if _, err := cluster.Init(ctx, nodes, cluster.Options{Password: c.Password, Timeout: time.Minute, ReplicasPerMaster: 1}); err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Pods {
		waitFor(t, 30*time.Second, p.Name+" is a replica in sync, or a master with one", func() bool {
			info := replication(ctx, t, c, p)
			return info["master_link_status"] == "up" || strings.Contains(info["slave0"], "state=online")
		})
	}
	for _, p := range c.Pods {
		info := replication(ctx, t, c, p)
		if info["role"] != "slave" {
			continue
		}
		for _, m := range c.Pods {
			if m.IP == info["master_host"] {
				return c, shard{master: m, replica: p}
			}
		}
	}
	t.Fatal("no replica of a known master")
	return nil, shard{}
}

func replication(ctx context.Context, t *testing.T, c *valkeyharness.Cluster, p *valkeyharness.Pod) map[string]string {
	t.Helper()
	cl, err := c.NodeClient(p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	s, err := cl.Do(ctx, cl.B().Info().Section("replication").Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	return cluster.ParseInfo(s)
}

func role(ctx context.Context, t *testing.T, c *valkeyharness.Cluster, p *valkeyharness.Pod) string {
	t.Helper()
	return replication(ctx, t, c, p)["role"]
}

// waitFor polls cond every 100 ms until it holds or the bound passes.
func waitFor(t *testing.T, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(bound); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %s", what, bound)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runHook runs the preStop hook of a pod of grace period grace in p and returns
// its log and how long it took; the hook must end well before the grace period.
func runHook(ctx context.Context, t *testing.T, c *valkeyharness.Cluster, p *valkeyharness.Pod, grace *int64) (string, time.Duration) {
	t.Helper()
	hook, err := c.PreStop(grace)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	log, err := p.RunHook(ctx, hook)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("the hook failed: %v; log:\n%s", err, log)
	}
	if bound := time.Duration(defaults.HandoverSeconds(grace)+3) * time.Second; took > bound {
		t.Errorf("the hook took %s, past its deadline %s (plus one valkey-cli timeout)", took, bound)
	}
	return log, took
}

// expectNoHandOver runs the master's hook and expects it to skip its replica,
// find none in sync and stay master.
func expectNoHandOver(ctx context.Context, t *testing.T, c *valkeyharness.Cluster, s shard) {
	t.Helper()
	log, took := runHook(ctx, t, c, s.master, nil)
	t.Logf("hook took %s:\n%s", took, log)
	for _, want := range []string{"the replica at " + s.replica.Addr + " is not in sync", "no replica in sync: stopping without a hand-over"} {
		if !strings.Contains(log, want) {
			t.Errorf("the hook's log does not say %q:\n%s", want, log)
		}
	}
	if got := role(ctx, t, c, s.master); got != "master" {
		t.Errorf("the master is %s after the hook, want master: nothing was handed over", got)
	}
}

func TestMasterHandsOverToItsReplica(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, s := start(ctx, t)

	log, took := runHook(ctx, t, c, s.master, nil)
	t.Logf("hook took %s:\n%s", took, log)
	if !strings.Contains(log, "valkey-webhook preStop: hand-over done: "+s.replica.Addr+" is the master; answering MOVED for 2 s more") {
		t.Errorf("the hook's log does not say the hand-over to %s was seen:\n%s", s.replica.IP, log)
	}
	if got := role(ctx, t, c, s.master); got != "slave" {
		t.Errorf("the old master is %s after the hook, want slave", got)
	}
	if got := role(ctx, t, c, s.replica); got != "master" {
		t.Errorf("its replica is %s after the hook, want master", got)
	}

	log, _ = runHook(ctx, t, c, s.master, nil)
	if want := "valkey-webhook preStop: role slave: stopping at once\n"; log != want {
		t.Errorf("the hook on a replica logged %q, want %q", log, want)
	}
}

func TestNoHandOverToAReplicaThatDoesNotAnswer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, s := start(ctx, t)

	// A paused process is what a partitioned or hung node looks like to its
	// peers: its connections stay open, and nothing answers.
	if err := s.replica.Pause(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.replica.Resume() }()
	expectNoHandOver(ctx, t, c, s)
}

func TestNoHandOverToAReplicaThatIsGone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, s := start(ctx, t)

	// Stopped just now: the cluster still lists it as a connected replica.
	if err := s.replica.Stop(); err != nil {
		t.Fatal(err)
	}
	expectNoHandOver(ctx, t, c, s)
}

func TestAGracePeriodWithoutTimeForAHandOver(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, s := start(ctx, t)

	grace := int64(defaults.ShutdownReserve)
	log, _ := runHook(ctx, t, c, s.master, &grace)
	if want := "valkey-webhook preStop: terminationGracePeriodSeconds leaves no time for a hand-over: stopping at once\n"; log != want {
		t.Errorf("the hook logged %q, want %q", log, want)
	}
	if got := role(ctx, t, c, s.master); got != "master" {
		t.Errorf("the master is %s after the hook, want master", got)
	}
}
