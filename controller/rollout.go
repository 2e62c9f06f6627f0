package controller

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// A policy edit, or an upgrade of valkey-webhook whose rendering of valkey.conf
// differs in a setting, changes what every existing cluster should run with. The
// rollout gate lets that change reach at most rollout.maxClusters clusters at a
// time: a cluster's ConfigMap keeps the settings its pods run with, and its pod
// template its checksum, until the gate lets it start; the next starts only once
// the one before is healthy again. A cluster that is not healthy within
// rollout.healthTimeoutSeconds holds the rollout, with an Event and the metric
// valkey_webhook_rollout_clusters{state="stalled"}. Changes a user makes through
// admission (an override, the template) are not gated: their update rolls the
// pods at once, as any template change does. With rollout.requireGo, a cluster
// asks for its turn only once it has its go (config.RolloutGoAnnotation set to
// the checksum it would roll to). docs/design.md, "Paced rollouts".

// rolloutPoll is how often a cluster waiting for its turn is looked at again.
const rolloutPoll = 10 * time.Second

// rolloutClusters counts the clusters of the rollout by state: rolling (started,
// not healthy yet), stalled (rolling past the bound), waiting (for a turn),
// awaiting_go (for a go, with rollout.requireGo) and needs_restart (a TLS or
// auth change, held until the pods can restart together).
var rolloutClusters = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "valkey_webhook_rollout_clusters",
	Help: "Clusters of the paced rollout of a policy or valkey-webhook change, by state: rolling, stalled, waiting, awaiting_go, needs_restart.",
}, []string{"state"})

func init() { metrics.Registry.MustRegister(rolloutClusters) }

// started is a cluster the gate let roll: when, and the generation its patch
// made, which the StatefulSet controller must have seen before it counts as done.
type started struct {
	at         time.Time
	generation int64
	reported   bool // its stall has had its Event
}

// rolloutGate is the leader's memory of the rollout. A new leader starts with an
// empty one: the clusters still rolling then are not counted, at most one
// rollout's worth of clusters more at once.
type rolloutGate struct {
	mu      sync.Mutex
	started map[types.NamespacedName]started
	waiting map[types.NamespacedName]bool
	// awaitingGo is the checksum each cluster awaits a go for.
	awaitingGo map[types.NamespacedName]string
	// needsRestart is the change each cluster holds for until its pods can
	// restart together (a TLS or auth change, transportHeld).
	needsRestart map[types.NamespacedName]string
}

func newRolloutGate() *rolloutGate {
	return &rolloutGate{started: map[types.NamespacedName]started{}, waiting: map[types.NamespacedName]bool{},
		awaitingGo: map[types.NamespacedName]string{}, needsRestart: map[types.NamespacedName]string{}}
}

// healthy reports whether a StatefulSet's roll is over and every pod is ready,
// as its status says once the StatefulSet controller has seen generation: every
// pod of the current revision and ready. The pods' readiness probe is the
// cluster's health: ready is cluster_state:ok, and for a replica its link up and
// its initial sync done (defaults.readinessScript).
func healthy(sts *appsv1.StatefulSet, generation int64) bool {
	want := int32(1)
	if sts.Spec.Replicas != nil {
		want = *sts.Spec.Replicas
	}
	s := sts.Status
	return s.ObservedGeneration >= generation && s.CurrentRevision == s.UpdateRevision &&
		s.UpdatedReplicas == want && s.ReadyReplicas == want && s.Replicas == want
}

// rolloutState is what the gate knows of the clusters it let start, looked up in
// current (absent: deleted): those still rolling, and of them those past the
// bound. Healthy and deleted ones are done.
func rolloutState(starts map[types.NamespacedName]started, current func(types.NamespacedName) (*appsv1.StatefulSet, bool), now time.Time, bound time.Duration) (rolling, stalled []types.NamespacedName) {
	for key, s := range starts {
		sts, ok := current(key)
		if !ok || healthy(sts, s.generation) {
			continue
		}
		rolling = append(rolling, key)
		if now.Sub(s.at) > bound {
			stalled = append(stalled, key)
		}
	}
	return rolling, stalled
}

