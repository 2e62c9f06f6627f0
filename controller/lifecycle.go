package controller

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
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
)

// Event reasons of the lifecycle controller, on the StatefulSet.
const (
	ReasonClusterFormed  = "ClusterFormed"
	ReasonClusterHealed  = "ClusterHealed"
	ReasonInitRefused    = "ClusterInitRefused"
	ReasonHealRefused    = "ClusterHealRefused"
	ReasonLifecycleError = "ClusterLifecycleFailed"
)

// How soon the lifecycle controller looks at a cluster again: while it waits for
// pods or nodes, after it refused or failed, and once the cluster is ok (pod
// changes wake it sooner).
const (
	waitInterval    = 5 * time.Second
	refusedInterval = time.Minute
	okInterval      = 2 * time.Minute
)

// LifecycleReconciler forms the Valkey cluster of every labeled StatefulSet once
// all its pods run, and heals it when the pods came back on new IPs and the nodes
// know each other by stale addresses. Each action is an Event on the StatefulSet.
// It never forms a cluster over nodes that hold slots or keys (cluster.Init
// refuses), and never forgets a node.
type LifecycleReconciler struct {
	// Client reads StatefulSets and Pods from the cache.
	Client client.Client
	// APIReader reads the auth and TLS Secrets, which need not be labeled, and
	// the zones of Kubernetes nodes, past the cache.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Policy    config.Policy
	// Timeout bounds one Status, Init or Heal; zero: cluster.DefaultTimeout.
	Timeout time.Duration
}

// Reconcile looks at one StatefulSet's cluster and takes the next step.
func (r *LifecycleReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	logger := log.FromContext(ctx)
	sts := &appsv1.StatefulSet{}
	if err := r.Client.Get(ctx, req.NamespacedName, sts); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !sts.DeletionTimestamp.IsZero() || !defaults.IsLabeled(sts) {
		return reconcile.Result{}, nil
	}
	p, errs := config.Effective(r.Policy, sts.Annotations, field.NewPath("metadata", "annotations"))
	if len(errs) > 0 {
		return reconcile.Result{}, nil // the companion controller reports them
	}

	selector, err := metav1.LabelSelectorAsSelector(sts.Spec.Selector)
	if err != nil {
		return reconcile.Result{}, nil // the API server does not store such a selector
	}
	pods := &corev1.PodList{}
	if err := r.Client.List(ctx, pods, client.InNamespace(sts.Namespace), client.MatchingLabelsSelector{Selector: selector}); err != nil {
		return reconcile.Result{}, err
	}
	zones, err := r.zones(ctx, pods.Items)
	if err != nil {
		return reconcile.Result{}, err
	}
	nodes, waiting := clusterNodes(sts, &p, pods.Items, zones)
	if waiting != "" {
		logger.V(1).Info("waiting for the pods", "reason", waiting)
		return reconcile.Result{RequeueAfter: waitInterval}, nil
	}
	opts, waiting, err := r.options(ctx, sts, &p)
	if err != nil {
		return reconcile.Result{}, err
	}
	if waiting != "" {
		logger.Info("waiting for a Secret", "reason", waiting)
		return reconcile.Result{RequeueAfter: waitInterval}, nil
	}

	report, err := cluster.Status(ctx, nodes, opts)
	if err != nil {
		return reconcile.Result{}, err
	}
	next, why := nextStep(report)
	logger.V(1).Info("cluster status", "state", report.State, "slots", report.SlotsCovered, "next", next.String(), "why", why)
	switch next {
	case stepNone:
		return reconcile.Result{RequeueAfter: okInterval}, nil
	case stepWait:
		logger.Info("cluster not ok; waiting", "why", why)
		return reconcile.Result{RequeueAfter: waitInterval}, nil
	case stepInit:
		return r.act(ctx, sts, "init", why, func() (cluster.Result, error) { return cluster.Init(ctx, nodes, opts) })
	default:
		return r.act(ctx, sts, "heal", why, func() (cluster.Result, error) { return cluster.Heal(ctx, nodes, opts) })
	}
}

