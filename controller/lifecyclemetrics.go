package controller

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// The lifecycle controller's metrics: each action by its result and duration,
// and the clusters by the state the controller last saw them in.
var (
	lifecycleActions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "valkey_webhook_lifecycle_actions_total",
		Help: "Cluster lifecycle actions (init, heal, join, forget) by result: changed, unchanged (nothing left to do), refused (changing nothing, an Event says why), error.",
	}, []string{"action", "result"})
	lifecycleDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "valkey_webhook_lifecycle_action_duration_seconds",
		Help:    "Duration of the cluster lifecycle actions, by action.",
		Buckets: prometheus.ExponentialBuckets(0.1, 2, 10), // 0.1 s to 51 s
	}, []string{"action"})
	clustersByState = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "valkey_webhook_clusters",
		Help: "Labeled StatefulSets by the state the lifecycle controller last saw their cluster in: ok, pending (pods or Secrets not there yet), not_ok (waiting: a node does not answer, a failover), forming, healing, joining, forgetting.",
	}, []string{"state"})
)

// clusterStates are the states clustersByState counts.
var clusterStates = []string{"ok", "pending", "not_ok", "forming", "healing", "joining", "forgetting"}

func init() {
	metrics.Registry.MustRegister(lifecycleActions, lifecycleDuration, clustersByState)
	for _, s := range clusterStates {
		clustersByState.WithLabelValues(s)
	}
}

// stepStates is the cluster state of each step.
var stepStates = map[step]string{
	stepNone: "ok", stepWait: "not_ok", stepInit: "forming", stepHeal: "healing", stepJoin: "joining", stepForget: "forgetting",
}

// stateTracker holds each cluster's last state, so that clustersByState counts
// each cluster once and forgets a deleted one. Like the rollout gate it is the
// leader's: another replica's gauge stays at zero.
type stateTracker struct {
	mu     sync.Mutex
	states map[types.NamespacedName]string
}

// set records a cluster's state, and returns the state before and whether
// there was one (false: the first look since this replica leads).
func (t *stateTracker) set(key types.NamespacedName, state string) (was string, known bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.states == nil {
		t.states = map[types.NamespacedName]string{}
	}
	if was, known = t.states[key]; known {
		if was == state {
			return was, true
		}
		clustersByState.WithLabelValues(was).Dec()
	}
	t.states[key] = state
	clustersByState.WithLabelValues(state).Inc()
	return was, known
}

// forget drops a cluster that is gone or no longer labeled.
func (t *stateTracker) forget(key types.NamespacedName) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if was, ok := t.states[key]; ok {
		clustersByState.WithLabelValues(was).Dec()
		delete(t.states, key)
	}
}

// countAction counts one action's result and duration.
func countAction(action, result string, took time.Duration) {
	lifecycleActions.WithLabelValues(action, result).Inc()
	lifecycleDuration.WithLabelValues(action).Observe(took.Seconds())
}