// admit decides whether key may start rolling now: fewer than maxClusters
// clusters rolling, none of them stalled. It forgets the clusters that are done
// and updates the metric. It returns whether key has just begun to wait, and the
// clusters that have just stalled, for their Events.
func (g *rolloutGate) admit(key types.NamespacedName, current func(types.NamespacedName) (*appsv1.StatefulSet, bool), now time.Time, maxClusters int, bound time.Duration) (ok, newlyWaiting bool, newlyStalled []types.NamespacedName) {
	g.mu.Lock()
	defer g.mu.Unlock()
	rolling, stalled := rolloutState(g.started, current, now, bound)
	keep := map[types.NamespacedName]started{}
	for _, k := range rolling {
		keep[k] = g.started[k]
	}
	for _, k := range stalled {
		if s := keep[k]; !s.reported {
			s.reported = true
			keep[k] = s
			newlyStalled = append(newlyStalled, k)
		}
	}
	g.started = keep
	for k := range g.waiting {
		if _, ok := current(k); !ok {
			delete(g.waiting, k) // deleted while it waited
		}
	}
	delete(g.awaitingGo, key) // asking for a turn: it has its go, or needs none
	delete(g.needsRestart, key)
	_, self := g.started[key]
	ok = self || (len(rolling) < maxClusters && len(stalled) == 0)
	if ok {
		delete(g.waiting, key)
	} else if !g.waiting[key] {
		g.waiting[key] = true
		newlyWaiting = true
	}
	g.report()
	return ok, newlyWaiting, newlyStalled
}

// begin records that key started rolling with the patch that made generation.
func (g *rolloutGate) begin(key types.NamespacedName, now time.Time, generation int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.started[key] = started{at: now, generation: generation}
	g.report()
}

// awaitGo records that key waits for a go for checksum, and reports whether
// that is new: the cluster's Event is sent once per checksum awaited.
func (g *rolloutGate) awaitGo(key types.NamespacedName, checksum string) bool {
	return g.await(g.awaitingGo, key, checksum)
}

// awaitRestart records that key holds its roll to change until its pods can
// restart together, and reports whether that is new, for its Event.
func (g *rolloutGate) awaitRestart(key types.NamespacedName, change string) bool {
	return g.await(g.needsRestart, key, change)
}

func (g *rolloutGate) await(m map[types.NamespacedName]string, key types.NamespacedName, value string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if v, ok := m[key]; ok && v == value {
		return false
	}
	m[key] = value
	delete(g.waiting, key)
	g.report()
	return true
}

// settled forgets a cluster that needs nothing from the rollout (any more), or
// was deleted.
func (g *rolloutGate) settled(key types.NamespacedName) {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, awaiting := g.awaitingGo[key]
	_, holding := g.needsRestart[key]
	if g.waiting[key] || awaiting || holding {
		delete(g.waiting, key)
		delete(g.awaitingGo, key)
		delete(g.needsRestart, key)
		g.report()
	}
}

// report sets the metric from what the gate holds, after each change of it: the
// clusters started and not known done (admit forgets those that are), those of
// them reported stalled, and those waiting. Callers hold g.mu.
func (g *rolloutGate) report() {
	stalled := 0
	for _, s := range g.started {
		if s.reported {
			stalled++
		}
	}
	rolloutClusters.WithLabelValues("rolling").Set(float64(len(g.started)))
	rolloutClusters.WithLabelValues("stalled").Set(float64(stalled))
	rolloutClusters.WithLabelValues("waiting").Set(float64(len(g.waiting)))
	rolloutClusters.WithLabelValues("awaiting_go").Set(float64(len(g.awaitingGo)))
	rolloutClusters.WithLabelValues("needs_restart").Set(float64(len(g.needsRestart)))
}

// gate is the reconciler's rollout gate, made on first use.
func (r *CompanionReconciler) gate() *rolloutGate {
	r.gateOnce.Do(func() { r.rollout = newRolloutGate() })
	return r.rollout
}

