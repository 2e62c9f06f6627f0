// Command lifecycle is `make bench-lifecycle`: it measures how long cluster.Init
// takes to form a cluster of six empty valkey-server nodes, against
// `valkey-cli --cluster create` on the same six processes in the same run, and how
// long cluster.Heal takes to bring the cluster back after a full restart on new
// addresses. docs/benchmarks.md ("Cluster lifecycle: init and heal") explains the
// method and holds the figures.
//
// The nodes are test/valkeyharness pods: valkey-server 8 started exactly as the
// hardened container runs it, one loopback address each. Before every formation
// each node is emptied (FLUSHALL, CLUSTER RESET HARD) and the benchmark waits until
// it knows only itself. Init rounds alternate which tool goes first. Both tools are
// timed to the same end point, the one Init itself waits for: every node reports
// cluster_state:ok with all 16384 slots assigned, knows the other five, and sees
// three masters with one replica each. A watcher asks every node directly (CLUSTER
// INFO, CLUSTER NODES) every -poll while either tool runs; valkey-cli counts as
// done when it has exited and the watcher has seen that end point, Init when it
// returns (it returns only once it has seen it).
//
// Each heal round forms the cluster with Init, writes -keys keys and waits until
// every replica has them, restarts every pod on a new address with its data, then
// times cluster.Heal, and reads every key back through a new cluster client: a lost
// key fails the run. The last line printed is machine-readable:
//
//	lifecycle-bench: init_ms=<a> valkey_cli_ms=<b> init_ratio=<a/b> heal_ms=<h> heal_node_timeouts=<h/node-timeout>
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/valkey-webhook/valkey-webhook/cluster"
	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/test/valkeyharness"
)

// The layout formed: six nodes, three masters with one replica each.
const (
	pods              = 6
	replicasPerMaster = 1
	masters           = pods / (1 + replicasPerMaster)
)

// zones puts the pods in zones a, b, c, a, b, c, as the lifecycle suite does: Init
// then plans replicas out of their master's zone, as it does in a real cluster.
var zones = []string{"a", "b", "c"}

// resetTimeout bounds emptying the six nodes; settleTimeout bounds waiting for
// the replicas to acknowledge the keys written before a restart.
const (
	resetTimeout  = 30 * time.Second
	settleTimeout = 60 * time.Second
)

// startupGrace is how long the benchmark lets the pods run before the first
// round. valkey-server does not evaluate a master's cluster state during its first
// 2 s (CLUSTER_WRITABLE_DELAY), and a formation within that window skips the
// rejoin delay every later formation pays; every round starts after it, as init
// does on pods that have been running for a while.
const startupGrace = 3 * time.Second

type options struct {
	rounds      int
	healRounds  int
	keys        int
	auth        bool
	tls         bool
	nodeTimeout int
	healAfter   time.Duration
	poll        time.Duration
	opTimeout   time.Duration
	keep        bool
	verbose     bool
}

func main() {
	o := options{}
	flag.IntVar(&o.rounds, "rounds", 5, "init rounds; each forms the cluster once with cluster.Init and once with valkey-cli, the order swapped every other round")
	flag.IntVar(&o.healRounds, "heal-rounds", 3, "heal rounds; each forms the cluster, writes keys, restarts every pod on a new address and times cluster.Heal (0: skip)")
	flag.IntVar(&o.keys, "keys", 1000, "keys written before each restart and read back after heal")
	flag.BoolVar(&o.auth, "auth", false, "run the nodes with auth.enabled (a password)")
	flag.BoolVar(&o.tls, "tls", false, "run the nodes with TLS, client certificates required (tls.authClients)")
	flag.IntVar(&o.nodeTimeout, "node-timeout", 0, "cluster.nodeTimeout in ms for the rendered valkey.conf (0: the policy's default)")
	flag.DurationVar(&o.healAfter, "heal-after", 0, "wait this long after the restart before calling cluster.Heal (not timed): the nodes flag their unreachable peers failing after cluster-node-timeout")
	flag.DurationVar(&o.poll, "poll", 25*time.Millisecond, "how often the watcher asks every node while a tool forms the cluster")
	flag.DurationVar(&o.opTimeout, "op-timeout", 2*time.Minute, "bound of each Init, valkey-cli run and Heal, waits included")
	flag.BoolVar(&o.keep, "keep", false, "keep the pods' directories (valkey.conf, valkey.log, data) also when the run succeeds")
	flag.BoolVar(&o.verbose, "v", false, "print cluster.Init's and cluster.Heal's progress lines to stderr")
	flag.Parse()
	if o.rounds < 1 || o.healRounds < 0 || o.keys < 1 || o.nodeTimeout < 0 || o.healAfter < 0 || o.poll <= 0 || o.opTimeout <= 0 {
		fail(errors.New("-rounds, -keys, -poll and -op-timeout must be positive, -heal-rounds, -node-timeout and -heal-after at least 0"))
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	line, err := run(ctx, o)
	stop()
	if err != nil {
		fail(err)
	}
	fmt.Println(line)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "lifecycle-bench:", err)
	os.Exit(1)
}

