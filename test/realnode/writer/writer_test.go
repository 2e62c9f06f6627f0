package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/valkey-webhook/valkey-webhook/cluster"
	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/test/valkeyharness"
)

// nodeTimeout is the cluster-node-timeout of the test's cluster (ms): short, so
// that the failover after the kill takes a second or two.
const nodeTimeout = 1000

// TestWriterMeasuresAKilledMaster runs the writer's core against six
// valkey-server processes on loopback (test/valkeyharness; auth on, TLS off, so
// the nodes announce their IPs), through its HTTP endpoint as the harness drives
// it: a quiet phase shows a small stall and no failed attempt, a phase in which a
// master is killed (SIGKILL) shows a stall of about the failover's time (more
// than the node timeout) with failed attempts, and every key either phase wrote
// reads back.
func TestWriterMeasuresAKilledMaster(t *testing.T) {
	if _, err := exec.LookPath("valkey-server"); err != nil {
		t.Fatal("valkey-server 8 must be installed (.ci/run installs it from bookworm-backports)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := valkeyharness.Start(valkeyharness.Options{
		Pods: 6, Dir: t.TempDir(), Auth: true,
		Policy: func(p *config.Policy) { p.Cluster.NodeTimeout = nodeTimeout },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer func() {
		if t.Failed() {
			t.Log(c.Logs())
		}
	}()
	var nodes []cluster.Node
	for i, addr := range c.Addresses() {
		nodes = append(nodes, cluster.Node{Address: addr, Zone: fmt.Sprint("z", i%3), Host: fmt.Sprint("h", i)})
	}
	opts := cluster.Options{Password: c.Password, Timeout: time.Minute, ReplicasPerMaster: 1}
	if _, err := cluster.Init(ctx, nodes, opts); err != nil {
		t.Fatal(err)
	}

	cl, err := valkey.NewClient(clientOption(c.Addresses(), c.Password, nil, time.Second, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	w := NewWriter(cl, Options{Writers: 4, Retry: 10 * time.Millisecond, AttemptTimeout: time.Second, Pause: 2 * time.Millisecond, ReadBackTimeout: 30 * time.Second}, "test")
	w.Start("warmup")
	defer w.Stop(context.Background())
	srv := httptest.NewServer(w.Handler(nil))
	defer srv.Close()

	call(ctx, t, srv, http.MethodPost, "/phase?name=quiet")
	time.Sleep(2 * time.Second)
	quiet := call(ctx, t, srv, http.MethodGet, "/report?final=1&next=kill")
	t.Log(quiet)
	if quiet.Phase != "quiet" || quiet.Writes < 100 || quiet.FailedAttempts != 0 || quiet.LongestStallMS > nodeTimeout/2 {
		t.Errorf("quiet phase: want 100 writes or more, no failed attempt, a stall under %d ms; got %s", nodeTimeout/2, quiet)
	}
	expectReadBack(t, quiet)

	st, err := cluster.Status(ctx, nodes, opts)
	if err != nil || !st.OK() {
		t.Fatalf("cluster status before the kill: %+v, %v", st, err)
	}
	var master, replica string
	for _, n := range st.Nodes {
		if n.Role == cluster.RoleReplica {
			master, replica = n.MasterAddress, n.Address
			break
		}
	}
	// A replica that never finished its first sync refuses to fail over (its
	// data is too old: cluster-replica-validity-factor), and the writes its
	// master buffered for it during the sync are lost with the master until they
	// are sent: the kill waits until the replica has every write its master had
	// taken when the first sync was over.
	waitFor(t, 30*time.Second, "the replica "+replica+" synced", func() bool {
		return cluster.ParseInfo(info(ctx, c, replica))["master_link_status"] == "up"
	})
	taken, _ := strconv.ParseInt(cluster.ParseInfo(info(ctx, c, master))["master_repl_offset"], 10, 64)
	waitFor(t, 30*time.Second, "the replica "+replica+" caught up", func() bool {
		got, err := strconv.ParseInt(cluster.ParseInfo(info(ctx, c, replica))["slave_repl_offset"], 10, 64)
		return err == nil && got >= taken
	})
	for _, p := range c.Pods {
		if p.Addr == master {
			t.Logf("killing %s (master at %s; its replica is at %s)", p.Name, master, replica)
			killPod(t, p)
		}
	}
	waitFor(t, 30*time.Second, "the replica "+replica+" took over", func() bool {
		return cluster.ParseInfo(info(ctx, c, replica))["role"] == "master"
	})
	time.Sleep(time.Second)
	kill := call(ctx, t, srv, http.MethodPost, "/stop")
	t.Log(kill)
	if kill.Phase != "kill" || kill.FailedAttempts == 0 || kill.LongestStallMS < 0.8*nodeTimeout || kill.LongestStallMS > 20000 || kill.Unfinished {
		t.Errorf("kill phase: want failed attempts and a finished stall between %d ms and 20 s; got %s", 8*nodeTimeout/10, kill)
	}
	expectReadBack(t, kill)
}

func expectReadBack(t *testing.T, r Report) {
	t.Helper()
	rb := r.ReadBack
	if rb == nil || rb.Written == 0 || int64(rb.Written) != r.Writes || rb.Equal != rb.Written {
		t.Errorf("phase %s: want every key written read back equal; got %s", r.Phase, r)
	}
}

// call sends a control request and decodes its report.
func call(ctx context.Context, t *testing.T, srv *httptest.Server, method, uri string) Report {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, srv.URL+uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r Report
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s", method, uri, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

// killPod kills the pod's valkey-server with SIGKILL, as a node failure or a
// forced delete does: the process whose working directory is in the pod's (its
// data directory, where valkey-server changes to).
func killPod(t *testing.T, p *valkeyharness.Pod) {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, proc := range procs {
		cwd, err := os.Readlink(proc + "/cwd")
		comm, _ := os.ReadFile(proc + "/comm")
		if err != nil || (cwd != p.Dir && !strings.HasPrefix(cwd, p.Dir+"/")) || strings.TrimSpace(string(comm)) != "valkey-server" {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(proc))
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("no valkey-server process of %s in %s", p.Name, p.Dir)
}

// info is the node's INFO replication, empty when it does not answer.
func info(ctx context.Context, c *valkeyharness.Cluster, addr string) string {
	cl, err := c.NodeClient(addr)
	if err != nil {
		return ""
	}
	defer cl.Close()
	s, _ := cl.Do(ctx, cl.B().Info().Section("replication").Build()).ToString()
	return s
}

// waitFor polls cond every 100 ms until it holds, failing the test after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", limit, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestVerifyingDialerChecksTheDialedName: the TLS dial verifies the certificate
// for the host it dials, whatever server name the configuration carries.
func TestVerifyingDialerChecksTheDialedName(t *testing.T) {
	files, err := valkeyharness.NewTLSFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		certFor string
		ok      bool
	}{
		{name: "the certificate names the host", certFor: "localhost", ok: true},
		{name: "the certificate names another host", certFor: "cache-0.cache-headless.ns.svc.cluster.local"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := files.SecretData("node", []string{tc.certFor})
			if err != nil {
				t.Fatal(err)
			}
			pair, err := tls.X509KeyPair(data["tls.crt"], data["tls.key"])
			if err != nil {
				t.Fatal(err)
			}
			l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() {
				for {
					conn, err := l.Accept()
					if err != nil {
						return
					}
					_ = conn.(*tls.Conn).Handshake()
					conn.Close()
				}
			}()
			_, port, _ := net.SplitHostPort(l.Addr().String())
			names := &verifiedNames{count: map[string]int{}}
			cfg := files.ClientConfig()
			cfg.ServerName = "ignored.example"
			conn, err := verifyingDialer(names)(context.Background(), net.JoinHostPort("localhost", port), &net.Dialer{Timeout: 5 * time.Second}, cfg)
			if tc.ok != (err == nil) {
				t.Fatalf("dial localhost with a certificate for %s: %v", tc.certFor, err)
			}
			if err == nil {
				conn.Close()
				if got := names.snapshot(); len(got) != 1 || got[0].Name != "localhost" {
					t.Errorf("verified names: %v", got)
				}
			}
		})
	}
}
