// Package scaleguard is the scale guard's check and decision: whether lowering
// a labeled StatefulSet's replicas would remove pods that still serve slots (or
// leave a master short of replicas), asked of the live cluster (Check) and
// decided by a pure function of the answer (Decide). The admission webhook that
// calls them is webhook's; README, "Scaling down safely".
package scaleguard

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/cluster"
	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
	"github.com/valkey-webhook/valkey-webhook/internal/podcluster"
)

// Budget bounds the scale guard's whole live check of one request:
// reading the StatefulSet, its pods and Secrets, and asking every node. It is
// well inside the webhooks' timeoutSeconds (5 in the generated install), so that
// the API server always gets the guard's own answer: past its timeout the API
// server applies the failure policy instead, and the scale subresource's webhook
// fails open. A check that runs out of the budget refuses (enforce) or warns.
const Budget = 3 * time.Second

// ReplicasPath is where a denial or a warning of the scale guard points.
var ReplicasPath = field.NewPath("spec", "replicas")

// ScaleDown is what the scale guard learned about one scale-down of a labeled
// StatefulSet: the input of Decide.
type ScaleDown struct {
	// StatefulSet is the StatefulSet's name: its pods are <name>-<ordinal>.
	StatefulSet string
	// From and To are spec.replicas before and after; the pods of ordinals
	// To to From-1 would go.
	From, To int32
	// Addresses are every pod's address (ordinals below From), as the drain
	// command is to be given them.
	Addresses []string
	// AuthSecret and TLSSecret name the Secrets holding the password and the TLS
	// material, for the drain command's flags; empty when auth or TLS is off.
	AuthSecret, TLSSecret string
	// Unchecked, when set, is why the cluster could not be asked at all (a pod
	// that does not run, a Secret that cannot be read); Report is then ignored.
	Unchecked string
	// TimedOut says the check ran out of Budget.
	TimedOut bool
	// Report is the cluster as its nodes answered: one node per ordinal below
	// From, in ordinal order (cluster.Status over podcluster.Nodes).
	Report cluster.Report
}

// Verdict is the scale guard's answer.
type Verdict struct {
	Allowed bool
	// Denial is the detail of the denial at spec.replicas: what would be lost,
	// the command that makes the scale-down safe, and the override; empty when
	// allowed.
	Denial string
	// Warnings are admission warnings: in warn mode, the denial's text.
	Warnings []string
}

// Decide is the scale guard's decision, a pure function of what the
// cluster reported and the StatefulSet's effective policy. Scale-ups, unchanged
// replicas and scaleGuard off are allowed. Otherwise each pod that would go is
// looked at: a master that serves slots is refused, and so is a replica whose
// master (one that serves slots and stays) would be left with fewer than
// cluster.replicasPerMaster replicas among the pods that stay. What cannot be
// checked (a pod that does not run, a node that does not answer, the budget run
// out) is refused too. In warn mode the same text is a warning and the request is
// allowed.
func Decide(sd ScaleDown, p *config.Policy) Verdict {
	if sd.To >= sd.From || p.ScaleGuard == config.ScaleGuardOff {
		return Verdict{Allowed: true}
	}
	problems, drain, replicas := scaleDownProblems(sd, p)
	if len(problems) == 0 {
		return Verdict{Allowed: true}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "scaling %s down from %d to %d pods ", sd.StatefulSet, sd.From, sd.To)
	if len(drain) > 0 || replicas {
		b.WriteString("would remove ")
	} else {
		b.WriteString("cannot be checked: ")
	}
	b.WriteString(strings.Join(problems, "; "))
	b.WriteString(".")
	if len(drain) > 0 {
		fmt.Fprintf(&b, " Move the slots with their keys to the pods that stay, then scale: %s.", drainCommand(sd, p, drain))
	}
	if replicas {
		b.WriteString(" A replica serves no slots, so removing one needs no drain, but first give its master another replica among the pods that stay (CLUSTER REPLICATE <master ID> on a replica that stays), or remove fewer pods.")
	}
	if len(drain) == 0 && !replicas {
		b.WriteString(" The scale guard refuses what it cannot check: retry once every pod runs and answers.")
	}
	if p.ScaleGuard == config.ScaleGuardWarn {
		fmt.Fprintf(&b, " Admitted anyway: scaleGuard is %s.", config.ScaleGuardWarn)
		return Verdict{Allowed: true, Warnings: []string{ReplicasPath.String() + ": " + b.String()}}
	}
	fmt.Fprintf(&b, " To scale down anyway, annotate the StatefulSet %s%s=%s (or =%s, which admits it with this text as a warning).",
		config.AnnotationPrefix, "scaleGuard", config.ScaleGuardOff, config.ScaleGuardWarn)
	return Verdict{Denial: b.String()}
}