// bench is one run: the six pods and the options.
type bench struct {
	o           options
	c           *valkeyharness.Cluster
	nodeTimeout time.Duration
}

func run(ctx context.Context, o options) (_ string, err error) {
	if _, err := exec.LookPath("valkey-cli"); err != nil {
		return "", fmt.Errorf("valkey-cli is not installed: %w", err)
	}
	dir, err := os.MkdirTemp("", "valkey-lifecycle-bench-")
	if err != nil {
		return "", err
	}
	// Registered first, so it runs after the pods are closed.
	defer func() {
		if err == nil && !o.keep {
			err = os.RemoveAll(dir)
		} else {
			fmt.Fprintf(os.Stderr, "lifecycle-bench: the pods' valkey.conf, valkey.log and data are in %s\n", dir)
		}
	}()
	c, err := valkeyharness.Start(valkeyharness.Options{
		Pods: pods, Dir: dir, Auth: o.auth, TLS: o.tls, TLSAuthClients: o.tls,
		Policy: func(p *config.Policy) {
			if o.nodeTimeout > 0 {
				p.Cluster.NodeTimeout = o.nodeTimeout
			}
		},
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	nodeTimeout, err := renderedNodeTimeout(c.Pods[0])
	if err != nil {
		return "", err
	}
	b := &bench{o: o, c: c, nodeTimeout: nodeTimeout}
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case <-time.After(startupGrace):
	}

	fmt.Printf("cluster lifecycle benchmark: %s, %d CPUs (GOMAXPROCS %d), %s %s/%s, %s\n",
		cpuModel(), runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH, valkeyVersion())
	fmt.Printf("%d pods (%d masters, %d replica each), auth %s, TLS %s; cluster-node-timeout %d ms (from the rendered valkey.conf); load average at start: %s\n",
		pods, masters, replicasPerMaster, onOff(o.auth), tlsMode(o.tls), nodeTimeout.Milliseconds(), loadAverage())

	ours, cli, err := b.initRounds(ctx)
	if err != nil {
		return "", err
	}
	heals, err := b.healRounds(ctx)
	if err != nil {
		return "", err
	}

	fmt.Printf("\nload average at the end: %s\n", loadAverage())
	initMS, cliMS := median(column(ours, total)), median(column(cli, total))
	ratios := make([]float64, len(ours))
	for i := range ours {
		ratios[i] = ms(ours[i].total()) / ms(cli[i].total())
	}
	ratio := median(ratios)
	fmt.Printf("init, median of %d rounds: cluster.Init %.0f ms (every node settled as first seen by the watcher: %.0f ms); "+
		"valkey-cli %.0f ms (exited: %.0f ms; every node cluster_state:ok: %.0f ms; settled: %.0f ms)\n",
		len(ours), initMS, median(column(ours, settle)), cliMS, median(column(cli, exit)), median(column(cli, stateOK)), median(column(cli, settle)))
	fmt.Printf("init_ratio = median over the rounds of Init / valkey-cli in the same round: %.2f (goal: at most 0.50, %s); ratio of the medians: %.2f\n",
		ratio, metOrMissed(ratio <= 0.5), initMS/cliMS)
	healMS, healNT := math.NaN(), math.NaN()
	if len(heals) > 0 {
		hs := make([]float64, len(heals))
		for i, h := range heals {
			hs[i] = ms(h.heal)
		}
		healMS = median(hs)
		healNT = healMS / ms(nodeTimeout)
		fmt.Printf("heal, median of %d rounds: %.0f ms = %.2f x cluster-node-timeout (%d ms) (goal: at most 2, %s)\n",
			len(heals), healMS, healNT, nodeTimeout.Milliseconds(), metOrMissed(healNT <= 2))
	}
	return fmt.Sprintf("lifecycle-bench: init_ms=%.0f valkey_cli_ms=%.0f init_ratio=%.2f heal_ms=%.0f heal_node_timeouts=%.2f",
		initMS, cliMS, ratio, healMS, healNT), nil
}

// initRun is one formation, every time from the moment the tool was started.
type initRun struct {
	// exit: the tool returned.
	exit time.Duration
	// stateOK: the watcher first saw every node report cluster_state:ok.
	stateOK time.Duration
	// settled: the watcher first saw the end point Init waits for on every node.
	settled time.Duration
	// waitsForSettled is true for Init, which returns only once it has seen
	// every node settled itself.
	waitsForSettled bool
}

// total is the time until the tool has returned and every node is settled.
func (r initRun) total() time.Duration {
	if r.waitsForSettled {
		return r.exit
	}
	return max(r.exit, r.settled)
}

// Columns of initRuns, for column.
func total(r initRun) time.Duration   { return r.total() }
func exit(r initRun) time.Duration    { return r.exit }
func stateOK(r initRun) time.Duration { return r.stateOK }
func settle(r initRun) time.Duration  { return r.settled }

// column is one figure of every run, in ms.
func column(rs []initRun, f func(initRun) time.Duration) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = ms(f(r))
	}
	return out
}

