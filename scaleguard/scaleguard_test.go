package scaleguard

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/valkey-webhook/valkey-webhook/cluster"
	"github.com/valkey-webhook/valkey-webhook/config"
)

// scaleAddrs are the drain command's addresses of n pods of cache in team-a.
func scaleAddrs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("cache-%d.cache-headless.team-a.svc.cluster.local:6379", i)
	}
	return out
}

func master(id string, slots int, ranges string) cluster.NodeReport {
	return cluster.NodeReport{ID: id, Role: cluster.RoleMaster, Slots: slots, SlotRanges: ranges, State: cluster.StateOK}
}

func replica(id, of string) cluster.NodeReport {
	return cluster.NodeReport{ID: id, Role: cluster.RoleReplica, MasterID: of, State: cluster.StateOK}
}

// eightPods is the cluster of issue 8: masters at ordinals 0, 1, 2 and 6;
// ordinal 6 has two replicas (3 and 7), ordinal 2 none.
func eightPods() []cluster.NodeReport {
	return []cluster.NodeReport{
		master("id0", 4096, "0-4095"),
		master("id1", 4096, "4096-8191"),
		master("id2", 4096, "8192-12287"),
		replica("id3", "id6"),
		replica("id4", "id0"),
		replica("id5", "id1"),
		master("id6", 4096, "12288-16383"),
		replica("id7", "id6"),
	}
}

func withNodes(nodes []cluster.NodeReport, edit func([]cluster.NodeReport)) []cluster.NodeReport {
	edit(nodes)
	return nodes
}

