// Package lifecycle runs cluster init, heal and status against real valkey-server
// processes started exactly like the hardened container (test/valkeyharness): one
// loopback address per pod, the rendered valkey.conf, the auth and TLS files.
package lifecycle

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/valkey-io/valkey-go"

	"github.com/valkey-webhook/valkey-webhook/cluster"
	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/test/valkeyharness"
)

func TestLifecycle(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "cluster init, heal and status on real valkey-server nodes")
}

var _ = BeforeSuite(func() {
	_, err := exec.LookPath("valkey-server")
	Expect(err).NotTo(HaveOccurred(), "valkey-server 8 must be installed (.ci/run installs it from bookworm-backports)")
})

// opTimeout bounds each Init, Heal and Status call of the tests.
const opTimeout = 60 * time.Second

// reshardTimeout bounds one drain or rebalance, which moves thousands of slots,
// each acknowledged by the replicas: about 25 s on a quiet machine, past 60 s
// with the race detector while the other suites of `make test` share the 2
// cores, and once past 120 s in a .ci/run. The bound is for a hung move; speed
// is make bench-reshard's.
const reshardTimeout = 4 * opTimeout

// mode is how the pods run: auth and TLS as the policy turns them on, and
// cluster.nodeTimeout (ms; 0: the policy's default, 5000).
type mode struct {
	name        string
	auth        bool
	tls         bool
	nodeTimeout int
}

// modes: the default node timeout once; a shorter one for the other modes, as
// heal waits about three node timeouts after a full restart (the masters marked
// failing are cleared after two, and rejoin after one more).
var modes = []mode{
	{name: "without auth"},
	{name: "with auth", auth: true, nodeTimeout: 3000},
	{name: "with TLS (client certificates required) and auth", auth: true, tls: true, nodeTimeout: 3000},
}

// zones puts pods 0-5 in zones a, b, c, a, b, c: the natural layout (pod i+3
// replicates pod i) would put every replica in its master's zone.
var zones = []string{"a", "b", "c", "a", "b", "c"}

