package podcluster

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

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

func TestNodes(t *testing.T) {
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
			got, waiting := Nodes(sts, &tt.policy, tt.pods, zones)
			if waiting != tt.waiting {
				t.Errorf("waiting = %q, want %q", waiting, tt.waiting)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("nodes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOrdinal(t *testing.T) {
	for pod, want := range map[string]int{"cache-0": 0, "cache-11": 11, "cache-x": -1, "cache-": -1, "cache-01": -1, "other-1": -1, "cache-db-1": -1} {
		got, ok := Ordinal("cache", pod)
		if !ok {
			got = -1
		}
		if got != want {
			t.Errorf("Ordinal(cache, %s) = %d, want %d", pod, got, want)
		}
	}
}

// podReader is a client.Reader that lists the given pods (or fails) and counts
// the calls; List's choice between readers is what the test looks at.
type podReader struct {
	pods  []corev1.Pod
	err   error
	calls int
}

func (r *podReader) Get(context.Context, client.ObjectKey, client.Object, ...client.GetOption) error {
	return errors.New("not used")
}

func (r *podReader) List(_ context.Context, list client.ObjectList, _ ...client.ListOption) error {
	r.calls++
	if r.err != nil {
		return r.err
	}
	list.(*corev1.PodList).Items = append([]corev1.Pod(nil), r.pods...)
	return nil
}

func TestList(t *testing.T) {
	sts := lifecycleSts(2)
	sts.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "cache"}}
	p := config.Default()
	both := []corev1.Pod{runningPod(sts, 0, "10.0.0.10", "n1"), runningPod(sts, 1, "10.0.0.11", "n1")}
	wantNodes := []cluster.Node{{Address: "10.0.0.10:6379", Host: "n1"}, {Address: "10.0.0.11:6379", Host: "n1"}}

	tests := []struct {
		name       string
		cache, api *podReader
		wantPods   int
		wantNodes  []cluster.Node
		waiting    string
		err        string
		apiCalls   int
	}{{
		name:      "the cache shows every pod: the API server is not asked",
		cache:     &podReader{pods: both},
		api:       &podReader{err: errors.New("must not be called")},
		wantPods:  2,
		wantNodes: wantNodes,
	}, {
		name:      "pods of an earlier release's template, not in the cache: read from the API server",
		cache:     &podReader{pods: both[:1]},
		api:       &podReader{pods: both},
		wantPods:  2,
		wantNodes: wantNodes,
		apiCalls:  1,
	}, {
		name:     "the cache fails: the API server answers",
		cache:    &podReader{err: errors.New("cache not synced")},
		api:      &podReader{pods: both},
		wantPods: 2, wantNodes: wantNodes,
		apiCalls: 1,
	}, {
		name:     "neither shows every pod: the API server's reason to wait",
		cache:    &podReader{},
		api:      &podReader{pods: both[1:]},
		waiting:  "cache-0 does not exist",
		apiCalls: 1,
	}, {
		name:     "the API server fails: its error",
		cache:    &podReader{},
		api:      &podReader{err: errors.New("forbidden")},
		err:      "listing the pods: forbidden",
		apiCalls: 1,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pods, nodes, waiting, err := List(context.Background(), sts, &p, tt.cache, tt.api)
			if got := fmt.Sprint(err); (tt.err == "" && err != nil) || (tt.err != "" && got != tt.err) {
				t.Fatalf("error %v, want %q", err, tt.err)
			}
			if waiting != tt.waiting {
				t.Errorf("waiting %q, want %q", waiting, tt.waiting)
			}
			if len(pods) != tt.wantPods {
				t.Errorf("%d pods, want %d", len(pods), tt.wantPods)
			}
			if diff := cmp.Diff(tt.wantNodes, nodes); diff != "" {
				t.Errorf("nodes (-want +got):\n%s", diff)
			}
			if tt.api.calls != tt.apiCalls {
				t.Errorf("API server asked %d times, want %d", tt.api.calls, tt.apiCalls)
			}
		})
	}
}