// initRounds forms the cluster -rounds times with each tool, from empty nodes,
// Init first in odd rounds and valkey-cli first in even ones.
func (b *bench) initRounds(ctx context.Context) (ours, cli []initRun, err error) {
	fmt.Printf("\ninit: %d rounds; each forms the cluster from six empty nodes with cluster.Init and with valkey-cli --cluster create, the order swapped every other round\n", b.o.rounds)
	for round := range b.o.rounds {
		order := []bool{true, false}
		if round%2 == 1 {
			order = []bool{false, true}
		}
		var o, v initRun
		for _, isOurs := range order {
			if err := b.reset(ctx); err != nil {
				return nil, nil, err
			}
			if isOurs {
				o, err = b.initOurs(ctx)
			} else {
				v, err = b.initCLI(ctx)
			}
			if err != nil {
				return nil, nil, fmt.Errorf("init round %d: %w", round+1, err)
			}
		}
		ours, cli = append(ours, o), append(cli, v)
		first := "Init first"
		if !order[0] {
			first = "valkey-cli first"
		}
		fmt.Printf("  round %d (%-16s)  Init %5.0f ms (settled seen %5.0f)   valkey-cli %5.0f ms (exit %5.0f, state ok %5.0f, settled %5.0f)   ratio %.2f\n",
			round+1, first, ms(o.total()), ms(o.settled), ms(v.total()), ms(v.exit), ms(v.stateOK), ms(v.settled), ms(o.total())/ms(v.total()))
	}
	return ours, cli, nil
}

// initOurs forms the cluster with cluster.Init.
func (b *bench) initOurs(ctx context.Context) (initRun, error) {
	nodes, opts := b.nodes(), b.options()
	r, err := b.timed(ctx, func(ctx context.Context) error {
		res, err := cluster.Init(ctx, nodes, opts)
		if err != nil {
			return err
		}
		if !res.Changed || !res.Status.OK() || res.Status.Masters != masters || res.Status.Replicas != pods-masters {
			return fmt.Errorf("cluster.Init returned changed=%t state=%s masters=%d replicas=%d", res.Changed, res.Status.State, res.Status.Masters, res.Status.Replicas)
		}
		return nil
	})
	r.waitsForSettled = true
	if err != nil {
		return r, fmt.Errorf("cluster.Init: %w", err)
	}
	return r, nil
}