func TestDecide(t *testing.T) {
	policy := func(edit func(*config.Policy)) *config.Policy {
		p := config.Default()
		if edit != nil {
			edit(&p)
		}
		return &p
	}
	down := func(from, to int32, nodes []cluster.NodeReport) ScaleDown {
		return ScaleDown{StatefulSet: "cache", From: from, To: to, Addresses: scaleAddrs(int(from)), AuthSecret: "cache-auth", Report: cluster.Report{Nodes: nodes}}
	}
	override := " To scale down anyway, annotate the StatefulSet valkey-webhook.io/scaleGuard=off (or =warn, which admits it with this text as a warning)."
	drain := func(n int, ordinals string) string {
		return fmt.Sprintf(" Move the slots with their keys to the pods that stay, then scale: valkey-webhook cluster drain --nodes %s --ordinals %s --password-file <key password of Secret cache-auth>.", strings.Join(scaleAddrs(n), ","), ordinals)
	}
	const replicaFix = " A replica serves no slots, so removing one needs no drain, but first give its master another replica among the pods that stay (CLUSTER REPLICATE <master ID> on a replica that stays), or remove fewer pods."
	const retry = " The scale guard refuses what it cannot check: retry once every pod runs and answers."
	master6 := "scaling cache down from 7 to 6 pods would remove cache-6 (node id6, master), which serves 4096 slots (12288-16383)."

	tests := []struct {
		name string
		in   ScaleDown
		p    *config.Policy
		want Verdict
	}{
		{
			name: "a scale-up is allowed, whatever the report",
			in:   ScaleDown{StatefulSet: "cache", From: 6, To: 8},
			p:    policy(nil),
			want: Verdict{Allowed: true},
		},
		{
			name: "unchanged replicas are allowed",
			in:   ScaleDown{StatefulSet: "cache", From: 8, To: 8, Unchecked: "not looked at"},
			p:    policy(nil),
			want: Verdict{Allowed: true},
		},
		{
			name: "8 to 7: ordinal 7 is a replica of a master that keeps another one",
			in:   down(8, 7, eightPods()),
			p:    policy(nil),
			want: Verdict{Allowed: true},
		},
		{
			name: "7 to 6: ordinal 6 serves slots",
			in:   down(7, 6, eightPods()[:7]),
			p:    policy(nil),
			want: Verdict{Denial: master6 + drain(7, "6") + override},
		},
		{
			name: "7 to 6 in warn mode: admitted with the same text as a warning",
			in:   down(7, 6, eightPods()[:7]),
			p:    policy(func(p *config.Policy) { p.ScaleGuard = config.ScaleGuardWarn }),
			want: Verdict{Allowed: true, Warnings: []string{"spec.replicas: " + master6 + drain(7, "6") + " Admitted anyway: scaleGuard is warn."}},
		},
		{
			name: "7 to 6 with the guard off",
			in:   down(7, 6, eightPods()[:7]),
			p:    policy(func(p *config.Policy) { p.ScaleGuard = config.ScaleGuardOff }),
			want: Verdict{Allowed: true},
		},
		{
			name: "8 to 6: the master and its replica both go; only the master's slots count",
			in:   down(8, 6, eightPods()),
			p:    policy(nil),
			want: Verdict{Denial: "scaling cache down from 8 to 6 pods would remove cache-6 (node id6, master), which serves 4096 slots (12288-16383)." + drain(8, "6") + override},
		},
		{
			name: "8 to 3: two masters with slots, and the last replicas of two masters that stay",
			in:   down(8, 3, eightPods()),
			p:    policy(nil),
			want: Verdict{Denial: "scaling cache down from 8 to 3 pods would remove " +
				"cache-4 (node id4, replica of cache-0), which would leave master cache-0 (node id0) with 0 replicas among the pods that stay, fewer than cluster.replicasPerMaster (1); " +
				"cache-5 (node id5, replica of cache-1), which would leave master cache-1 (node id1) with 0 replicas among the pods that stay, fewer than cluster.replicasPerMaster (1); " +
				"cache-6 (node id6, master), which serves 4096 slots (12288-16383)." +
				drain(8, "6") + replicaFix + override},
		},
		{
			name: "the last replica of a master that stays",
			in: down(8, 7, withNodes(eightPods(), func(n []cluster.NodeReport) {
				n[3] = replica("id3", "id2") // cache-6 keeps only cache-7
			})),
			p: policy(nil),
			want: Verdict{Denial: "scaling cache down from 8 to 7 pods would remove cache-7 (node id7, replica of cache-6), which would leave master cache-6 (node id6) with 0 replicas among the pods that stay, fewer than cluster.replicasPerMaster (1)." +
				replicaFix + override},
		},
		{
			name: "the last replica, with replicasPerMaster 0",
			in: down(8, 7, withNodes(eightPods(), func(n []cluster.NodeReport) {
				n[3] = replica("id3", "id2")
			})),
			p:    policy(func(p *config.Policy) { p.Cluster.ReplicasPerMaster = 0 }),
			want: Verdict{Allowed: true},
		},
		{
			name: "two replicas wanted, one stays",
			in:   down(8, 7, eightPods()),
			p:    policy(func(p *config.Policy) { p.Cluster.ReplicasPerMaster = 2 }),
			want: Verdict{Denial: "scaling cache down from 8 to 7 pods would remove cache-7 (node id7, replica of cache-6), which would leave master cache-6 (node id6) with 1 replicas among the pods that stay, fewer than cluster.replicasPerMaster (2)." +
				replicaFix + override},
		},
		{
			name: "a master that serves no slots (drained) goes, and so may its last replica",
			in: down(8, 6, withNodes(eightPods(), func(n []cluster.NodeReport) {
				n[6] = master("id6", 0, "")
				n[3] = replica("id3", "id2")
			})),
			p:    policy(nil),
			want: Verdict{Allowed: true},
		},
		{
			name: "the last replica of a master that serves nothing",
			in: down(8, 7, withNodes(eightPods(), func(n []cluster.NodeReport) {
				n[6] = master("id6", 0, "")
				n[3] = replica("id3", "id2")
			})),
			p:    policy(nil),
			want: Verdict{Allowed: true},
		},
		{
			name: "a replica whose master is no pod of the StatefulSet counts as staying, named by address",
			in: down(8, 7, withNodes(eightPods(), func(n []cluster.NodeReport) {
				n[7] = replica("id7", "elsewhere")
				n[7].MasterAddress = "10.0.0.9:6379"
			})),
			p: policy(nil),
			want: Verdict{Denial: "scaling cache down from 8 to 7 pods would remove cache-7 (node id7, replica of 10.0.0.9:6379), which would leave master 10.0.0.9:6379 (node elsewhere) with 0 replicas among the pods that stay, fewer than cluster.replicasPerMaster (1)." +
				replicaFix + override},
		},
		{
			name: "a pod that does not run: not checked, refused",
			in:   ScaleDown{StatefulSet: "cache", From: 7, To: 6, Unchecked: "not every pod runs: cache-2 is Pending"},
			p:    policy(nil),
			want: Verdict{Denial: "scaling cache down from 7 to 6 pods cannot be checked: not every pod runs: cache-2 is Pending." + retry + override},
		},
		{
			name: "not checked, in warn mode",
			in:   ScaleDown{StatefulSet: "cache", From: 7, To: 6, Unchecked: "not every pod runs: cache-2 is Pending"},
			p:    policy(func(p *config.Policy) { p.ScaleGuard = config.ScaleGuardWarn }),
			want: Verdict{Allowed: true, Warnings: []string{"spec.replicas: scaling cache down from 7 to 6 pods cannot be checked: not every pod runs: cache-2 is Pending." + retry + " Admitted anyway: scaleGuard is warn."}},
		},
		{
			name: "nodes that do not answer are named, also those that stay",
			in: down(7, 6, withNodes(eightPods()[:7], func(n []cluster.NodeReport) {
				n[1] = cluster.NodeReport{Error: "node 127.0.0.2:6379: not reachable (connection refused)"}
				n[6] = cluster.NodeReport{Error: "node 127.0.0.7:6379: not reachable (connection refused)"}
			})),
			p: policy(nil),
			want: Verdict{Denial: "scaling cache down from 7 to 6 pods cannot be checked: cache-1 did not answer (node 127.0.0.2:6379: not reachable (connection refused)); cache-6 did not answer (node 127.0.0.7:6379: not reachable (connection refused))." +
				retry + override},
		},
		{
			name: "out of time",
			in: func() ScaleDown {
				sd := down(7, 6, withNodes(eightPods()[:7], func(n []cluster.NodeReport) {
					n[3] = cluster.NodeReport{Error: "node 127.0.0.4:6379: not reachable (context deadline exceeded)"}
				}))
				sd.TimedOut = true
				return sd
			}(),
			p: policy(nil),
			want: Verdict{Denial: "scaling cache down from 7 to 6 pods cannot be checked: the check ran out of its 3s budget; cache-3 did not answer (node 127.0.0.4:6379: not reachable (context deadline exceeded))." +
				retry + override},
		},
		{
			name: "out of time just after every node answered: the answers count",
			in: func() ScaleDown {
				sd := down(8, 7, eightPods())
				sd.TimedOut = true
				return sd
			}(),
			p:    policy(nil),
			want: Verdict{Allowed: true},
		},
		{
			name: "a report that does not match the pods",
			in:   down(7, 6, eightPods()),
			p:    policy(nil),
			want: Verdict{Denial: "scaling cache down from 7 to 6 pods cannot be checked: 8 nodes answered for 7 pods." + retry + override},
		},
		{
			name: "TLS with client certificates, and auth: the drain command's flags",
			in: func() ScaleDown {
				sd := down(7, 6, eightPods()[:7])
				sd.TLSSecret = "cache-tls"
				return sd
			}(),
			p: policy(func(p *config.Policy) { p.TLS.SecretName = "cache-tls"; p.TLS.AuthClients = true }),
			want: Verdict{Denial: master6 + " Move the slots with their keys to the pods that stay, then scale: valkey-webhook cluster drain --nodes " + strings.Join(scaleAddrs(7), ",") +
				" --ordinals 6 --tls-ca <ca.crt of Secret cache-tls> --tls-cert <tls.crt of Secret cache-tls> --tls-key <tls.key of Secret cache-tls> --password-file <key password of Secret cache-auth>." + override},
		},
		{
			name: "no auth: no password file",
			in: func() ScaleDown {
				sd := down(7, 6, eightPods()[:7])
				sd.AuthSecret = ""
				return sd
			}(),
			p: policy(func(p *config.Policy) { p.Auth.Enabled = false }),
			want: Verdict{Denial: master6 + " Move the slots with their keys to the pods that stay, then scale: valkey-webhook cluster drain --nodes " + strings.Join(scaleAddrs(7), ",") +
				" --ordinals 6." + override},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Decide(tc.in, tc.p)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Decide() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
