package controller

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"sync"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/valkey-webhook/valkey-webhook/cluster"
	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// How the lifecycle controller waits for every node to serve a renewed
// certificate. The kubelet writes a changed Secret into the pods' volume some
// time after the change, pod by pod: at its next sync of the pod, up to its sync
// period (1 minute by default) plus the time the change takes to reach it. A node
// whose files are still old goes on serving the old certificate, so the
// controller asks again every reloadInterval; after reloadPatience looks in a row
// (about 5 minutes, twice what the kubelet usually takes) that still find a node
// behind, it records a Warning and goes back to looking every okInterval.
const (
	reloadInterval = 10 * time.Second
	reloadPatience = 30
)

// reloadTLS makes every node serve the certificate of the TLS Secret (the leaf
// of opts' client certificate, which podcluster.Options read from tls.crt),
// loading it in place: cluster.ReloadTLS. It records what it did as Events, and
// returns how soon to look again while a node is behind (0: no sooner than at
// rest).
func (r *LifecycleReconciler) reloadTLS(ctx context.Context, sts *appsv1.StatefulSet, p *config.Policy, nodes []cluster.Node, opts cluster.Options) (time.Duration, error) {
	key := types.NamespacedName{Namespace: sts.Namespace, Name: sts.Name}
	want, err := secretLeaf(opts)
	if err != nil {
		return 0, err
	}
	res, err := cluster.ReloadTLS(ctx, nodes, opts, want)
	if err != nil {
		return 0, err
	}
	pods := make([]string, len(nodes))
	for i := range nodes {
		pods[i] = fmt.Sprintf("%s-%d", sts.Name, i) // podcluster.Nodes: one node per ordinal, in order
	}
	rep := summarizeReload(pods, res, want)
	secret := sts.Namespace + "/" + defaults.TLSSecretName(sts, p)
	look := r.reloads.look(key, want, len(rep.behind)+len(rep.refused) > 0, time.Now())
	v := reloadVerdict(rep, look.attempts)
	logger := log.FromContext(ctx)
	if len(rep.reloaded) > 0 {
		r.Recorder.Eventf(sts, nil, corev1.EventTypeNormal, ReasonCertificateReloaded, "ReloadTLS", "%s", reloadedNote(rep, secret, want, len(nodes)))
	}
	if len(rep.behind) > 0 {
		logger.Info("not every node serves the TLS Secret's certificate yet; asking again", "secret", secret, "serial", serialOf(want), "behind", rep.behind, "look", look.attempts)
	}
	if v.warn {
		r.Recorder.Eventf(sts, nil, corev1.EventTypeWarning, ReasonCertificateNotReloaded, "ReloadTLS", "%s", notReloadedNote(rep, secret, want, sts.Namespace, look))
	}
	return v.again, nil
}

// secretLeaf is the leaf of the TLS Secret's tls.crt, as podcluster.Options
// loaded it for the client certificate.
func secretLeaf(opts cluster.Options) (*x509.Certificate, error) {
	if opts.TLS == nil || len(opts.TLS.Certificates) == 0 || len(opts.TLS.Certificates[0].Certificate) == 0 {
		return nil, fmt.Errorf("the TLS options hold no certificate of the TLS Secret")
	}
	c := opts.TLS.Certificates[0]
	if c.Leaf != nil {
		return c.Leaf, nil
	}
	return x509.ParseCertificate(c.Certificate[0])
}

// reloadReport sums up one cluster.ReloadTLS over a StatefulSet's pods.
type reloadReport struct {
	// reloaded are the pods that serve the wanted certificate since this call's
	// CONFIG SET.
	reloaded []string
	// serving counts the pods that serve it now.
	serving int
	// behind are the pods that serve another certificate, or could not be
	// asked, each with what it serves or why.
	behind []string
	// refused are the pods the wanted certificate does not fit, with why.
	refused []string
}

// summarizeReload reads ReloadTLS's outcome, one per pod, in pod order.
func summarizeReload(pods []string, res []cluster.TLSReload, want *x509.Certificate) reloadReport {
	var rep reloadReport
	for i, r := range res {
		pod := pods[i]
		switch {
		case r.Serves(want):
			rep.serving++
			if r.Sent {
				rep.reloaded = append(rep.reloaded, pod)
			}
		case r.Refused != "":
			rep.refused = append(rep.refused, pod+": "+r.Refused)
		case r.Error != "" && r.After != nil:
			rep.behind = append(rep.behind, fmt.Sprintf("%s (serial %s; %s)", pod, serialOf(r.After), r.Error))
		case r.Error != "":
			rep.behind = append(rep.behind, fmt.Sprintf("%s (%s)", pod, r.Error))
		default:
			rep.behind = append(rep.behind, fmt.Sprintf("%s (serial %s)", pod, serialOf(r.After)))
		}
	}
	return rep
}