// initCLI forms the cluster with valkey-cli --cluster create, with the password
// in REDISCLI_AUTH and the harness's CA and client certificate for TLS.
func (b *bench) initCLI(ctx context.Context) (initRun, error) {
	var args []string
	if t := b.c.TLS; t != nil {
		args = append(args, "--tls", "--cacert", t.CAFile, "--cert", t.CertFile, "--key", t.KeyFile)
	}
	args = append(args, "--cluster", "create")
	args = append(args, b.c.Addresses()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicasPerMaster), "--cluster-yes")
	var out bytes.Buffer
	return b.timed(ctx, func(ctx context.Context) error {
		cmd := exec.CommandContext(ctx, "valkey-cli", args...)
		cmd.Env = os.Environ()
		if b.c.Password != "" {
			cmd.Env = append(cmd.Env, "REDISCLI_AUTH="+b.c.Password)
		}
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("valkey-cli --cluster create: %w; its output:\n%s", err, out.String())
		}
		// valkey-cli exits 0 also after some failures; it reports them as [ERR].
		if strings.Contains(out.String(), "[ERR]") {
			return fmt.Errorf("valkey-cli --cluster create reported an error; its output:\n%s", out.String())
		}
		return nil
	})
}

// timed runs op while the watcher asks every node every -poll, and returns when
// op returned, and when the watcher first saw every node report cluster_state:ok
// and every node settled. It waits for the watcher to see the nodes settled,
// within -op-timeout.
func (b *bench) timed(ctx context.Context, op func(context.Context) error) (initRun, error) {
	ctx, cancel := context.WithTimeout(ctx, b.o.opTimeout)
	defer cancel()
	w, err := b.newWatcher()
	if err != nil {
		return initRun{}, err
	}
	defer w.close()
	type marks struct {
		stateOK, settled time.Duration
		err              error
	}
	seen := make(chan marks, 1)
	start := time.Now()
	go func() {
		var m marks
		m.stateOK, m.settled, m.err = w.watch(ctx, start, b.o.poll)
		seen <- m
	}()
	err = op(ctx)
	r := initRun{exit: time.Since(start)}
	if err != nil {
		cancel()
		<-seen
		return r, err
	}
	m := <-seen
	if m.err != nil {
		return r, fmt.Errorf("the tool returned after %s, but %w", r.exit.Round(time.Millisecond), m.err)
	}
	r.stateOK, r.settled = m.stateOK, m.settled
	return r, nil
}

// watcher asks each node directly, over a connection of its own opened before
// the timed part.
type watcher struct {
	addrs   []string
	clients []valkey.Client
}

func (b *bench) newWatcher() (*watcher, error) {
	w := &watcher{addrs: b.c.Addresses()}
	for _, a := range w.addrs {
		cl, err := b.c.NodeClient(a)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("watcher: connecting to %s: %w", a, err)
		}
		w.clients = append(w.clients, cl)
	}
	return w, nil
}

func (w *watcher) close() {
	for _, cl := range w.clients {
		cl.Close()
	}
}

// watch asks every node every interval until every node is settled, and returns
// when every node first reported cluster_state:ok and when every node was first
// settled, measured from start.
func (w *watcher) watch(ctx context.Context, start time.Time, interval time.Duration) (stateOK, settled time.Duration, err error) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	last := ""
	for {
		states := make([]nodeState, len(w.clients))
		var wg sync.WaitGroup
		for i, cl := range w.clients {
			wg.Go(func() { states[i] = askNode(ctx, cl) })
		}
		wg.Wait()
		at := time.Since(start)
		allOK, allSettled := true, true
		for i, s := range states {
			allOK = allOK && s.stateOK
			if !s.settled {
				allSettled = false
				last = w.addrs[i] + ": " + s.why
			}
		}
		if allOK && stateOK == 0 {
			stateOK = at
		}
		if allSettled {
			return stateOK, at, nil
		}
		select {
		case <-ctx.Done():
			return stateOK, 0, fmt.Errorf("the nodes did not settle within %s: %s", at.Round(time.Millisecond), last)
		case <-tick.C:
		}
	}
}

