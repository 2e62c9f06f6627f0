package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crcontroller "sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/valkey-webhook/valkey-webhook/cluster"
	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
	"github.com/valkey-webhook/valkey-webhook/internal/podcluster"
)

// Event reasons of the lifecycle controller, on the StatefulSet.
const (
	ReasonClusterFormed  = "ClusterFormed"
	ReasonClusterHealed  = "ClusterHealed"
	ReasonClusterJoined  = "ClusterJoined"
	ReasonJoinRefused    = "ClusterJoinRefused"
	ReasonNodesForgotten = "ClusterNodesForgotten"
	ReasonForgetRefused  = "ClusterForgetRefused"
	ReasonInitRefused    = "ClusterInitRefused"
	ReasonHealRefused    = "ClusterHealRefused"
	ReasonLifecycleError = "ClusterLifecycleFailed"
	// ReasonClusterOK and the reasons after it: the cluster's state changed to
	// that one (observeState), as the gauge valkey_webhook_clusters counts it.
	// A reason per state, since the Events API folds an Event of the same
	// object, reason and action within minutes into the first one's series,
	// note and all: one reason for every change would show only the first.
	ReasonClusterOK         = "ClusterOK"
	ReasonClusterNotOK      = "ClusterNotOK"
	ReasonClusterPending    = "ClusterPending"
	ReasonClusterForming    = "ClusterForming"
	ReasonClusterHealing    = "ClusterHealing"
	ReasonClusterJoining    = "ClusterJoining"
	ReasonClusterForgetting = "ClusterForgetting"
	// ReasonCertificateReloaded: nodes loaded the TLS Secret's renewed
	// certificate in place, without a restart.
	ReasonCertificateReloaded = "CertificateReloaded"
	// ReasonCertificateNotReloaded: a node still serves another certificate
	// than the TLS Secret's after reloadPatience looks, or the Secret's does
	// not fit the nodes.
	ReasonCertificateNotReloaded = "CertificateNotReloaded"
)

// How soon the lifecycle controller looks at a cluster again: while it waits for
// pods or nodes, after it refused or failed, and once the cluster is ok (pod
// changes wake it sooner).
const (
	waitInterval    = 5 * time.Second
	refusedInterval = time.Minute
	okInterval      = 2 * time.Minute
	// statusTimeout bounds asking the nodes how they see the cluster; a node
	// that does not answer in time is one to wait for.
	statusTimeout = 15 * time.Second
)

// LifecycleReconciler forms the Valkey cluster of every labeled StatefulSet once
// all its pods run, heals it when the pods came back on new IPs and the nodes
// know each other by stale addresses, joins new pods of a scale-up as replicas,
// and forgets the failed nodes of pods scaled away. With TLS, it makes every
// node of an ok cluster load a renewed certificate in place, without a
// restart. Each action is an Event on the StatefulSet. It never forms a cluster
// over nodes that hold slots or keys (cluster.Init refuses), never forgets a
// node that serves slots or is only suspected, never moves a slot and never
// makes a master.
type LifecycleReconciler struct {
	// Client reads StatefulSets and Pods from the cache.
	Client client.Client
	// APIReader reads the auth and TLS Secrets, which need not be labeled, and
	// the zones of Kubernetes nodes, past the cache.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Policy    config.Policy
	// ControllerNamespace, when set, is valkey-webhook's own namespace, which it
	// leaves alone, as it does kube-system.
	ControllerNamespace string
	// Timeout bounds one Init, Heal or Join; zero: cluster.DefaultTimeout.
	// Asking the nodes (Status) is bounded by statusTimeout.
	Timeout time.Duration
	// CertManager says whether the cert-manager Certificate kind is served:
	// then a Certificate's new revision (a renewal) wakes the controller.
	CertManager bool

	// reloads counts the looks that found a node behind the TLS Secret's
	// certificate.
	reloads reloadTracker
	// states are the clusters' last states, for valkey_webhook_clusters.
	states stateTracker
}