// mayRoll asks the gate whether sts may start rolling to the settings of p now.
// A cluster that begins to wait gets an Event saying so; one that stalls the
// rollout gets a warning Event saying what holds it.
func (r *CompanionReconciler) mayRoll(ctx context.Context, sts *appsv1.StatefulSet, p *config.Policy) bool {
	current := func(key types.NamespacedName) (*appsv1.StatefulSet, bool) {
		s := &appsv1.StatefulSet{}
		if err := r.Client.Get(ctx, key, s); err != nil {
			return s, !apierrors.IsNotFound(err) // unreadable counts as still rolling
		}
		return s, true
	}
	bound := time.Duration(p.Rollout.HealthTimeoutSeconds) * time.Second
	ok, waiting, stalled := r.gate().admit(client.ObjectKeyFromObject(sts), current, time.Now(), p.Rollout.MaxClusters, bound)
	for _, key := range stalled {
		if s, found := current(key); found && s.Name != "" {
			r.Recorder.Eventf(s, nil, corev1.EventTypeWarning, ReasonRolloutStalled, "Rollout",
				"not healthy %s after its roll to new settings began (rollout.healthTimeoutSeconds): the rollout to the other clusters waits until every pod of this one is ready; look at its pods (kubectl describe pod), or fix the policy", bound)
		}
	}
	if waiting {
		r.Recorder.Eventf(sts, nil, corev1.EventTypeNormal, ReasonRolloutWaiting, "Rollout",
			"the policy (or this release of valkey-webhook) changes what this cluster runs with: it waits for its turn, %d cluster(s) at a time, each healthy before the next (rollout.maxClusters)", p.Rollout.MaxClusters)
	}
	return ok
}

// hasGo reports whether sts may ask for its turn to roll to conf: always, but
// with rollout.requireGo only once its go annotation holds conf's checksum. A
// cluster that begins to await a go gets an Event with the command that gives it.
func (r *CompanionReconciler) hasGo(sts *appsv1.StatefulSet, p *config.Policy, conf string) bool {
	want, awaits := defaults.AwaitsGo(sts, p, conf)
	if !awaits {
		return true
	}
	if r.gate().awaitGo(client.ObjectKeyFromObject(sts), want) {
		r.Recorder.Eventf(sts, nil, corev1.EventTypeNormal, ReasonRolloutAwaitingGo, "Rollout",
			"the policy (or this release of valkey-webhook) changes what this cluster runs with, and rollout.requireGo is set: it rolls once it has its go, then in its turn (rollout.maxClusters): kubectl annotate statefulset -n %s %s %s=%s --overwrite",
			sts.Namespace, sts.Name, config.RolloutGoAnnotation, want)
	}
	return false
}

// transportHeld reports whether sts holds its roll to the settings of p: the
// change turns TLS or auth on or off while its pods run and would roll one at a
// time (defaults.NeedsRestart), which admission refuses and which would
// leave the first rolled pod unable to talk to its peers. Its ConfigMap and
// template stay until its update strategy is OnDelete; a cluster that begins to
// hold gets a warning Event with the way to make the change.
func (r *CompanionReconciler) transportHeld(sts *appsv1.StatefulSet, p *config.Policy) bool {
	changes := defaults.NeedsRestart(sts, r.Policy, p)
	if len(changes) == 0 {
		return false
	}
	turns := defaults.Describe(changes)
	if r.gate().awaitRestart(client.ObjectKeyFromObject(sts), turns) {
		r.Recorder.Eventf(sts, nil, corev1.EventTypeWarning, ReasonRolloutNeedsRestart, "Rollout",
			"the policy %s while the pods run: rolled one at a time, the first new pod %s, so this cluster keeps its settings until its pods can restart together: "+
				`kubectl patch statefulset -n %s %s --type merge -p '{"spec":{"updateStrategy":{"type":"OnDelete","rollingUpdate":null}}}', `+
				"then, once its pod template has changed, delete all its pods together (kubectl delete pod -n %s -l %s=%s; they come back with their data, the cluster is unavailable until they are up), and set RollingUpdate back; "+
				"or keep it as it is by pinning the stored value with its valkey-webhook.io/ annotation",
			turns, changes[0].Why, sts.Namespace, sts.Name, sts.Namespace, defaults.StatefulSetNameLabel, sts.Name)
	}
	return true
}