// startPods starts n pods of the mode and stops them when the spec ends. The
// pods' logs are attached to a failed spec, and to every spec with
// LIFECYCLE_LOGS=1.
func startPods(m mode, n int) *valkeyharness.Cluster {
	GinkgoHelper()
	c, err := valkeyharness.Start(valkeyharness.Options{
		Pods: n, Dir: GinkgoT().TempDir(), Auth: m.auth, TLS: m.tls, TLSAuthClients: m.tls,
		Policy: func(p *config.Policy) {
			if m.nodeTimeout > 0 {
				p.Cluster.NodeTimeout = m.nodeTimeout
			}
		},
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(c.Close)
	DeferCleanup(func() {
		if CurrentSpecReport().Failed() || os.Getenv("LIFECYCLE_LOGS") != "" {
			AddReportEntry("valkey-server logs", c.Logs())
		}
	})
	return c
}

// nodesOf gives each pod its zone and a Kubernetes node of its own.
func nodesOf(c *valkeyharness.Cluster) []cluster.Node {
	out := make([]cluster.Node, len(c.Pods))
	for i, addr := range c.Addresses() {
		out[i] = cluster.Node{Address: addr, Zone: zones[i%len(zones)], Host: fmt.Sprintf("k8s-node-%d", i)}
	}
	return out
}

// optionsOf are the options a client of the cluster needs, with progress lines in
// the spec's log.
func optionsOf(c *valkeyharness.Cluster) cluster.Options {
	return cluster.Options{
		Password:          c.Password,
		TLS:               c.ClientTLS(),
		Timeout:           opTimeout,
		ReplicasPerMaster: 1,
		Progress:          func(s string) { GinkgoWriter.Println(s) },
	}
}

// nodeFacts is what a test compares before and after an operation that must
// change nothing.
type nodeFacts struct {
	ID          string
	Self        string
	CurrentEpch string
	KnownNodes  string
	Assigned    string
	MeetsSent   string
}

// factsOf asks one pod directly (not through the cluster package) for its ID,
// its own CLUSTER NODES line without the ping and pong times, its epochs, known
// nodes, assigned slots and how many MEET messages it ever sent.
func factsOf(ctx context.Context, c *valkeyharness.Cluster, addr string) nodeFacts {
	GinkgoHelper()
	cl, err := c.NodeClient(addr)
	Expect(err).NotTo(HaveOccurred())
	defer cl.Close()
	info, err := cl.Do(ctx, cl.B().ClusterInfo().Build()).ToString()
	Expect(err).NotTo(HaveOccurred())
	nodes, err := cl.Do(ctx, cl.B().ClusterNodes().Build()).ToString()
	Expect(err).NotTo(HaveOccurred())
	id, err := cl.Do(ctx, cl.B().ClusterMyid().Build()).ToString()
	Expect(err).NotTo(HaveOccurred())
	m := cluster.ParseInfo(strings.TrimPrefix(info, "txt:"))
	self := ""
	for _, line := range strings.Split(strings.TrimPrefix(nodes, "txt:"), "\n") {
		if f := strings.Fields(line); len(f) >= 8 && strings.Contains(f[2], "myself") {
			self = strings.Join(append(f[:4:4], f[6:]...), " ")
		}
	}
	return nodeFacts{ID: id, Self: self, CurrentEpch: m["cluster_current_epoch"], KnownNodes: m["cluster_known_nodes"], Assigned: m["cluster_slots_assigned"], MeetsSent: m["cluster_stats_messages_meet_sent"]}
}

// configGet is one of a pod's running configuration values.
func configGet(ctx context.Context, c *valkeyharness.Cluster, addr, key string) string {
	GinkgoHelper()
	cl, err := c.NodeClient(addr)
	Expect(err).NotTo(HaveOccurred())
	defer cl.Close()
	kv, err := cl.Do(ctx, cl.B().ConfigGet().Parameter(key).Build()).AsStrMap()
	Expect(err).NotTo(HaveOccurred())
	return kv[key]
}

// viewOf is a pod's CLUSTER NODES.
func viewOf(ctx context.Context, c *valkeyharness.Cluster, addr string) []cluster.NodeEntry {
	GinkgoHelper()
	cl, err := c.NodeClient(addr)
	Expect(err).NotTo(HaveOccurred())
	defer cl.Close()
	nodes, err := cl.Do(ctx, cl.B().ClusterNodes().Build()).ToString()
	Expect(err).NotTo(HaveOccurred())
	view, err := cluster.ParseNodes(strings.TrimPrefix(nodes, "txt:"))
	Expect(err).NotTo(HaveOccurred())
	return view
}

func factsOfAll(ctx context.Context, c *valkeyharness.Cluster, addrs []string) map[string]nodeFacts {
	GinkgoHelper()
	out := map[string]nodeFacts{}
	for _, a := range addrs {
		out[a] = factsOf(ctx, c, a)
	}
	return out
}

// expectEmpty checks that a pod is as it started: alone, no slots, epoch 0.
func expectEmpty(f nodeFacts) {
	GinkgoHelper()
	Expect(f.KnownNodes).To(Equal("1"))
	Expect(f.Assigned).To(Equal("0"))
	Expect(f.CurrentEpch).To(Equal("0"))
}

// writeKeys writes n keys through a valkey-go cluster client, then waits until
// the replica of every master that holds keys has them. The client starts from
// the pods of the cluster: all of them, or the addresses given (pods that are
// not in the cluster yet would answer that they serve no slot).
func writeKeys(ctx context.Context, c *valkeyharness.Cluster, n int, addrs ...string) {
	GinkgoHelper()
	if len(addrs) == 0 {
		addrs = c.Addresses()
	}
	cl, err := valkey.NewClient(c.ClientOption(addrs...))
	Expect(err).NotTo(HaveOccurred())
	defer cl.Close()
	cmds := make(valkey.Commands, 0, n)
	for i := range n {
		cmds = append(cmds, cl.B().Set().Key(key(i)).Value(strconv.Itoa(i)).Build())
	}
	for i, r := range cl.DoMulti(ctx, cmds...) {
		Expect(r.Error()).NotTo(HaveOccurred(), "SET %s", key(i))
	}
	for _, addr := range addrs {
		node, err := c.NodeClient(addr)
		Expect(err).NotTo(HaveOccurred())
		role, err := node.Do(ctx, node.B().Role().Build()).ToArray()
		Expect(err).NotTo(HaveOccurred())
		keys, err := node.Do(ctx, node.B().Dbsize().Build()).AsInt64()
		Expect(err).NotTo(HaveOccurred())
		if kind, _ := role[0].ToString(); kind == "master" && keys > 0 {
			// The first sync of a new replica starts after the master's
			// repl-diskless-sync-delay (5s); WAIT returns 0 until it is done.
			Eventually(func() (int64, error) {
				return node.Do(ctx, node.B().Wait().Numreplicas(1).Timeout(1000).Build()).AsInt64()
			}).WithContext(ctx).WithTimeout(60*time.Second).Should(BeNumerically(">=", 1), "the replica of %s acknowledges the writes", addr)
		}
		node.Close()
	}
}

// readKeys reads the n keys back through a new cluster client.
func readKeys(ctx context.Context, c *valkeyharness.Cluster, n int) {
	GinkgoHelper()
	cl, err := valkey.NewClient(c.ClientOption(c.Addresses()...))
	Expect(err).NotTo(HaveOccurred())
	defer cl.Close()
	cmds := make(valkey.Commands, 0, n)
	for i := range n {
		cmds = append(cmds, cl.B().Get().Key(key(i)).Build())
	}
	for i, r := range cl.DoMulti(ctx, cmds...) {
		v, err := r.ToString()
		Expect(err).NotTo(HaveOccurred(), "GET %s", key(i))
		Expect(v).To(Equal(strconv.Itoa(i)), "GET %s", key(i))
	}
}

func key(i int) string { return fmt.Sprintf("key:%d", i) }