// Reconcile looks at one StatefulSet's cluster and takes the next step.
func (r *LifecycleReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	logger := log.FromContext(ctx)
	sts := &appsv1.StatefulSet{}
	if err := r.Client.Get(ctx, req.NamespacedName, sts); err != nil {
		if apierrors.IsNotFound(err) {
			r.reloads.forget(req.NamespacedName)
			r.states.forget(req.NamespacedName)
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !sts.DeletionTimestamp.IsZero() || !defaults.IsLabeled(sts) {
		r.reloads.forget(req.NamespacedName)
		r.states.forget(req.NamespacedName)
		return reconcile.Result{}, nil
	}
	p, errs := config.Effective(r.Policy, sts.Annotations, field.NewPath("metadata", "annotations"))
	if len(errs) > 0 {
		return reconcile.Result{}, nil // the companion controller reports them
	}

	pods, nodes, waiting, err := podcluster.List(ctx, sts, &p, r.Client, r.APIReader)
	if err != nil {
		return reconcile.Result{}, err
	}
	if waiting != "" {
		logger.V(1).Info("waiting for the pods", "reason", waiting)
		r.observeState(sts, "pending", waiting, nil)
		return reconcile.Result{RequeueAfter: waitInterval}, nil
	}
	opts, waiting, err := podcluster.Options(ctx, r.APIReader, sts, &p, r.Timeout)
	if err != nil {
		return reconcile.Result{}, err
	}
	if waiting != "" {
		logger.Info("waiting for a Secret", "reason", waiting)
		r.observeState(sts, "pending", waiting, nil)
		return reconcile.Result{RequeueAfter: waitInterval}, nil
	}

	asking := opts
	asking.Timeout = statusTimeout
	report, err := cluster.Status(ctx, nodes, asking)
	if err != nil {
		return reconcile.Result{}, err
	}
	next, why := nextStep(report)
	r.observeState(sts, stepStates[next], why, &report)
	logger.V(1).Info("cluster status", "state", report.State, "slots", report.SlotsCovered, "next", next.String(), "why", why)
	switch next {
	case stepNone:
		again := okInterval
		if suspects(report) {
			// A node the cluster does not agree is down yet (fail?) may be the
			// node of a pod scaled away, to forget once it is flagged fail.
			again = waitInterval
		}
		if p.TLSEnabled() {
			// A renewed certificate is loaded in place, node by node, as
			// the kubelet updates each pod's mounted Secret.
			soon, err := r.reloadTLS(ctx, sts, &p, nodes, asking)
			if err != nil {
				return reconcile.Result{}, err
			}
			if soon > 0 {
				again = min(again, soon)
			}
		}
		return reconcile.Result{RequeueAfter: again}, nil
	case stepWait:
		logger.Info("cluster not ok; waiting", "why", why)
		return reconcile.Result{RequeueAfter: waitInterval}, nil
	case stepInit, stepJoin:
		if settling := rolling(sts); next == stepInit && settling != "" {
			// Forming a cluster over pods about to be replaced only fails
			// half-way. Heal and join go on: a roll waits for ready pods, and
			// a cluster that needs healing has none.
			logger.Info("waiting for the pods to settle before init", "reason", settling)
			return reconcile.Result{RequeueAfter: waitInterval}, nil
		}
		// Only placing replicas needs the zones: read the Kubernetes nodes then.
		zones, err := podcluster.Zones(ctx, r.APIReader, pods)
		if err != nil {
			return reconcile.Result{}, err
		}
		for i := range nodes {
			nodes[i].Zone = zones[nodes[i].Host]
		}
		if next == stepInit {
			return r.act(ctx, sts, "init", why, func() (cluster.Result, error) { return cluster.Init(ctx, nodes, opts) })
		}
		return r.act(ctx, sts, "join", why, func() (cluster.Result, error) { return cluster.Join(ctx, nodes, opts) })
	case stepForget:
		return r.act(ctx, sts, "forget", why, func() (cluster.Result, error) { return cluster.Forget(ctx, nodes, opts) })
	default:
		return r.act(ctx, sts, "heal", why, func() (cluster.Result, error) { return cluster.Heal(ctx, nodes, opts) })
	}
}

// observeState records the cluster's state for valkey_webhook_clusters and, when
// it changed since the last look, says so in an Event on the StatefulSet, where
// kubectl describe shows it: from what, to what, why, and the nodes' counts. The
// first look since this replica leads has nothing to compare with and is not
// an Event.
func (r *LifecycleReconciler) observeState(sts *appsv1.StatefulSet, state, why string, report *cluster.Report) {
	was, known := r.states.set(client.ObjectKeyFromObject(sts), state)
	if !known || was == state {
		return
	}
	kind := corev1.EventTypeNormal
	if state == "not_ok" || state == "healing" {
		kind = corev1.EventTypeWarning
	}
	msg := fmt.Sprintf("cluster %s -> %s: %s", was, state, why)
	if report != nil {
		msg += fmt.Sprintf("; %d masters, %d replicas, %d of %d slots served", report.Masters, report.Replicas, report.SlotsCovered, cluster.SlotCount)
	}
	r.Recorder.Eventf(sts, nil, kind, stateReasons[state], "Observe", "%s", msg)
}

// stateReasons are the Event reasons of the states of clusterStates.
var stateReasons = map[string]string{
	"ok": ReasonClusterOK, "not_ok": ReasonClusterNotOK, "pending": ReasonClusterPending, "forming": ReasonClusterForming,
	"healing": ReasonClusterHealing, "joining": ReasonClusterJoining, "forgetting": ReasonClusterForgetting,
}

// refusedReasons are the Event reasons of a refused operation.
var refusedReasons = map[string]string{"init": ReasonInitRefused, "heal": ReasonHealRefused, "join": ReasonJoinRefused, "forget": ReasonForgetRefused}

// act runs Init, Heal, Join or Forget and records what happened as an Event.
func (r *LifecycleReconciler) act(ctx context.Context, sts *appsv1.StatefulSet, op, why string, run func() (cluster.Result, error)) (reconcile.Result, error) {
	logger := log.FromContext(ctx)
	logger.Info("running cluster "+op, "why", why)
	start := time.Now()
	res, err := run()
	elapsed := time.Since(start)
	took := elapsed.Round(100 * time.Millisecond)
	var refusal *cluster.Refusal
	switch {
	case errors.As(err, &refusal):
		countAction(op, "refused", elapsed)
		r.Recorder.Eventf(sts, nil, corev1.EventTypeWarning, refusedReasons[op], op, "%v", err)
		return reconcile.Result{RequeueAfter: refusedInterval}, nil
	case err != nil:
		countAction(op, "error", elapsed)
		r.Recorder.Eventf(sts, nil, corev1.EventTypeWarning, ReasonLifecycleError, op, "cluster %s failed after %s: %v", op, took, err)
		return reconcile.Result{RequeueAfter: waitInterval}, nil
	case !res.Changed:
		countAction(op, "unchanged", elapsed)
		return reconcile.Result{RequeueAfter: waitInterval}, nil
	}
	countAction(op, "changed", elapsed)
	st := res.Status
	switch op {
	case "init":
		r.Recorder.Eventf(sts, nil, corev1.EventTypeNormal, ReasonClusterFormed, op,
			"cluster formed in %s: %d masters, %d replicas, %d slots served", took, st.Masters, st.Replicas, st.SlotsCovered)
	case "forget":
		r.Recorder.Eventf(sts, nil, corev1.EventTypeNormal, ReasonNodesForgotten, op,
			"forgot %d departed node(s) on every node (flagged fail, serving no slot, no pod): %s", len(res.Forgotten), strings.Join(res.Forgotten, ", "))
	case "join":
		r.Recorder.Eventf(sts, nil, corev1.EventTypeNormal, ReasonClusterJoined, op,
			"new pods joined as replicas in %s (%s): %d masters, %d replicas, %d slots served", took, why, st.Masters, st.Replicas, st.SlotsCovered)
	default:
		r.Recorder.Eventf(sts, nil, corev1.EventTypeNormal, ReasonClusterHealed, op,
			"cluster healed in %s (%s): %d masters, %d replicas, %d slots served", took, why, st.Masters, st.Replicas, st.SlotsCovered)
	}
	for _, w := range res.Warnings {
		logger.Info("cluster "+op+" warning", "warning", w)
	}
	return reconcile.Result{RequeueAfter: waitInterval}, nil
}

// SetupWithManager watches labeled StatefulSets and the pods they own and, with
// cert-manager, the new revisions of the Certificates they own: a renewal is
// loaded from then on, not at the next look at rest. A TLS Secret of the
// user's own (tls.secretName) is not watched (no Secret is): its renewal is
// seen at the next look, within okInterval.
func (r *LifecycleReconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		Named("lifecycle").
		For(&appsv1.StatefulSet{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			sts, ok := o.(*appsv1.StatefulSet)
			return ok && defaults.IsLabeled(sts)
		}), inManagedNamespace(r.ControllerNamespace))).
		Watches(&corev1.Pod{}, handler.EnqueueRequestForOwner(mgr.GetScheme(), mgr.GetRESTMapper(), &appsv1.StatefulSet{}, handler.OnlyControllerOwner()))
	if r.CertManager {
		b = b.Owns(&cmapi.Certificate{}, builder.WithPredicates(certificateIssued()))
	}
	return b.WithOptions(crcontroller.Options{MaxConcurrentReconciles: 4}).Complete(r)
}
