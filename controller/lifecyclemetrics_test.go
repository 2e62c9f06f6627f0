package controller

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/apimachinery/pkg/types"
)

// TestStateTracker: valkey_webhook_clusters counts each cluster once, in its
// last state, and not once it is forgotten.
func TestStateTracker(t *testing.T) {
	gauge := func() map[string]float64 {
		out := map[string]float64{}
		for _, s := range clusterStates {
			var m dto.Metric
			if err := clustersByState.WithLabelValues(s).Write(&m); err != nil {
				t.Fatal(err)
			}
			if v := m.GetGauge().GetValue(); v != 0 {
				out[s] = v
			}
		}
		return out
	}
	var tr stateTracker
	a, b := types.NamespacedName{Namespace: "n", Name: "a"}, types.NamespacedName{Namespace: "n", Name: "b"}
	steps := []struct {
		do   func()
		want map[string]float64
	}{
		{func() { tr.set(a, "pending") }, map[string]float64{"pending": 1}},
		{func() { tr.set(a, "forming") }, map[string]float64{"forming": 1}},
		{func() { tr.set(b, "pending") }, map[string]float64{"forming": 1, "pending": 1}},
		{func() { tr.set(a, "ok"); tr.set(a, "ok") }, map[string]float64{"ok": 1, "pending": 1}},
		{func() { tr.set(b, "ok") }, map[string]float64{"ok": 2}},
		{func() { tr.forget(a); tr.forget(a) }, map[string]float64{"ok": 1}},
		{func() { tr.forget(b) }, map[string]float64{}},
	}
	for i, s := range steps {
		s.do()
		if diff := cmp.Diff(s.want, gauge()); diff != "" {
			t.Errorf("after step %d (-want +got):\n%s", i, diff)
		}
	}
}

// TestStateReasons: every state the gauge counts has its own Event reason.
func TestStateReasons(t *testing.T) {
	seen := map[string]string{}
	for _, s := range clusterStates {
		reason, ok := stateReasons[s]
		if !ok || reason == "" {
			t.Errorf("state %s has no Event reason", s)
		}
		if other, dup := seen[reason]; dup {
			t.Errorf("states %s and %s share the reason %s", other, s, reason)
		}
		seen[reason] = s
	}
	if len(stateReasons) != len(clusterStates) {
		t.Errorf("%d reasons for %d states", len(stateReasons), len(clusterStates))
	}
}
