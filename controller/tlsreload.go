package controller

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"slices"
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
//
// The Normal Event is recorded once per renewal, when every node serves it:
// client-go's event recorder folds Events of the same reason on the same object
// within 6 minutes into a series that keeps the first one's note, so an Event at
// each look that reloads some pods would show only the first.
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
	look := r.reloads.look(key, want, rep, time.Now())
	v := reloadVerdict(rep, look)
	if len(rep.behind) > 0 {
		log.FromContext(ctx).Info("not every node serves the TLS Secret's certificate yet; asking again",
			"secret", secret, "serial", serialOf(want), "reloaded", look.reloaded, "behind", rep.behind, "look", look.attempts)
	}
	if v.reloaded {
		r.Recorder.Eventf(sts, nil, corev1.EventTypeNormal, ReasonCertificateReloaded, "ReloadTLS", "%s", reloadedNote(look, secret, want, len(nodes)))
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
	// reloaded asks for the Normal Event: every node serves the certificate,
	// and this controller loaded it on some.
	reloaded bool
}

// reloadVerdict decides, from one look and the looks before it at the same
// wanted certificate, how soon to look again and what to record. A certificate
// that does not fit a node is warned about at once, and only looked at again at
// rest: the Secret must change. A node behind is asked again every
// reloadInterval, warned about at the reloadPatience-th look in a row, and asked
// at rest after that. Once every node serves the certificate, the nodes loaded
// meanwhile are recorded.
func reloadVerdict(rep reloadReport, look reloadLook) verdict {
	switch {
	case len(rep.refused) > 0:
		return verdict{warn: look.attempts == 1}
	case len(rep.behind) == 0:
		return verdict{reloaded: len(look.reloaded) > 0}
	case look.attempts < reloadPatience:
		return verdict{again: reloadInterval}
	default:
		return verdict{warn: look.attempts == reloadPatience}
	}
}

func reloadedNote(look reloadLook, secret string, want *x509.Certificate, nodes int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "loaded the certificate of Secret %s (serial %s, valid until %s) in place on %d node(s), %s, with CONFIG SET: no pod restarted; all %d nodes serve it",
		secret, serialOf(want), want.NotAfter.UTC().Format(time.RFC3339), len(look.reloaded), strings.Join(look.reloaded, ", "), nodes)
	if look.attempts > 0 {
		fmt.Fprintf(&b, " (%d look(s) over %s found nodes whose mounted Secret the kubelet had not updated yet)", look.attempts, look.since.Round(time.Second))
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

// reloadTracker remembers, per StatefulSet, the looks at one wanted certificate
// until every node serves it: how many in a row found a node behind, and which
// pods were loaded. It lives in memory: a restarted or newly elected controller
// counts again from zero.
type reloadTracker struct {
	mu      sync.Mutex
	pending map[types.NamespacedName]*reloadLook
}

// reloadLook is what the looks at one StatefulSet's nodes for one wanted
// certificate found so far.
type reloadLook struct {
	raw []byte
	// attempts counts the looks that found a node behind (or the certificate
	// refused), this one included; first is when the first of them was.
	attempts int
	first    time.Time
	since    time.Duration
	// reloaded are the pods these looks made serve the certificate, in order.
	reloaded []string
}

// look records one look at key's nodes for want, and returns what the looks
// at want found so far, this one included. Once no node is behind, key is
// forgotten: the next look starts afresh.
func (t *reloadTracker) look(key types.NamespacedName, want *x509.Certificate, rep reloadReport, now time.Time) reloadLook {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pending == nil {
		t.pending = map[types.NamespacedName]*reloadLook{}
	}
	l := t.pending[key]
	if l == nil || !bytes.Equal(l.raw, want.Raw) {
		l = &reloadLook{raw: want.Raw}
		t.pending[key] = l
	}
	for _, pod := range rep.reloaded {
		if !slices.Contains(l.reloaded, pod) {
			l.reloaded = append(l.reloaded, pod)
		}
	}
	if len(rep.behind) == 0 && len(rep.refused) == 0 {
		delete(t.pending, key)
		return *l
	}
	if l.attempts == 0 {
		l.first = now
	}
	l.attempts++
	l.since = now.Sub(l.first)
	out := *l
	out.reloaded = slices.Clone(l.reloaded)
	return out
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