// act runs Init or Heal and records what happened as an Event.
func (r *LifecycleReconciler) act(ctx context.Context, sts *appsv1.StatefulSet, op, why string, run func() (cluster.Result, error)) (reconcile.Result, error) {
	logger := log.FromContext(ctx)
	logger.Info("running cluster "+op, "why", why)
	start := time.Now()
	res, err := run()
	took := time.Since(start).Round(100 * time.Millisecond)
	var refusal *cluster.Refusal
	switch {
	case errors.As(err, &refusal):
		reason := ReasonInitRefused
		if op == "heal" {
			reason = ReasonHealRefused
		}
		r.Recorder.Eventf(sts, nil, corev1.EventTypeWarning, reason, op, "%v", err)
		return reconcile.Result{RequeueAfter: refusedInterval}, nil
	case err != nil:
		r.Recorder.Eventf(sts, nil, corev1.EventTypeWarning, ReasonLifecycleError, op, "cluster %s failed after %s: %v", op, took, err)
		return reconcile.Result{RequeueAfter: waitInterval}, nil
	case !res.Changed:
		return reconcile.Result{RequeueAfter: waitInterval}, nil
	}
	st := res.Status
	if op == "init" {
		r.Recorder.Eventf(sts, nil, corev1.EventTypeNormal, ReasonClusterFormed, op,
			"cluster formed in %s: %d masters, %d replicas, %d slots served", took, st.Masters, st.Replicas, st.SlotsCovered)
	} else {
		r.Recorder.Eventf(sts, nil, corev1.EventTypeNormal, ReasonClusterHealed, op,
			"cluster healed in %s (%s): %d masters, %d replicas, %d slots served", took, why, st.Masters, st.Replicas, st.SlotsCovered)
	}
	for _, w := range res.Warnings {
		logger.Info("cluster "+op+" warning", "warning", w)
	}
	return reconcile.Result{RequeueAfter: waitInterval}, nil
}

// zones maps the Kubernetes nodes the pods run on to their zone label. A node
// that cannot be read has no zone: placement then falls back to node names.
func (r *LifecycleReconciler) zones(ctx context.Context, pods []corev1.Pod) (map[string]string, error) {
	zones := map[string]string{}
	for _, pod := range pods {
		name := pod.Spec.NodeName
		if name == "" {
			continue
		}
		if _, done := zones[name]; done {
			continue
		}
		node := &metav1.PartialObjectMetadata{}
		node.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Node"))
		err := r.APIReader.Get(ctx, types.NamespacedName{Name: name}, node)
		switch {
		case apierrors.IsNotFound(err):
			zones[name] = ""
		case err != nil:
			return nil, fmt.Errorf("reading node %s for its zone: %w", name, err)
		default:
			zones[name] = node.Labels[ZoneLabel]
		}
	}
	return zones, nil
}

// options reads the password and TLS material the StatefulSet's pods use. A
// Secret not there yet (the companion controller or cert-manager is about to make
// it) is a reason to wait, not an error.
func (r *LifecycleReconciler) options(ctx context.Context, sts *appsv1.StatefulSet, p *config.Policy) (cluster.Options, string, error) {
	opts := cluster.Options{ReplicasPerMaster: p.Cluster.ReplicasPerMaster, Timeout: r.Timeout}
	if p.Auth.Enabled {
		name := defaults.AuthSecretName(sts, p)
		data, waiting, err := r.secret(ctx, sts.Namespace, name, defaults.PasswordKey)
		if err != nil || waiting != "" {
			return opts, waiting, err
		}
		opts.Password = string(data[defaults.PasswordKey])
	}
	if p.TLSEnabled() {
		name := defaults.TLSSecretName(sts, p)
		data, waiting, err := r.secret(ctx, sts.Namespace, name, "ca.crt", corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
		if err != nil || waiting != "" {
			return opts, waiting, err
		}
		cfg, err := clientTLS(data)
		if err != nil {
			return opts, fmt.Sprintf("Secret %s/%s: %v", sts.Namespace, name, err), nil
		}
		opts.TLS = cfg
	}
	return opts, "", nil
}

// secret reads a Secret past the cache and checks it has the keys.
func (r *LifecycleReconciler) secret(ctx context.Context, namespace, name string, keys ...string) (map[string][]byte, string, error) {
	s := &corev1.Secret{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, s)
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Sprintf("Secret %s/%s does not exist yet", namespace, name), nil
	case err != nil:
		return nil, "", fmt.Errorf("reading Secret %s/%s: %w", namespace, name, err)
	}
	for _, k := range keys {
		if len(s.Data[k]) == 0 {
			return nil, fmt.Sprintf("Secret %s/%s has no %s yet", namespace, name, k), nil
		}
	}
	return s.Data, "", nil
}

// clientTLS is the TLS configuration of the controller's connections to the
// nodes: the cluster's CA, and the pods' own certificate as the client
// certificate (it is issued for client authentication too, for the cluster bus).
func clientTLS(data map[string][]byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data["ca.crt"]) {
		return nil, errors.New("ca.crt holds no PEM certificate")
	}
	cert, err := tls.X509KeyPair(data[corev1.TLSCertKey], data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return nil, fmt.Errorf("tls.crt and tls.key: %w", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// SetupWithManager watches labeled StatefulSets and the pods they own.
func (r *LifecycleReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("lifecycle").
		For(&appsv1.StatefulSet{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			sts, ok := o.(*appsv1.StatefulSet)
			return ok && defaults.IsLabeled(sts)
		}))).
		Watches(&corev1.Pod{}, handler.EnqueueRequestForOwner(mgr.GetScheme(), mgr.GetRESTMapper(), &appsv1.StatefulSet{}, handler.OnlyControllerOwner())).
		WithOptions(crcontroller.Options{MaxConcurrentReconciles: 4}).
		Complete(r)
}
