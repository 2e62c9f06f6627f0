package controller

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/types"
)

// rolloutSts is a StatefulSet of 6 pods at generation gen, whose status the StatefulSet
// controller wrote for observed with ready pods ready, all of the update revision
// when rolled.
func rolloutSts(gen, observed int64, ready int32, rolled bool) *appsv1.StatefulSet {
	replicas := int32(6)
	s := &appsv1.StatefulSet{}
	s.Generation = gen
	s.Spec.Replicas = &replicas
	s.Status = appsv1.StatefulSetStatus{ObservedGeneration: observed, Replicas: 6, ReadyReplicas: ready, UpdatedReplicas: 6, CurrentRevision: "r2", UpdateRevision: "r2"}
	if !rolled {
		s.Status.CurrentRevision, s.Status.UpdatedReplicas = "r1", 2
	}
	return s
}

func TestHealthy(t *testing.T) {
	tests := []struct {
		name string
		sts  *appsv1.StatefulSet
		want bool
	}{
		{"rolled, every pod ready", rolloutSts(3, 3, 6, true), true},
		{"the patch not seen yet by the StatefulSet controller", rolloutSts(3, 2, 6, true), false},
		{"still rolling", rolloutSts(3, 3, 6, false), false},
		{"rolled, one pod not ready", rolloutSts(3, 3, 5, true), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := healthy(tt.sts, 3); got != tt.want {
				t.Errorf("healthy = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRolloutGate walks one rollout of three clusters, one at a time, through a
// stall: each step is a cluster asking for its turn, with the clusters' state then.
func TestRolloutGate(t *testing.T) {
	a, b, c := types.NamespacedName{Namespace: "n", Name: "a"}, types.NamespacedName{Namespace: "n", Name: "b"}, types.NamespacedName{Namespace: "n", Name: "c"}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const bound = time.Minute
	type verdict struct {
		OK, NewlyWaiting bool
		NewlyStalled     []types.NamespacedName
	}
	steps := []struct {
		name    string
		ask     types.NamespacedName
		at      time.Duration
		state   map[types.NamespacedName]*appsv1.StatefulSet // absent: deleted
		want    verdict
		begin   int64 // when set, the cluster begins rolling with this generation
		waiting int
		gauge   map[string]float64 // valkey_webhook_rollout_clusters after the step
	}{
		{"a, the first: starts", a, 0, nil, verdict{OK: true}, 2, 0, gauge(1, 0, 0)},
		{"b while a rolls: waits, told once", b, time.Second, map[types.NamespacedName]*appsv1.StatefulSet{a: rolloutSts(2, 2, 6, false)}, verdict{NewlyWaiting: true}, 0, 1, gauge(1, 0, 1)},
		{"b again: still waits, not told again", b, 2 * time.Second, map[types.NamespacedName]*appsv1.StatefulSet{a: rolloutSts(2, 2, 6, false)}, verdict{}, 0, 1, gauge(1, 0, 1)},
		{"a itself, rolling: goes on", a, 3 * time.Second, map[types.NamespacedName]*appsv1.StatefulSet{a: rolloutSts(2, 2, 6, false), b: rolloutSts(1, 1, 6, true)}, verdict{OK: true}, 0, 1, gauge(1, 0, 1)},
		{"b once a is healthy: starts", b, 4 * time.Second, map[types.NamespacedName]*appsv1.StatefulSet{a: rolloutSts(2, 2, 6, true)}, verdict{OK: true}, 5, 0, gauge(1, 0, 0)},
		{"c while b is past the bound: b stalls the rollout, with one report", c, 2 * time.Minute, map[types.NamespacedName]*appsv1.StatefulSet{b: rolloutSts(5, 5, 5, true)}, verdict{NewlyWaiting: true, NewlyStalled: []types.NamespacedName{b}}, 0, 1, gauge(1, 1, 1)},
		{"c again: b still stalls, reported already", c, 3 * time.Minute, map[types.NamespacedName]*appsv1.StatefulSet{b: rolloutSts(5, 5, 5, true)}, verdict{}, 0, 1, gauge(1, 1, 1)},
		{"c once b is deleted: starts", c, 4 * time.Minute, map[types.NamespacedName]*appsv1.StatefulSet{}, verdict{OK: true}, 0, 0, gauge(0, 0, 0)},
	}
	g := newRolloutGate()
	for _, st := range steps {
		current := func(key types.NamespacedName) (*appsv1.StatefulSet, bool) {
			if s, ok := st.state[key]; ok || key != st.ask {
				return s, ok
			}
			return rolloutSts(1, 1, 6, true), true // the cluster asking exists
		}
		var got verdict
		got.OK, got.NewlyWaiting, got.NewlyStalled = g.admit(st.ask, current, t0.Add(st.at), 1, bound)
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Fatalf("%s: (-want +got)\n%s", st.name, diff)
		}
		if len(g.waiting) != st.waiting {
			t.Fatalf("%s: %d waiting, want %d", st.name, len(g.waiting), st.waiting)
		}
		if st.begin != 0 {
			g.begin(st.ask, t0.Add(st.at), st.begin)
		}
		gauges := map[string]float64{}
		for state := range st.gauge {
			m := &dto.Metric{}
			if err := rolloutClusters.WithLabelValues(state).Write(m); err != nil {
				t.Fatal(err)
			}
			gauges[state] = m.GetGauge().GetValue()
		}
		if diff := cmp.Diff(st.gauge, gauges); diff != "" {
			t.Fatalf("%s: valkey_webhook_rollout_clusters (-want +got)\n%s", st.name, diff)
		}
	}
}

func gauge(rolling, stalled, waiting float64) map[string]float64 {
	return map[string]float64{"rolling": rolling, "stalled": stalled, "waiting": waiting}
}

// TestRolloutGateMaxClusters: with maxClusters 2, two start together and the
// third waits for either.
func TestRolloutGateMaxClusters(t *testing.T) {
	a, b, c := types.NamespacedName{Name: "a"}, types.NamespacedName{Name: "b"}, types.NamespacedName{Name: "c"}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	state := map[types.NamespacedName]*appsv1.StatefulSet{a: rolloutSts(2, 2, 6, false), b: rolloutSts(2, 2, 6, false)}
	current := func(key types.NamespacedName) (*appsv1.StatefulSet, bool) { s, ok := state[key]; return s, ok }
	g := newRolloutGate()
	for _, key := range []types.NamespacedName{a, b} {
		if ok, _, _ := g.admit(key, current, now, 2, time.Hour); !ok {
			t.Fatalf("%s refused with fewer than 2 rolling", key)
		}
		g.begin(key, now, 2)
	}
	if ok, _, _ := g.admit(c, current, now, 2, time.Hour); ok {
		t.Fatal("c started with 2 rolling")
	}
	state[a] = rolloutSts(2, 2, 6, true)
	if ok, _, _ := g.admit(c, current, now, 2, time.Hour); !ok {
		t.Fatal("c still refused once a is healthy")
	}
}

// TestRolloutGateForgetsDeletedWaiters: a cluster deleted while it waited is no
// longer counted as waiting.
func TestRolloutGateForgetsDeletedWaiters(t *testing.T) {
	a, b, c := types.NamespacedName{Name: "a"}, types.NamespacedName{Name: "b"}, types.NamespacedName{Name: "c"}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	state := map[types.NamespacedName]*appsv1.StatefulSet{a: rolloutSts(2, 2, 6, false), b: rolloutSts(1, 1, 6, true), c: rolloutSts(1, 1, 6, true)}
	current := func(key types.NamespacedName) (*appsv1.StatefulSet, bool) { s, ok := state[key]; return s, ok }
	g := newRolloutGate()
	g.admit(a, current, now, 1, time.Hour)
	g.begin(a, now, 2)
	g.admit(b, current, now, 1, time.Hour)
	g.admit(c, current, now, 1, time.Hour)
	if len(g.waiting) != 2 {
		t.Fatalf("%d waiting, want b and c", len(g.waiting))
	}
	delete(state, b)
	g.admit(c, current, now, 1, time.Hour)
	if !cmp.Equal(g.waiting, map[types.NamespacedName]bool{c: true}) {
		t.Errorf("waiting %v, want only c", g.waiting)
	}
}

// TestRolloutGateAwait: a cluster awaiting its go, or holding for a restart of
// its pods together, is told once per change awaited, counted in its state,
// and forgotten once it asks for its turn or is settled.
func TestRolloutGateAwait(t *testing.T) {
	for _, kind := range []struct {
		state string
		await func(g *rolloutGate, key types.NamespacedName, change string) bool
	}{
		{"awaiting_go", (*rolloutGate).awaitGo},
		{"needs_restart", (*rolloutGate).awaitRestart},
	} {
		t.Run(kind.state, func(t *testing.T) {
			a, b := types.NamespacedName{Name: "a"}, types.NamespacedName{Name: "b"}
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			current := func(types.NamespacedName) (*appsv1.StatefulSet, bool) { return rolloutSts(1, 1, 6, true), true }
			awaiting := func() float64 {
				m := &dto.Metric{}
				if err := rolloutClusters.WithLabelValues(kind.state).Write(m); err != nil {
					t.Fatal(err)
				}
				return m.GetGauge().GetValue()
			}
			g := newRolloutGate()
			steps := []struct {
				name     string
				do       func() bool
				want     bool
				awaiting float64
			}{
				{"a awaits x: told", func() bool { return kind.await(g, a, "x") }, true, 1},
				{"a again for x: not told again", func() bool { return kind.await(g, a, "x") }, false, 1},
				{"b awaits x: told", func() bool { return kind.await(g, b, "x") }, true, 2},
				{"a for y, a later change: told", func() bool { return kind.await(g, a, "y") }, true, 2},
				{"a asks for its turn: starts, no longer awaiting", func() bool { ok, _, _ := g.admit(a, current, now, 1, time.Hour); return ok }, true, 1},
				{"b deleted: settled", func() bool { g.settled(b); return true }, true, 0},
				{"b back, awaiting x again: told again", func() bool { return kind.await(g, b, "x") }, true, 1},
			}
			for _, st := range steps {
				if got := st.do(); got != st.want {
					t.Fatalf("%s: got %v, want %v", st.name, got, st.want)
				}
				if got := awaiting(); got != st.awaiting {
					t.Fatalf("%s: %s %v, want %v", st.name, kind.state, got, st.awaiting)
				}
			}
		})
	}
}
