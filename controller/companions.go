// Package controller holds the reconcilers that run in `valkey-webhook serve`: the
// companion objects kept beside every labeled StatefulSet.
package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// FieldOwner is the server-side apply field manager of everything the controller
// writes.
const FieldOwner = "valkey-webhook"

// Event reasons, on the StatefulSet.
const (
	ReasonCreated           = "CompanionCreated"
	ReasonCorrected         = "CompanionCorrected"
	ReasonRemoved           = "CompanionRemoved"
	ReasonFailed            = "CompanionFailed"
	ReasonNameTaken         = "CompanionNameTaken"
	ReasonCertManager       = "CertManagerMissing"
	ReasonAuthSecret        = "AuthSecretIncomplete"
	ReasonInvalidOverrides  = "InvalidOverrides"
	ReasonUnmanaged         = "Unmanaged"
	ReasonRolling           = "RollingPods"
	ReasonRolloutWaiting    = "RolloutWaiting"
	ReasonRolloutStalled    = "RolloutStalled"
	ReasonRolloutAwaitingGo = "RolloutAwaitingGo"
	// ReasonRolloutNeedsRestart: a policy edit turns TLS or auth on or off,
	// which cannot roll one pod at a time (controller.transportHeld).
	ReasonRolloutNeedsRestart = "RolloutNeedsRestart"
)

// CompanionReconciler keeps the companion objects of every labeled StatefulSet in
// shape: ConfigMap, Services, PodDisruptionBudget, NetworkPolicy, the auth Secret and
// the cert-manager Certificate. It also keeps the pod template's config checksum
// equal to the hash of valkey.conf's settings, and the values the template holds
// for the policy's, so that a policy edit rolls the pods, in its turn.
type CompanionReconciler struct {
	// Client reads from the cache, which holds StatefulSets and, of the companion
	// kinds, only the objects labeled managed-by valkey-webhook.
	Client client.Client
	// APIReader reads past the cache, to see objects of a companion's name that the
	// controller does not manage.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Policy    config.Policy
	// CertManager says whether the cert-manager Certificate kind is served.
	CertManager bool
	// ControllerNamespace, when set, is where valkey-webhook runs (its lifecycle
	// controller and its scale guard): the NetworkPolicy admits its pods to the
	// client port. No StatefulSet of that namespace is acted on, nor of kube-system.
	ControllerNamespace string

	gateOnce sync.Once
	rollout  *rolloutGate
}