// verdict is what the controller does after one look.
type verdict struct {
	// again is how soon to look again; 0: at rest (okInterval).
	again time.Duration
	// warn asks for a Warning Event.
	warn bool
}

// reloadVerdict decides, from one look and how many looks in a row (this one
// included) found the same wanted certificate not served everywhere, how soon
// to look again and whether to warn. A certificate that does not fit a node is
// warned about at once, and only looked at again at rest: the Secret must
// change. A node behind is asked again every reloadInterval, warned about at
// the reloadPatience-th look, and asked at rest after that.
func reloadVerdict(rep reloadReport, attempts int) verdict {
	switch {
	case len(rep.refused) > 0:
		return verdict{warn: attempts == 1}
	case len(rep.behind) == 0:
		return verdict{}
	case attempts < reloadPatience:
		return verdict{again: reloadInterval}
	default:
		return verdict{warn: attempts == reloadPatience}
	}
}

func reloadedNote(rep reloadReport, secret string, want *x509.Certificate, nodes int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "loaded the certificate of Secret %s (serial %s, valid until %s) in place on %d node(s), %s, with CONFIG SET: no pod restarted; %d of %d nodes serve it",
		secret, serialOf(want), want.NotAfter.UTC().Format(time.RFC3339), len(rep.reloaded), strings.Join(rep.reloaded, ", "), rep.serving, nodes)
	if len(rep.behind) > 0 {
		fmt.Fprintf(&b, "; still serving another: %s (the kubelet has not updated their mounted Secret yet): asking again every %s", strings.Join(rep.behind, ", "), reloadInterval)
	}
	return b.String()
}

func notReloadedNote(rep reloadReport, secret string, want *x509.Certificate, namespace string, look reloadLook) string {
	if len(rep.refused) > 0 {
		return fmt.Sprintf("the certificate of Secret %s (serial %s) is not loaded, the nodes keep the one they serve: %s. Fix tls.crt of the Secret: it must name every pod's DNS name (<pod>.<headless Service>.<namespace>.svc.<tls.clusterDomain>, or a wildcard of it) and be valid now",
			secret, serialOf(want), strings.Join(rep.refused, "; "))
	}
	first, _, _ := strings.Cut(rep.behind[0], " ")
	return fmt.Sprintf("after %d looks over %s, still serving another certificate than Secret %s (serial %s): %s. Either the kubelet has not written the Secret into their volume %s (it does within about 2 minutes, never for a subPath mount), or Valkey refused the files (its log says why). Compare: kubectl -n %s exec %s -c %s -- cat %s/tls.crt; deleting such a pod starts it with the Secret's certificate. Asking again every %s",
		look.attempts, look.since.Round(time.Second), secret, serialOf(want), strings.Join(rep.behind, ", "),
		defaults.TLSDir, namespace, first, defaults.ValkeyContainer, defaults.TLSDir, okInterval)
}

// serialOf is a certificate's serial as `openssl x509 -noout -serial` prints it.
func serialOf(c *x509.Certificate) string {
	if c == nil || c.SerialNumber == nil {
		return "unknown"
	}
	return fmt.Sprintf("%X", c.SerialNumber.Bytes())
}

// reloadTracker counts, per StatefulSet, the looks in a row that found a
// certificate not served by every node. It lives in memory: a restarted or newly
// elected controller counts again from zero.
type reloadTracker struct {
	mu      sync.Mutex
	pending map[types.NamespacedName]*reloadLook
}

// reloadLook is how long one StatefulSet's nodes have been behind one wanted
// certificate.
type reloadLook struct {
	raw      []byte
	attempts int
	first    time.Time
	since    time.Duration
}

// look records one look at key's nodes for want: behind says whether some node
// does not serve it. It returns the count of looks in a row, this one included,
// that found it behind (0 when it is not).
func (t *reloadTracker) look(key types.NamespacedName, want *x509.Certificate, behind bool, now time.Time) reloadLook {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !behind {
		delete(t.pending, key)
		return reloadLook{}
	}
	if t.pending == nil {
		t.pending = map[types.NamespacedName]*reloadLook{}
	}
	l := t.pending[key]
	if l == nil || string(l.raw) != string(want.Raw) {
		l = &reloadLook{raw: want.Raw, first: now}
		t.pending[key] = l
	}
	l.attempts++
	l.since = now.Sub(l.first)
	return *l
}

// forget drops what is known of key.
func (t *reloadTracker) forget(key types.NamespacedName) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.pending, key)
}

// certificateIssued lets through an update of a Certificate whose status
// records a new revision: cert-manager has written the renewed Secret just
// before.
func certificateIssued() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			old, ok := e.ObjectOld.(*cmapi.Certificate)
			updated, ok2 := e.ObjectNew.(*cmapi.Certificate)
			return ok && ok2 && !ptr.Equal(old.Status.Revision, updated.Status.Revision)
		},
	}
}
