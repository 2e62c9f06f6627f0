package controller

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/valkey-webhook/valkey-webhook/cluster"
	"github.com/valkey-webhook/valkey-webhook/config"
)

func lifecycleSts(replicas int32) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "cache", Namespace: "team-a", UID: types.UID("sts-uid")},
		Spec:       appsv1.StatefulSetSpec{Replicas: ptr.To(replicas), ServiceName: "cache-headless"},
	}
}

func runningPod(sts *appsv1.StatefulSet, ordinal int, ip, node string) corev1.Pod {
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-%d", sts.Name, ordinal), Namespace: sts.Namespace,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: sts.Name, UID: sts.UID, Controller: ptr.To(true)}},
		},
		Spec:   corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip},
	}
}

func TestClusterNodes(t *testing.T) {
	sts := lifecycleSts(3)
	zones := map[string]string{"n1": "a", "n2": "b"}
	plain := config.Default()
	withTLS := config.Default()
	withTLS.TLS.SecretName = "cache-tls"
	three := func(edit func(pods []corev1.Pod)) []corev1.Pod {
		pods := []corev1.Pod{runningPod(sts, 2, "10.0.0.12", "n2"), runningPod(sts, 0, "10.0.0.10", "n1"), runningPod(sts, 1, "10.0.0.11", "n3")}
		if edit != nil {
			edit(pods)
		}
		return pods
	}
	foreign := runningPod(sts, 1, "10.9.9.9", "n1")
	foreign.OwnerReferences[0].UID = "other"

	tests := []struct {
		name    string
		policy  config.Policy
		pods    []corev1.Pod
		want    []cluster.Node
		waiting string
	}{{
		name:   "every pod runs: ordinal order, zones and hosts",
		policy: plain,
		pods:   three(nil),
		want: []cluster.Node{
			{Address: "10.0.0.10:6379", Host: "n1", Zone: "a"},
			{Address: "10.0.0.11:6379", Host: "n3"},
			{Address: "10.0.0.12:6379", Host: "n2", Zone: "b"},
		},
	}, {
		name:   "TLS: each node verified by its pod DNS name",
		policy: withTLS,
		pods:   three(nil),
		want: []cluster.Node{
			{Address: "10.0.0.10:6379", Host: "n1", Zone: "a", ServerName: "cache-0.cache-headless.team-a.svc.cluster.local"},
			{Address: "10.0.0.11:6379", Host: "n3", ServerName: "cache-1.cache-headless.team-a.svc.cluster.local"},
			{Address: "10.0.0.12:6379", Host: "n2", Zone: "b", ServerName: "cache-2.cache-headless.team-a.svc.cluster.local"},
		},
	}, {
		name:   "pods above spec.replicas and pods of others are left out",
		policy: plain,
		pods:   append(three(nil), runningPod(sts, 3, "10.0.0.13", "n1"), foreign),
		want: []cluster.Node{
			{Address: "10.0.0.10:6379", Host: "n1", Zone: "a"},
			{Address: "10.0.0.11:6379", Host: "n3"},
			{Address: "10.0.0.12:6379", Host: "n2", Zone: "b"},
		},
	}, {
		name:   "a missing, a pending and a deleted pod: wait, naming each",
		policy: plain,
		pods: three(func(p []corev1.Pod) {
			p[0].Status.Phase = ""
			p[1].DeletionTimestamp = ptr.To(metav1.Now())
			p[2] = foreign
		}),
		waiting: "cache-0 is being deleted, cache-1 does not exist, cache-2 is Pending",
	}, {
		name:    "a running pod without an IP: wait",
		policy:  plain,
		pods:    three(func(p []corev1.Pod) { p[2].Status.PodIP = "" }),
		waiting: "cache-1 has no IP",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, waiting := clusterNodes(sts, &tt.policy, tt.pods, zones)
			if waiting != tt.waiting {
				t.Errorf("waiting = %q, want %q", waiting, tt.waiting)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("nodes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPodOrdinal(t *testing.T) {
	for pod, want := range map[string]int{"cache-0": 0, "cache-11": 11, "cache-x": -1, "cache-": -1, "cache-01": -1, "other-1": -1, "cache-db-1": -1} {
		got, ok := podOrdinal("cache", pod)
		if !ok {
			got = -1
		}
		if got != want {
			t.Errorf("podOrdinal(cache, %s) = %d, want %d", pod, got, want)
		}
	}
}

func TestNextStep(t *testing.T) {
	node := func(addr string, edit func(*cluster.NodeReport)) cluster.NodeReport {
		n := cluster.NodeReport{Address: addr, State: cluster.StateOK, KnownNodes: 3}
		if edit != nil {
			edit(&n)
		}
		return n
	}
	tests := []struct {
		name   string
		report cluster.Report
		want   step
		why    string
	}{{
		name:   "ok",
		report: cluster.Report{State: cluster.StateOK, SlotsCovered: cluster.SlotCount, Nodes: []cluster.NodeReport{node("a:1", nil)}},
		want:   stepNone,
		why:    "cluster_state ok on every node, all slots served",
	}, {
		name: "empty nodes: init",
		report: cluster.Report{State: cluster.StateFail, Nodes: []cluster.NodeReport{
			node("a:1", func(n *cluster.NodeReport) { n.State = cluster.StateFail; n.KnownNodes = 1 }),
			node("b:1", func(n *cluster.NodeReport) { n.State = cluster.StateFail; n.KnownNodes = 1 }),
		}},
		want: stepInit,
		why:  "0 of 16384 slots served and no node failing",
	}, {
		name: "a node does not answer: wait, even with stale peers",
		report: cluster.Report{State: cluster.StateFail, SlotsCovered: cluster.SlotCount, Nodes: []cluster.NodeReport{
			node("a:1", func(n *cluster.NodeReport) { n.Error = "node b:1: connection refused" }),
			node("b:1", func(n *cluster.NodeReport) { n.StalePeers = 2 }),
		}},
		want: stepWait,
		why:  "not every node answers: node b:1: connection refused",
	}, {
		name: "stale peers after a full restart: heal",
		report: cluster.Report{State: cluster.StateFail, SlotsCovered: cluster.SlotCount, Failing: []string{"c:1"}, Nodes: []cluster.NodeReport{
			node("a:1", func(n *cluster.NodeReport) { n.StalePeers = 2 }),
			node("b:1", nil),
			node("c:1", func(n *cluster.NodeReport) { n.StalePeers = 1 }),
		}},
		want: stepHeal,
		why:  "a:1, c:1 know peers at stale addresses",
	}, {
		name: "a master failing over: wait",
		report: cluster.Report{State: cluster.StateFail, SlotsCovered: 10923, Failing: []string{"c:1"}, Nodes: []cluster.NodeReport{
			node("a:1", nil), node("b:1", nil),
		}},
		want: stepWait,
		why:  "cluster_state fail; failing: c:1",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why := nextStep(tt.report)
			if got != tt.want || why != tt.why {
				t.Errorf("nextStep = %v, %q; want %v, %q", got, why, tt.want, tt.why)
			}
		})
	}
}