// nodeState is what one node reports.
type nodeState struct {
	// stateOK: CLUSTER INFO says cluster_state:ok.
	stateOK bool
	// settled: the end point Init waits for, as this node sees it.
	settled bool
	why     string
}

// askNode reads a node's CLUSTER INFO and CLUSTER NODES. Settled is what
// cluster.Init's own wait requires of each node: cluster_state:ok with all 16384
// slots assigned, every other node known (none in a handshake), and the layout of
// three masters with slots, each with one replica.
func askNode(ctx context.Context, cl valkey.Client) nodeState {
	infoText, err := cl.Do(ctx, cl.B().ClusterInfo().Build()).ToString()
	if err != nil {
		return nodeState{why: "CLUSTER INFO: " + err.Error()}
	}
	info := cluster.ParseInfo(strings.TrimPrefix(infoText, "txt:"))
	s := nodeState{stateOK: info["cluster_state"] == cluster.StateOK}
	if !s.stateOK {
		s.why = "cluster_state:" + info["cluster_state"]
		return s
	}
	if n := info["cluster_slots_assigned"]; n != strconv.Itoa(cluster.SlotCount) {
		s.why = "cluster_slots_assigned:" + n
		return s
	}
	nodesText, err := cl.Do(ctx, cl.B().ClusterNodes().Build()).ToString()
	if err != nil {
		s.why = "CLUSTER NODES: " + err.Error()
		return s
	}
	view, err := cluster.ParseNodes(strings.TrimPrefix(nodesText, "txt:"))
	if err != nil {
		s.why = "CLUSTER NODES: " + err.Error()
		return s
	}
	s.settled, s.why = layoutSettled(view)
	return s
}

// layoutSettled reports whether a node's view holds all six nodes, none in a
// handshake, as three masters with slots and one replica each.
func layoutSettled(view []cluster.NodeEntry) (bool, string) {
	if len(view) != pods {
		return false, fmt.Sprintf("knows %d nodes", len(view))
	}
	replicas := map[string]int{}
	for _, e := range view {
		if e.HasFlag("handshake") {
			return false, "in a handshake with " + e.Addr()
		}
		if !e.IsReplica() && len(e.Slots) > 0 {
			replicas[e.ID] = 0
		}
	}
	if len(replicas) != masters {
		return false, fmt.Sprintf("sees %d masters with slots", len(replicas))
	}
	for _, e := range view {
		if !e.IsReplica() {
			continue
		}
		if _, ok := replicas[e.MasterID]; !ok {
			return false, fmt.Sprintf("sees %s as a replica of %s, not a master with slots", e.Addr(), e.MasterID)
		}
		replicas[e.MasterID]++
	}
	for id, n := range replicas {
		if n != replicasPerMaster {
			return false, fmt.Sprintf("sees %d replicas of %s", n, id)
		}
	}
	return true, ""
}

// healRun is one heal round.
type healRun struct {
	restart, heal time.Duration
}

// healRounds forms the cluster with Init, writes keys, restarts every pod on a
// new address and times cluster.Heal, then reads every key back.
func (b *bench) healRounds(ctx context.Context) ([]healRun, error) {
	if b.o.healRounds == 0 {
		return nil, nil
	}
	fmt.Printf("\nheal: %d rounds; each forms the cluster with cluster.Init, writes %d keys, restarts every pod on a new address with its data, times cluster.Heal (called %s after the restart) and reads every key back\n",
		b.o.healRounds, b.o.keys, b.o.healAfter)
	var out []healRun
	for round := range b.o.healRounds {
		h, err := b.healRound(ctx, round)
		if err != nil {
			return nil, fmt.Errorf("heal round %d: %w", round+1, err)
		}
		out = append(out, h)
		fmt.Printf("  round %d  heal %5.0f ms = %.2f x cluster-node-timeout   (restart of the six pods, not timed in heal: %.0f ms; %d keys read back)\n",
			round+1, ms(h.heal), ms(h.heal)/ms(b.nodeTimeout), ms(h.restart), b.o.keys)
	}
	return out, nil
}

