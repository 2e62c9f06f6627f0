package controller

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/valkey-webhook/valkey-webhook/cluster"
	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// ZoneLabel is the well-known label of a Kubernetes node's zone.
const ZoneLabel = "topology.kubernetes.io/zone"

// clusterNodes lists the Valkey nodes of a StatefulSet: one per ordinal below
// spec.replicas, at its pod IP, in ordinal order, with the zone of the Kubernetes
// node it runs on (zones maps node names to zones) and, with TLS, the pod's DNS
// name for certificate verification. It returns a reason to wait instead while
// any of those pods is missing, not running, being deleted or without an IP.
func clusterNodes(sts *appsv1.StatefulSet, p *config.Policy, pods []corev1.Pod, zones map[string]string) ([]cluster.Node, string) {
	replicas := 1
	if sts.Spec.Replicas != nil {
		replicas = int(*sts.Spec.Replicas)
	}
	byOrdinal := map[int]*corev1.Pod{}
	for i := range pods {
		pod := &pods[i]
		if !metav1.IsControlledBy(pod, sts) {
			continue
		}
		if o, ok := podOrdinal(sts.Name, pod.Name); ok && o < replicas {
			byOrdinal[o] = pod
		}
	}
	var waiting []string
	nodes := make([]cluster.Node, 0, replicas)
	for o := range replicas {
		pod, ok := byOrdinal[o]
		name := fmt.Sprintf("%s-%d", sts.Name, o)
		switch {
		case !ok:
			waiting = append(waiting, name+" does not exist")
		case !pod.DeletionTimestamp.IsZero():
			waiting = append(waiting, name+" is being deleted")
		case pod.Status.Phase != corev1.PodRunning:
			waiting = append(waiting, fmt.Sprintf("%s is %s", name, orPending(pod.Status.Phase)))
		case pod.Status.PodIP == "":
			waiting = append(waiting, name+" has no IP")
		default:
			n := cluster.Node{
				Address: net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(p.Valkey.Port)),
				Host:    pod.Spec.NodeName,
				Zone:    zones[pod.Spec.NodeName],
			}
			if p.TLSEnabled() {
				n.ServerName = PodDNSName(sts, p, name)
			}
			nodes = append(nodes, n)
		}
	}
	if len(waiting) > 0 {
		return nil, strings.Join(waiting, ", ")
	}
	return nodes, ""
}

func orPending(phase corev1.PodPhase) string {
	if phase == "" {
		return string(corev1.PodPending)
	}
	return string(phase)
}

// PodDNSName is the stable DNS name of a StatefulSet's pod under its governing
// headless Service, the name the companion Certificate covers.
func PodDNSName(sts *appsv1.StatefulSet, p *config.Policy, pod string) string {
	return fmt.Sprintf("%s.%s.%s.svc.%s", pod, defaults.GoverningServiceName(sts), sts.Namespace, p.TLS.ClusterDomain)
}

// podOrdinal is the ordinal of a StatefulSet's pod name, "<sts>-<ordinal>".
func podOrdinal(sts, pod string) (int, bool) {
	suffix, ok := strings.CutPrefix(pod, sts+"-")
	if !ok || suffix == "" || (len(suffix) > 1 && suffix[0] == '0') {
		return 0, false
	}
	o, err := strconv.Atoi(suffix)
	return o, err == nil && o >= 0
}

// step is what the lifecycle controller does next for one cluster.
type step int

const (
	// stepNone: the cluster is ok.
	stepNone step = iota
	// stepWait: the cluster is not ok, but nothing the controller may do helps
	// (a node does not answer, a failover is under way); look again later.
	stepWait
	// stepInit: no node serves every slot yet; Init forms the cluster, or
	// finishes a formation that was interrupted, or refuses.
	stepInit
	// stepHeal: nodes know their peers at stale addresses.
	stepHeal
)

func (s step) String() string {
	return [...]string{"none", "wait", "init", "heal"}[s]
}

// nextStep decides from the nodes' reports what to do, and why.
func nextStep(r cluster.Report) (step, string) {
	var unreachable, stale []string
	for _, n := range r.Nodes {
		switch {
		case n.Error != "":
			unreachable = append(unreachable, n.Error)
		case n.StalePeers > 0:
			stale = append(stale, n.Address)
		}
	}
	switch {
	case len(unreachable) > 0:
		sort.Strings(unreachable)
		return stepWait, "not every node answers: " + strings.Join(unreachable, "; ")
	case r.OK():
		return stepNone, "cluster_state ok on every node, all slots served"
	case len(stale) > 0:
		return stepHeal, fmt.Sprintf("%s know peers at stale addresses", strings.Join(stale, ", "))
	case r.SlotsCovered < cluster.SlotCount && len(r.Failing) == 0:
		return stepInit, fmt.Sprintf("%d of %d slots served and no node failing", r.SlotsCovered, cluster.SlotCount)
	default:
		return stepWait, fmt.Sprintf("cluster_state fail; failing: %s", strings.Join(r.Failing, ", "))
	}
}
