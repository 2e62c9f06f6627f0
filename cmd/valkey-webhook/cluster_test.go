package main

import (
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/valkey-webhook/valkey-webhook/cluster"
	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/test/valkeyharness"
)

func TestClusterFlagsRefused(t *testing.T) {
	for name, args := range map[string][]string{
		"no nodes":               {"cluster", "init"},
		"zones not one per node": {"cluster", "init", "--nodes", "10.0.0.1:6379,10.0.0.2:6379", "--zones", "a"},
		"cert without key":       {"cluster", "status", "--nodes", "10.0.0.1:6379", "--tls-cert", "tls.crt"},
		"missing ca":             {"cluster", "status", "--nodes", "10.0.0.1:6379", "--tls-ca", "/nonexistent/ca.crt"},
		"missing password":       {"cluster", "heal", "--nodes", "10.0.0.1:6379", "--password-file", "/nonexistent/password"},
		"bad output":             {"cluster", "status", "--nodes", "10.0.0.1:6379", "-o", "yaml"},
		"bad address":            {"cluster", "status", "--nodes", "10.0.0.1"},
		"drain of nothing":       {"cluster", "drain", "--nodes", "10.0.0.1:6379"},
		"drain past the nodes":   {"cluster", "drain", "--nodes", "10.0.0.1:6379,10.0.0.2:6379", "--ordinals", "2"},
	} {
		t.Run(name, func(t *testing.T) {
			r := runCLI(t, "", args...)
			if r.code != exitBadInput || !strings.HasPrefix(r.stderr, "Error: ") {
				t.Errorf("exit %d, stderr %q; want exit %d with an error", r.code, r.stderr, exitBadInput)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q; want nothing", r.stdout)
			}
		})
	}
}

// TestClusterCommands runs the CLI against six real valkey-server pods with TLS
// (client certificates required) and auth, as the hardened container runs them.
// The full restart and heal are covered in test/lifecycle.
func TestClusterCommands(t *testing.T) {
	if _, err := exec.LookPath("valkey-server"); err != nil {
		t.Fatal("valkey-server is not installed: install valkey-server and valkey-tools from bookworm-backports (see the README), as .ci/run does")
	}
	c, err := valkeyharness.Start(valkeyharness.Options{
		Pods: 6, Dir: t.TempDir(), Auth: true, TLS: true, TLSAuthClients: true,
		Policy: func(p *config.Policy) { p.Cluster.NodeTimeout = 2000 },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	nodes := strings.Join(c.Addresses(), ",")
	conn := []string{"--nodes", nodes, "--tls-ca", c.TLS.CAFile, "--tls-cert", c.TLS.CertFile, "--tls-key", c.TLS.KeyFile,
		"--password-file", writeFile(t, "password", c.Password+"\n"), "--timeout", "60s"}
	cmd := func(args ...string) []string { return append(args, conn...) }
	status := func(t *testing.T) (cluster.Report, result) {
		t.Helper()
		r := runCLI(t, "", cmd("cluster", "status", "-o", "json")...)
		var st cluster.Report
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatalf("status -o json: %v\n%s\n%s", err, r.stdout, r.stderr)
		}
		return st, r
	}

	st, r := status(t)
	if r.code != exitClusterFailed || st.State != cluster.StateFail || len(st.Nodes) != 6 || st.SlotsCovered != 0 {
		t.Fatalf("status of empty nodes: exit %d, %+v; want exit 1, fail, 6 nodes, 0 slots\n%s", r.code, st, r.stderr)
	}

	wrong := append(cmd("cluster", "init"), "--password-file", writeFile(t, "wrong", "not-the-password"))
	r = runCLI(t, "", wrong...)
	if r.code != exitClusterFailed || !strings.Contains(r.stderr, "init refused, nothing changed") || !strings.Contains(r.stderr, "wrong password") {
		t.Fatalf("init with a wrong password: exit %d\n%s", r.code, r.stderr)
	}
	for _, addr := range c.Addresses() {
		if !strings.Contains(r.stderr, "node "+addr+": wrong password") {
			t.Errorf("init with a wrong password does not name %s:\n%s", addr, r.stderr)
		}
	}

	r = runCLI(t, "", append(cmd("cluster", "init"), "--zones", "a,b,c,a,b,c")...)
	if r.code != 0 {
		t.Fatalf("init: exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"cluster init: plan: master", "cluster init: " + c.Pods[0].Addr + ": assigned slots 0-5460", "replicates", "cluster_state:ok"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("init's progress lacks %q:\n%s", want, r.stderr)
		}
	}
	if !strings.HasPrefix(r.stdout, "cluster formed\n") || !strings.Contains(r.stdout, "cluster_state:ok, 16384 of 16384 slots covered, 3 masters, 3 replicas") {
		t.Errorf("init's summary:\n%s", r.stdout)
	}

	r = runCLI(t, "", cmd("cluster", "init")...)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "cluster already formed, nothing changed\n") {
		t.Errorf("second init: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", cmd("cluster", "heal")...)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "nothing to heal, nothing changed\n") {
		t.Errorf("heal of a healthy cluster: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	st, r = status(t)
	if r.code != 0 || !st.OK() || st.Masters != 3 || st.Replicas != 3 || st.SlotsCovered != cluster.SlotCount {
		t.Errorf("status after init: exit %d, %+v\n%s", r.code, st, r.stderr)
	}
	r = runCLI(t, "", cmd("cluster", "status")...)
	if r.code != 0 || strings.Count(r.stdout, "\n") != 8 {
		t.Errorf("status table: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	r = runCLI(t, "", cmd("cluster", "rebalance")...)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "no slot to move, nothing changed\n") {
		t.Errorf("rebalance of an even cluster: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	replica := -1
	for i, n := range st.Nodes {
		if n.Role == cluster.RoleReplica {
			replica = i
		}
	}
	r = runCLI(t, "", append(cmd("cluster", "drain"), "--ordinals", strconv.Itoa(replica))...)
	if r.code != 0 || !strings.Contains(r.stdout, "is a replica: it serves no slots, nothing to drain") {
		t.Errorf("drain of a replica: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", append(cmd("cluster", "drain"), "--node-ids", "0123456789012345678901234567890123456789")...)
	if r.code != exitClusterFailed || !strings.Contains(r.stderr, "drain refused, nothing changed: node 0123456789012345678901234567890123456789: is not one of the given nodes") {
		t.Errorf("drain of an unknown node ID: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}