func (b *bench) healRound(ctx context.Context, round int) (healRun, error) {
	if err := b.reset(ctx); err != nil {
		return healRun{}, err
	}
	ictx, cancel := context.WithTimeout(ctx, b.o.opTimeout)
	res, err := cluster.Init(ictx, b.nodes(), b.options())
	cancel()
	if err != nil {
		return healRun{}, fmt.Errorf("cluster.Init: %w", err)
	}
	before := mastersOf(res.Status)
	prefix := fmt.Sprintf("heal-round-%d", round+1)
	if err := b.writeKeys(ctx, prefix); err != nil {
		return healRun{}, err
	}
	old := b.c.Addresses()

	var h healRun
	start := time.Now()
	if err := b.c.Restart(); err != nil {
		return h, fmt.Errorf("restart: %w", err)
	}
	h.restart = time.Since(start)
	for i, a := range b.c.Addresses() {
		if a == old[i] {
			return h, fmt.Errorf("restart: pod %d kept its address %s", i, a)
		}
	}

	select {
	case <-ctx.Done():
		return h, ctx.Err()
	case <-time.After(b.o.healAfter):
	}
	hctx, cancel := context.WithTimeout(ctx, b.o.opTimeout)
	defer cancel()
	start = time.Now()
	res, err = cluster.Heal(hctx, b.nodes(), b.options())
	h.heal = time.Since(start)
	if err != nil {
		return h, fmt.Errorf("cluster.Heal (after %s): %w", h.heal.Round(time.Millisecond), err)
	}
	st := res.Status
	if !res.Changed || !st.OK() || st.Masters != masters || st.Replicas != pods-masters {
		return h, fmt.Errorf("cluster.Heal returned changed=%t state=%s masters=%d replicas=%d", res.Changed, st.State, st.Masters, st.Replicas)
	}
	if err := b.checkSettled(hctx); err != nil {
		return h, fmt.Errorf("after cluster.Heal returned: %w", err)
	}
	if after := mastersOf(st); !slices.Equal(after, before) {
		fmt.Printf("  note: the masters changed across the restart and heal (a failover): before %s, after %s\n", strings.Join(before, ","), strings.Join(after, ","))
	}
	if err := b.readKeys(hctx, prefix); err != nil {
		return h, err
	}
	return h, nil
}

// checkSettled asks every node once, directly, whether it is settled.
func (b *bench) checkSettled(ctx context.Context) error {
	w, err := b.newWatcher()
	if err != nil {
		return err
	}
	defer w.close()
	for i, cl := range w.clients {
		if s := askNode(ctx, cl); !s.settled {
			return fmt.Errorf("node %s is not settled: %s", w.addrs[i], s.why)
		}
	}
	return nil
}

// mastersOf lists the IDs of the masters with their slot ranges, sorted.
func mastersOf(st cluster.Report) []string {
	var out []string
	for _, n := range st.Nodes {
		if n.Role == cluster.RoleMaster {
			out = append(out, n.ID+"="+n.SlotRanges)
		}
	}
	slices.Sort(out)
	return out
}

func key(prefix string, i int) string   { return fmt.Sprintf("%s:key:%d", prefix, i) }
func value(prefix string, i int) string { return fmt.Sprintf("%s:value:%d", prefix, i) }

