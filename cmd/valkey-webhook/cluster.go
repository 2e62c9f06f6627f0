package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/valkey-webhook/valkey-webhook/cluster"
)

// exitClusterFailed: cluster init or heal refused or failed, or status found the
// cluster not ok.
const exitClusterFailed = 1

// clusterFlags are the flags of every cluster subcommand.
type clusterFlags struct {
	nodes        []string
	zones        []string
	hosts        []string
	tlsCA        string
	tlsCert      string
	tlsKey       string
	passwordFile string
	timeout      time.Duration
}

func newClusterCommand(o *options) *cobra.Command {
	f := &clusterFlags{}
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Form, heal, inspect, grow and reshard a Valkey cluster (init, heal, status, join, forget, drain, rebalance)",
		Long: `cluster talks to the Valkey nodes of one cluster, over TLS and with the
password when they use them, one connection per node.

  init    forms a cluster of empty nodes: meets them, spreads the 16384 slots over
          the masters, attaches the replicas away from their master's zone (or
          Kubernetes node), and waits for cluster_state:ok. On a formed cluster it
          changes nothing.
  heal    after a full restart on new pod IPs, meets the nodes again at their
          current addresses, and waits for cluster_state:ok. Data and roles are kept.
  status  each node's ID, address, role, master, slots and flags, and the cluster's
          state.
  join    brings new empty nodes (a scale-up) into a formed cluster as replicas of
          the masters with the fewest replicas; never a master, never a slot moved.
  forget  removes from the cluster the failed nodes of pods scaled away: nodes
          every given node flags fail, serving no slot, replicated by none.
  drain   moves every slot, with its keys, off the given masters to the others,
          before those pods are scaled away; the drained masters become replicas.
  rebalance
          spreads the slots evenly over every master, after new masters joined.

drain and rebalance move slots with the resharding protocol (SETSLOT IMPORTING
and MIGRATING, MIGRATE in batches, SETSLOT NODE); clients keep working through
ASK redirects. Interrupted, they are run again: the slot in the middle of its move
is finished first, then the rest is planned from what the nodes report.

Every node of the cluster is given with --nodes. When the whole operation cannot
succeed (a node does not answer, a wrong password, a node of another cluster,
slots assigned by hand, a node count that does not divide into masters and
replicas), nothing is changed and each problem is printed with its node and what
to do.

Progress goes to standard error, one line per step; the summary to standard
output. Exit codes: 0 done (status: the cluster is ok), 1 refused or failed
(status: the cluster is not ok), 2 bad flags or unreadable files.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringSliceVar(&f.nodes, "nodes", nil, "every node of the cluster, host:port, comma separated (a host name is resolved; TLS verifies it)")
	pf.StringVar(&f.tlsCA, "tls-ca", "", "CA certificate file (PEM) of the nodes' certificates; turns TLS on")
	pf.StringVar(&f.tlsCert, "tls-cert", "", "client certificate file (PEM), for nodes with tls-auth-clients; with --tls-key")
	pf.StringVar(&f.tlsKey, "tls-key", "", "client key file (PEM)")
	pf.StringVar(&f.passwordFile, "password-file", "", "file holding the password (the auth Secret's password key); a final newline is ignored")
	pf.DurationVar(&f.timeout, "timeout", cluster.DefaultTimeout, "bound of the whole operation, waits included")
	cmd.AddCommand(newClusterInitCommand(o, f), newClusterHealCommand(f), newClusterStatusCommand(f),
		newClusterJoinCommand(f), newClusterForgetCommand(f), newClusterDrainCommand(f), newClusterRebalanceCommand(f))
	return cmd
}

func newClusterInitCommand(o *options, f *clusterFlags) *cobra.Command {
	var replicas int
	cmd := &cobra.Command{
		Use:   "init --nodes HOST:PORT,...",
		Short: "Form a cluster of empty nodes; on a formed cluster, change nothing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("replicas-per-master") {
				p, err := o.policy()
				if err != nil {
					return err
				}
				replicas = p.Cluster.ReplicasPerMaster
			}
			nodes, opts, err := f.resolve(cmd.ErrOrStderr(), "init")
			if err != nil {
				return err
			}
			opts.ReplicasPerMaster = replicas
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := cluster.Init(ctx, nodes, opts)
			if err != nil {
				return &exitError{code: exitClusterFailed, err: err}
			}
			what := "cluster formed"
			if !res.Changed {
				what = "cluster already formed, nothing changed"
			}
			return printSummary(cmd.OutOrStdout(), what, res)
		},
	}
	cmd.Flags().IntVar(&replicas, "replicas-per-master", 1, "replicas of each master; default: the policy's cluster.replicasPerMaster (1)")
	cmd.Flags().StringSliceVar(&f.zones, "zones", nil, "zone of each node, in the order of --nodes; replicas are kept out of their master's zone")
	cmd.Flags().StringSliceVar(&f.hosts, "hosts", nil, "Kubernetes node of each node, in the order of --nodes; failing zones, replicas are kept off their master's node")
	return cmd
}

func newClusterHealCommand(f *clusterFlags) *cobra.Command {
	return newClusterStepCommand(f, "heal", "Meet the nodes again at their current addresses after a full restart",
		cluster.Heal, changedOr("cluster healed", "nothing to heal, nothing changed"))
}

func newClusterJoinCommand(f *clusterFlags) *cobra.Command {
	return newClusterStepCommand(f, "join", "Make new empty nodes replicas of a formed cluster, after a scale-up",
		cluster.Join, changedOr("new nodes joined", "no new node, nothing changed"))
}

func newClusterForgetCommand(f *clusterFlags) *cobra.Command {
	return newClusterStepCommand(f, "forget", "Remove the failed nodes of pods scaled away from the cluster",
		cluster.Forget, changedOr("forgot the departed nodes", "no departed node, nothing changed"))
}

// changedOr is a summary: done when the operation changed the cluster, nothing
// otherwise.
func changedOr(done, nothing string) func(cluster.Result) string {
	return func(res cluster.Result) string {
		if res.Changed {
			return done
		}
		return nothing
	}
}

// newClusterStepCommand is a cluster subcommand that runs one operation over
// --nodes and prints its summary.
func newClusterStepCommand(f *clusterFlags, name, short string, run func(context.Context, []cluster.Node, cluster.Options) (cluster.Result, error), summary func(cluster.Result) string) *cobra.Command {
	return &cobra.Command{
		Use:   name + " --nodes HOST:PORT,...",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nodes, opts, err := f.resolve(cmd.ErrOrStderr(), name)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := run(ctx, nodes, opts)
			if err != nil {
				return &exitError{code: exitClusterFailed, err: err}
			}
			return printSummary(cmd.OutOrStdout(), summary(res), res)
		},
	}
}

func newClusterDrainCommand(f *clusterFlags) *cobra.Command {
	var ordinals []int
	var ids []string
	cmd := &cobra.Command{
		Use:   "drain --nodes HOST:PORT,... (--ordinals N,... | --node-ids ID,...)",
		Short: "Move every slot and its keys off the given masters, before a scale-down",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			drain, err := drainedNodes(f.nodes, ordinals, ids)
			if err != nil {
				return badInput(err)
			}
			nodes, opts, err := f.resolve(cmd.ErrOrStderr(), "drain")
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := cluster.Drain(ctx, nodes, drain, opts)
			if err != nil {
				return &exitError{code: exitClusterFailed, err: err}
			}
			return printSummary(cmd.OutOrStdout(), reshardSummary("drained", res), res)
		},
	}
	cmd.Flags().IntSliceVar(&ordinals, "ordinals", nil, "the nodes to drain, by their position in --nodes from 0: the pod ordinals, when --nodes lists the pods in order")
	cmd.Flags().StringSliceVar(&ids, "node-ids", nil, "the nodes to drain, by node ID (CLUSTER MYID)")
	return cmd
}

// drainedNodes names the nodes to drain: the nodes at the given positions of
// --nodes, and the given node IDs.
func drainedNodes(nodes []string, ordinals []int, ids []string) ([]string, error) {
	if len(ordinals)+len(ids) == 0 {
		return nil, errors.New("give the nodes to drain with --ordinals or --node-ids")
	}
	out := append([]string(nil), ids...)
	for _, o := range ordinals {
		if o < 0 || o >= len(nodes) {
			return nil, fmt.Errorf("--ordinals %d: --nodes lists %d nodes, ordinals 0 to %d", o, len(nodes), len(nodes)-1)
		}
		out = append(out, nodes[o])
	}
	return out, nil
}

func newClusterRebalanceCommand(f *clusterFlags) *cobra.Command {
	return newClusterStepCommand(f, "rebalance", "Spread the slots evenly over every master, after new masters joined",
		cluster.Rebalance, func(res cluster.Result) string { return reshardSummary("rebalanced", res) })
}

// reshardSummary is the first line of a drain's or rebalance's summary.
func reshardSummary(done string, res cluster.Result) string {
	if !res.Changed {
		return "no slot to move, nothing changed"
	}
	slots := 0
	for _, mv := range res.Moves {
		slots += mv.Slots.Len()
	}
	return fmt.Sprintf("%s: %d slots moved in %d ranges", done, slots, len(res.Moves))
}

func newClusterStatusCommand(f *clusterFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status --nodes HOST:PORT,... [-o table|json]",
		Short: "Print each node's view of itself and the cluster's state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return badInput(fmt.Errorf("-o must be table or json, not %q", output))
			}
			nodes, opts, err := f.resolve(cmd.ErrOrStderr(), "")
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			st, err := cluster.Status(ctx, nodes, opts)
			if err != nil {
				return badInput(err)
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(st); err != nil {
					return err
				}
			} else {
				printStatus(out, st)
			}
			if !st.OK() {
				return &exitError{code: exitClusterFailed, err: errors.New(notOK(st))}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

// resolve turns the flags into nodes and options; progress lines of op go to
// stderr, each prefixed with the operation.
func (f *clusterFlags) resolve(stderr io.Writer, op string) ([]cluster.Node, cluster.Options, error) {
	var opts cluster.Options
	if len(f.nodes) == 0 {
		return nil, opts, badInput(errors.New("--nodes is required: every node of the cluster, host:port, comma separated"))
	}
	for _, list := range []struct {
		flag   string
		values []string
	}{{"--zones", f.zones}, {"--hosts", f.hosts}} {
		if len(list.values) > 0 && len(list.values) != len(f.nodes) {
			return nil, opts, badInput(fmt.Errorf("%s has %d values and --nodes %d: give one per node, in the same order", list.flag, len(list.values), len(f.nodes)))
		}
	}
	nodes := make([]cluster.Node, len(f.nodes))
	for i, addr := range f.nodes {
		nodes[i].Address = strings.TrimSpace(addr)
		if len(f.zones) > 0 {
			nodes[i].Zone = strings.TrimSpace(f.zones[i])
		}
		if len(f.hosts) > 0 {
			nodes[i].Host = strings.TrimSpace(f.hosts[i])
		}
	}
	if f.passwordFile != "" {
		data, err := os.ReadFile(f.passwordFile)
		if err != nil {
			return nil, opts, badInput(fmt.Errorf("--password-file: %w", err))
		}
		opts.Password = strings.TrimRight(string(data), "\r\n")
		if opts.Password == "" {
			return nil, opts, badInput(fmt.Errorf("--password-file %s is empty", f.passwordFile))
		}
	}
	tlsConfig, err := f.tlsConfig()
	if err != nil {
		return nil, opts, badInput(err)
	}
	opts.TLS = tlsConfig
	if f.timeout <= 0 {
		return nil, opts, badInput(fmt.Errorf("--timeout must be positive, not %s", f.timeout))
	}
	opts.Timeout = f.timeout
	if op != "" {
		opts.Progress = func(line string) { fmt.Fprintf(stderr, "cluster %s: %s\n", op, line) }
	}
	return nodes, opts, nil
}

// tlsConfig is nil without any --tls-* flag.
func (f *clusterFlags) tlsConfig() (*tls.Config, error) {
	if f.tlsCA == "" && f.tlsCert == "" && f.tlsKey == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.tlsCA != "" {
		pem, err := os.ReadFile(f.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", f.tlsCA)
		}
		c.RootCAs = pool
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, errors.New("--tls-cert and --tls-key: give both or neither")
	}
	if f.tlsCert != "" {
		pair, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert, --tls-key: %w", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

// printSummary prints what init or heal did, its warnings, and the status table.
func printSummary(out io.Writer, what string, res cluster.Result) error {
	fmt.Fprintln(out, what)
	for _, w := range res.Warnings {
		fmt.Fprintln(out, "warning:", w)
	}
	printStatus(out, res.Status)
	return nil
}

// printStatus prints one line per node, then the cluster's state.
func printStatus(out io.Writer, st cluster.Report) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tID\tROLE\tMASTER\tSLOTS\tSTATE\tFLAGS")
	for _, n := range st.Nodes {
		if n.Error != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t%s\n", n.Address, n.Error)
			continue
		}
		master := "-"
		if n.Role == cluster.RoleReplica {
			master = n.MasterAddress
			if master == "" {
				master = n.MasterID
			}
		}
		flags := strings.Join(n.Flags, ",")
		if n.StalePeers > 0 {
			flags += fmt.Sprintf(" (knows %d peers by old addresses)", n.StalePeers)
		}
		if n.FailingPeers > 0 {
			flags += fmt.Sprintf(" (sees %d peers failing)", n.FailingPeers)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", n.Address, shortID(n.ID), n.Role, master, n.Slots, n.State, flags)
	}
	_ = tw.Flush()
	fmt.Fprintf(out, "cluster_state:%s, %d of %d slots covered, %d masters, %d replicas\n", st.State, st.SlotsCovered, cluster.SlotCount, st.Masters, st.Replicas)
	if len(st.Failing) > 0 {
		fmt.Fprintf(out, "flagged failing: %s\n", strings.Join(st.Failing, ", "))
	}
}

// notOK says why status exits 1.
func notOK(st cluster.Report) string {
	var why []string
	for _, n := range st.Nodes {
		switch {
		case n.Error != "":
			why = append(why, n.Error)
		case n.State != cluster.StateOK || n.StalePeers > 0:
			w := fmt.Sprintf("node %s reports cluster_state:%s", n.Address, n.State)
			if n.StalePeers > 0 {
				w += fmt.Sprintf(" and knows %d peers by old addresses (run cluster heal)", n.StalePeers)
			}
			why = append(why, w)
		}
	}
	if st.SlotsCovered < cluster.SlotCount {
		why = append(why, fmt.Sprintf("%d of %d slots are served", st.SlotsCovered, cluster.SlotCount))
	}
	return "the cluster is not ok: " + strings.Join(why, "; ")
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