// scaleDownProblems lists, in ordinal order, what makes the scale-down unsafe or
// uncheckable; drain are the ordinals of masters that serve slots, and replicas
// says a replica would leave its master short.
func scaleDownProblems(sd ScaleDown, p *config.Policy) (problems []string, drain []int, replicas bool) {
	pod := func(o int) string { return fmt.Sprintf("%s-%d", sd.StatefulSet, o) }
	nodes := sd.Report.Nodes
	switch {
	case sd.Unchecked != "":
		problems = []string{sd.Unchecked}
	case len(nodes) != int(sd.From):
		problems = []string{fmt.Sprintf("%d nodes answered for %d pods", len(nodes), sd.From)}
	default:
		for o, n := range nodes {
			if n.Error != "" {
				problems = append(problems, fmt.Sprintf("%s did not answer (%s)", pod(o), n.Error))
			}
		}
	}
	if len(problems) > 0 {
		if sd.TimedOut {
			problems = append([]string{fmt.Sprintf("the check ran out of its %s budget", Budget)}, problems...)
		}
		return problems, nil, false
	}
	ordinalOf := map[string]int{}
	for o, n := range nodes {
		ordinalOf[n.ID] = o
	}
	for o := int(sd.To); o < int(sd.From); o++ {
		n := nodes[o]
		switch n.Role {
		case cluster.RoleMaster:
			if n.Slots > 0 {
				problems = append(problems, fmt.Sprintf("%s (node %s, master), which serves %d slots (%s)", pod(o), n.ID, n.Slots, n.SlotRanges))
				drain = append(drain, o)
			}
		case cluster.RoleReplica:
			m, known := ordinalOf[n.MasterID]
			if known && (m >= int(sd.To) || nodes[m].Slots == 0) {
				continue // its master goes too, or serves nothing
			}
			master := n.MasterAddress
			if known {
				master = pod(m)
			}
			left := 0
			for s := range int(sd.To) {
				if nodes[s].Role == cluster.RoleReplica && nodes[s].MasterID == n.MasterID {
					left++
				}
			}
			if left < p.Cluster.ReplicasPerMaster {
				problems = append(problems, fmt.Sprintf("%s (node %s, replica of %s), which would leave master %s (node %s) with %d replicas among the pods that stay, fewer than cluster.replicasPerMaster (%d)",
					pod(o), n.ID, master, master, n.MasterID, left, p.Cluster.ReplicasPerMaster))
				replicas = true
			}
		}
	}
	return problems, drain, replicas
}

// drainCommand is the valkey-webhook command that moves the slots off the given
// ordinals, with the flags the cluster's TLS and auth need.
func drainCommand(sd ScaleDown, p *config.Policy, ordinals []int) string {
	list := make([]string, len(ordinals))
	for i, o := range ordinals {
		list[i] = strconv.Itoa(o)
	}
	cmd := fmt.Sprintf("valkey-webhook cluster drain --nodes %s --ordinals %s", strings.Join(sd.Addresses, ","), strings.Join(list, ","))
	if sd.TLSSecret != "" {
		cmd += fmt.Sprintf(" --tls-ca <ca.crt of Secret %s>", sd.TLSSecret)
		if p.TLS.AuthClients {
			cmd += fmt.Sprintf(" --tls-cert <tls.crt of Secret %s> --tls-key <tls.key of Secret %s>", sd.TLSSecret, sd.TLSSecret)
		}
	}
	if sd.AuthSecret != "" {
		cmd += fmt.Sprintf(" --password-file <key password of Secret %s>", sd.AuthSecret)
	}
	return cmd
}

// Check asks the cluster of a labeled StatefulSet's pods of ordinals below from
// how it stands, for Decide: reader reads the pods (a cache), apiReader the
// Secrets and what the cache does not hold. ctx carries the budget, which also
// bounds each node's answer.
func Check(ctx context.Context, reader, apiReader client.Reader, sts *appsv1.StatefulSet, p *config.Policy, from, to int32, budget time.Duration) ScaleDown {
	sd := ScaleDown{StatefulSet: sts.Name, From: from, To: to}
	for o := range from {
		sd.Addresses = append(sd.Addresses, net.JoinHostPort(defaults.PodDNSName(sts, p, fmt.Sprintf("%s-%d", sts.Name, o), sts.Namespace), strconv.Itoa(p.Valkey.Port)))
	}
	if p.Auth.Enabled {
		sd.AuthSecret = defaults.AuthSecretName(sts, p)
	}
	if p.TLSEnabled() {
		sd.TLSSecret = defaults.TLSSecretName(sts, p)
	}
	unchecked := func(format string, args ...any) ScaleDown {
		sd.Unchecked = fmt.Sprintf(format, args...)
		sd.TimedOut = ctx.Err() != nil
		return sd
	}
	_, nodes, waiting, err := podcluster.List(ctx, sts, p, reader, apiReader)
	switch {
	case err != nil:
		return unchecked("%v", err)
	case waiting != "":
		return unchecked("not every pod runs: %s", waiting)
	}
	opts, waiting, err := podcluster.Options(ctx, apiReader, sts, p, budget)
	switch {
	case err != nil:
		return unchecked("%v", err)
	case waiting != "":
		return unchecked("%s", waiting)
	}
	report, err := cluster.Status(ctx, nodes, opts)
	if err != nil {
		return unchecked("%v", err)
	}
	sd.Report = report
	sd.TimedOut = ctx.Err() != nil
	return sd
}