// writeKeys writes the keys through a valkey-go cluster client, then waits until
// the replica of every master acknowledges them (WAIT), so that a replica holds
// every key whatever happens in the restart.
func (b *bench) writeKeys(ctx context.Context, prefix string) error {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	cl, err := valkey.NewClient(b.c.ClientOption(b.c.Addresses()...))
	if err != nil {
		return fmt.Errorf("cluster client: %w", err)
	}
	defer cl.Close()
	cmds := make(valkey.Commands, 0, b.o.keys)
	for i := range b.o.keys {
		cmds = append(cmds, cl.B().Set().Key(key(prefix, i)).Value(value(prefix, i)).Build())
	}
	for i, r := range cl.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return fmt.Errorf("SET %s: %w", key(prefix, i), err)
		}
	}
	for _, addr := range b.c.Addresses() {
		if err := b.waitReplica(ctx, addr); err != nil {
			return err
		}
	}
	return nil
}

// waitReplica waits, on a master, until its replica acknowledges every write. A
// new replica's first sync starts only after the master's
// repl-diskless-sync-delay, so WAIT is asked again until it counts one replica.
func (b *bench) waitReplica(ctx context.Context, addr string) error {
	node, err := b.c.NodeClient(addr)
	if err != nil {
		return err
	}
	defer node.Close()
	role, err := node.Do(ctx, node.B().Role().Build()).ToArray()
	if err != nil || len(role) == 0 {
		return fmt.Errorf("ROLE on %s: %w", addr, err)
	}
	if kind, _ := role[0].ToString(); kind != "master" {
		return nil
	}
	for {
		n, err := node.Do(ctx, node.B().Wait().Numreplicas(replicasPerMaster).Timeout(1000).Build()).AsInt64()
		if err == nil && n >= replicasPerMaster {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the replica of %s did not acknowledge the writes within %s (WAIT: %d, %v)", addr, settleTimeout, n, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// readKeys reads every key back through a new cluster client at the pods'
// current addresses. A key missing or with another value is lost, and fails the
// run; a read that fails is retried a few times first.
func (b *bench) readKeys(ctx context.Context, prefix string) error {
	cl, err := valkey.NewClient(b.c.ClientOption(b.c.Addresses()...))
	if err != nil {
		return fmt.Errorf("cluster client: %w", err)
	}
	defer cl.Close()
	pending := make([]int, b.o.keys)
	for i := range pending {
		pending[i] = i
	}
	var lost []string
	var lastErr error
	for attempt := 0; attempt < 5 && len(pending) > 0; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
		cmds := make(valkey.Commands, len(pending))
		for j, i := range pending {
			cmds[j] = cl.B().Get().Key(key(prefix, i)).Build()
		}
		var retry []int
		for j, r := range cl.DoMulti(ctx, cmds...) {
			i := pending[j]
			v, err := r.ToString()
			switch {
			case valkey.IsValkeyNil(err):
				lost = append(lost, key(prefix, i)+" (missing)")
			case err != nil:
				lastErr = err
				retry = append(retry, i)
			case v != value(prefix, i):
				lost = append(lost, fmt.Sprintf("%s (holds %q)", key(prefix, i), v))
			}
		}
		pending = retry
	}
	if len(lost) > 0 {
		return fmt.Errorf("KEYS LOST: %d of %d keys written before the restart are not there after heal, e.g. %s", len(lost), b.o.keys, strings.Join(lost[:min(5, len(lost))], ", "))
	}
	if len(pending) > 0 {
		return fmt.Errorf("%d of %d keys could not be read back after heal (5 attempts): %w", len(pending), b.o.keys, lastErr)
	}
	return nil
}

// reset empties every node (FLUSHALL, CLUSTER RESET HARD: no keys, no slots, a
// new ID, epoch 0, no peers) and waits until each knows only itself.
func (b *bench) reset(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, resetTimeout)
	defer cancel()
	w, err := b.newWatcher()
	if err != nil {
		return err
	}
	defer w.close()
	for i, cl := range w.clients {
		if err := resetNode(ctx, cl); err != nil {
			return fmt.Errorf("reset %s: %w", w.addrs[i], err)
		}
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		why := ""
		for i, cl := range w.clients {
			if err := emptyNode(ctx, cl); err != nil {
				why = w.addrs[i] + ": " + err.Error()
				break
			}
		}
		if why == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("reset: the nodes are not empty after %s: %s", resetTimeout, why)
		case <-tick.C:
		}
	}
}