// Reconcile brings one StatefulSet's companions in line. Errors are returned, so
// that controller-runtime retries with exponential backoff.
func (r *CompanionReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	sts := &appsv1.StatefulSet{}
	if err := r.Client.Get(ctx, req.NamespacedName, sts); err != nil {
		if apierrors.IsNotFound(err) {
			r.gate().settled(req.NamespacedName)
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !sts.DeletionTimestamp.IsZero() {
		r.gate().settled(req.NamespacedName)
		return reconcile.Result{}, nil // the garbage collector takes the owned objects
	}
	if !defaults.IsLabeled(sts) {
		r.Recorder.Eventf(sts, nil, corev1.EventTypeNormal, ReasonUnmanaged, "StopManaging",
			"label %s=%s removed: valkey-webhook no longer manages this StatefulSet and leaves its companion objects in place",
			defaults.ClusterLabel, defaults.ClusterLabelEnabled)
		return reconcile.Result{}, nil
	}
	p, errs := config.Effective(r.Policy, sts.Annotations, field.NewPath("metadata", "annotations"))
	if len(errs) > 0 {
		// Admission denies these; an object stored before the policy changed can
		// still carry them. Nothing to retry until the object changes.
		r.Recorder.Eventf(sts, nil, corev1.EventTypeWarning, ReasonInvalidOverrides, "Reconcile",
			"companion objects not updated: %v", errs.ToAggregate())
		return reconcile.Result{}, nil
	}

	want := defaults.ValkeyConf(sts, &p)
	held, found, err := r.heldConfig(ctx, sts, &p)
	if err != nil {
		return reconcile.Result{}, r.failed(sts, "Read", defaults.ConfigMap(sts, &p), err)
	}
	// next is the StatefulSet with the pod template admission would store for
	// the policy now (keys: the policy keys of the template that changed).
	next, keys := defaults.Rehardened(sts, r.Policy, &p)
	kept := found && defaults.SameSettings(held, want)
	// A change of the settings under the pods (a template asking for want
	// already is an update of the user's, which admission rendered and which
	// rolls anyway), or of what the template holds for the policy: the policy
	// or this release changed them, and the cluster's turn comes from the
	// rollout gate, after its go where rollout.requireGo asks for one.
	rolls := found && !kept && !defaults.AsksFor(sts.Spec.Template, want) ||
		!equality.Semantic.DeepEqual(next.Spec.Template, sts.Spec.Template)
	// begins: the template patch below starts a roll the gate counts.
	conf, result, begins := want, reconcile.Result{}, rolls
	if kept {
		// A release that changed only a comment or the order of the rendering
		// rewrites nothing, and the text the pods started with stays to compare.
		// A template that does not ask for it yet is a roll the gate let start
		// whose checksum patch failed (a conflict): it is counted when it lands.
		conf, begins = held, begins || !defaults.AsksFor(sts.Spec.Template, held)
	}
	switch {
	case rolls && (r.transportHeld(sts, &p) || !r.hasGo(sts, &p, want) || !r.mayRoll(ctx, sts, &p)):
		// Its ConfigMap keeps the settings its pods run with, its template
		// what it holds, until its turn.
		next, keys, result, begins = sts.DeepCopy(), nil, reconcile.Result{RequeueAfter: rolloutPoll}, false
		if found {
			conf = held
		}
	case !rolls:
		r.gate().settled(req.NamespacedName)
	}
	var failed []error
	for _, c := range companions(sts, &p, conf, r.CertManager, r.ControllerNamespace) {
		var err error
		if c.Want != nil {
			err = r.apply(ctx, sts, c.Want)
		} else {
			err = r.removeOwned(ctx, sts, c.Absent)
		}
		if err != nil {
			failed = append(failed, err)
		}
	}
	if p.TLS.Issuer != "" && !r.CertManager {
		log.FromContext(ctx).Info("tls.issuer is set but the cert-manager CRDs are not installed; install cert-manager, then restart valkey-webhook", "statefulset", req.NamespacedName)
		r.Recorder.Eventf(sts, nil, corev1.EventTypeWarning, ReasonCertManager, "Reconcile",
			"tls.issuer %q is set but cert-manager's Certificate kind is not served by this cluster: install cert-manager and restart valkey-webhook, or set tls.secretName", p.TLS.Issuer)
	}
	if p.Auth.Enabled && p.Auth.ExistingSecret == "" {
		if err := r.ensureAuthSecret(ctx, sts, &p); err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		return reconcile.Result{}, errors.Join(failed...)
	}
	if err := r.syncTemplate(ctx, sts, next, conf, keys); err != nil {
		return reconcile.Result{}, err
	}
	if begins {
		r.gate().begin(req.NamespacedName, time.Now(), sts.Generation)
	}
	return result, nil
}

// heldConfig is the valkey.conf that the StatefulSet's own ConfigMap holds, if
// there is one.
func (r *CompanionReconciler) heldConfig(ctx context.Context, sts *appsv1.StatefulSet, p *config.Policy) (string, bool, error) {
	existing, found, err := r.current(ctx, defaults.ConfigMap(sts, p))
	if err != nil || !found || !metav1.IsControlledBy(existing, sts) {
		return "", false, err
	}
	return existing.(*corev1.ConfigMap).Data[defaults.ConfigKey], true, nil
}

// companions are defaults.Companions as this cluster serves them: no
// Certificate where cert-manager's kind is not served, and the NetworkPolicy
// admitting valkey-webhook's own pods when it knows their namespace.
func companions(sts *appsv1.StatefulSet, p *config.Policy, conf string, certManager bool, controllerNamespace string) []defaults.Companion {
	var out []defaults.Companion
	for _, c := range defaults.Companions(sts, p, conf) {
		if _, cert := c.Want.(*cmapi.Certificate); !certManager && cert {
			continue
		}
		if _, cert := c.Absent.(*cmapi.Certificate); !certManager && cert {
			continue
		}
		if np, ok := c.Want.(*networkingv1.NetworkPolicy); ok && controllerNamespace != "" {
			defaults.AdmitController(np, sts, p, controllerNamespace)
		}
		out = append(out, c)
	}
	return out
}

func named[T client.Object](obj T, sts *appsv1.StatefulSet, name string) T {
	obj.SetNamespace(sts.Namespace)
	obj.SetName(name)
	return obj
}

// SetupWithManager registers the reconciler: it watches StatefulSets (changes of
// spec, labels or annotations, not status) and the companion objects it owns. It
// watches no Secret (RBAC lets it get named Secrets only), and needs none: a
// renewed TLS certificate is the lifecycle controller's to load.
func (r *CompanionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		Named("companions").
		For(&appsv1.StatefulSet{}, builder.WithPredicates(
			predicate.Or(predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}, predicate.AnnotationChangedPredicate{}),
			managedOrJustUnlabeled(),
			inManagedNamespace(r.ControllerNamespace),
		)).
		Owns(&corev1.ConfigMap{}).
		Owns(&corev1.Service{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Owns(&networkingv1.NetworkPolicy{})
	if r.CertManager {
		b = b.Owns(&cmapi.Certificate{})
	}
	return b.Complete(r)
}

// managedOrJustUnlabeled lets through labeled StatefulSets, and an update that
// removes the label (once, so that the controller can say it stops managing it).
func managedOrJustUnlabeled() predicate.Predicate {
	labeled := func(o client.Object) bool {
		sts, ok := o.(*appsv1.StatefulSet)
		return ok && defaults.IsLabeled(sts)
	}
	return predicate.Funcs{
		CreateFunc:  func(e event.CreateEvent) bool { return labeled(e.Object) },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(e event.GenericEvent) bool { return labeled(e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return labeled(e.ObjectNew) || labeled(e.ObjectOld)
		},
	}
}

// inManagedNamespace leaves out kube-system and valkey-webhook's own namespace
// (own), which admission never touches either (defaults.UnmanagedNamespaces).
func inManagedNamespace(own string) predicate.Predicate {
	return predicate.NewPredicateFuncs(func(o client.Object) bool { return defaults.Managed(o.GetNamespace(), own) })
}

// failed records a failed step as an Event and returns the error for a retry.
func (r *CompanionReconciler) failed(sts *appsv1.StatefulSet, action string, obj client.Object, err error) error {
	err = fmt.Errorf("%s %s %s: %w", action, r.kindOf(obj), obj.GetName(), err)
	if !apierrors.IsConflict(err) {
		r.Recorder.Eventf(sts, obj, corev1.EventTypeWarning, ReasonFailed, action, "%v", err)
	}
	return err
}