// resetNode empties one node. A replica refuses FLUSHALL (it is read-only), and a
// master with keys refuses CLUSTER RESET: a replica is reset first, which makes
// it an empty master, a master is flushed first.
func resetNode(ctx context.Context, cl valkey.Client) error {
	role, err := cl.Do(ctx, cl.B().Role().Build()).ToArray()
	if err != nil || len(role) == 0 {
		return fmt.Errorf("ROLE: %w", err)
	}
	kind, _ := role[0].ToString()
	flush := cl.B().Flushall().Build()
	hard := cl.B().ClusterReset().Hard().Build()
	cmds := []valkey.Completed{flush, hard}
	if kind != "master" {
		cmds = []valkey.Completed{hard, flush}
	}
	for _, cmd := range cmds {
		if err := cl.Do(ctx, cmd).Error(); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(cmd.Commands(), " "), err)
		}
	}
	return nil
}

// emptyNode returns nil when the node knows only itself, has no slots and no keys.
func emptyNode(ctx context.Context, cl valkey.Client) error {
	infoText, err := cl.Do(ctx, cl.B().ClusterInfo().Build()).ToString()
	if err != nil {
		return err
	}
	info := cluster.ParseInfo(strings.TrimPrefix(infoText, "txt:"))
	if info["cluster_known_nodes"] != "1" || info["cluster_slots_assigned"] != "0" {
		return fmt.Errorf("cluster_known_nodes:%s cluster_slots_assigned:%s", info["cluster_known_nodes"], info["cluster_slots_assigned"])
	}
	n, err := cl.Do(ctx, cl.B().Dbsize().Build()).AsInt64()
	if err != nil {
		return err
	}
	if n != 0 {
		return fmt.Errorf("%d keys", n)
	}
	return nil
}

// nodes are the pods at their current addresses, in zones a, b, c, a, b, c, each
// on a Kubernetes node of its own.
func (b *bench) nodes() []cluster.Node {
	out := make([]cluster.Node, len(b.c.Pods))
	for i, a := range b.c.Addresses() {
		out[i] = cluster.Node{Address: a, Zone: zones[i%len(zones)], Host: fmt.Sprintf("k8s-node-%d", i)}
	}
	return out
}

func (b *bench) options() cluster.Options {
	o := cluster.Options{
		Password:          b.c.Password,
		TLS:               b.c.ClientTLS(),
		Timeout:           b.o.opTimeout,
		ReplicasPerMaster: replicasPerMaster,
	}
	if b.o.verbose {
		o.Progress = func(s string) { fmt.Fprintln(os.Stderr, "  |", s) }
	}
	return o
}

// renderedNodeTimeout reads cluster-node-timeout from the pod's valkey.conf, as
// the harness rendered it.
func renderedNodeTimeout(p *valkeyharness.Pod) (time.Duration, error) {
	path := filepath.Join(p.Dir, "valkey.conf")
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(s.Text()), "cluster-node-timeout "); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n <= 0 {
				return 0, fmt.Errorf("%s: cluster-node-timeout %q is not a positive number of ms", path, v)
			}
			return time.Duration(n) * time.Millisecond, nil
		}
	}
	if err := s.Err(); err != nil {
		return 0, err
	}
	// valkey-server's default when the line is absent.
	return 15 * time.Second, nil
}

// median is the middle value (the mean of the two middle ones for an even count),
// NaN for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	xs = slices.Sorted(slices.Values(xs))
	if n := len(xs); n%2 == 0 {
		return (xs[n/2-1] + xs[n/2]) / 2
	}
	return xs[len(xs)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func metOrMissed(met bool) string {
	if met {
		return "met"
	}
	return "MISSED"
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func tlsMode(b bool) string {
	if b {
		return "on (client certificates required)"
	}
	return "off"
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if name, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
		}
	}
	return "unknown CPU"
}

func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func valkeyVersion() string {
	out, err := exec.Command("valkey-server", "--version").Output()
	if err != nil {
		return "valkey-server (version unknown)"
	}
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			return "valkey-server " + v
		}
	}
	return strings.TrimSpace(string(out))
}
