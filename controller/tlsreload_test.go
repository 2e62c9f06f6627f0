package controller

import (
	"crypto/x509"
	"math/big"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/valkey-webhook/valkey-webhook/cluster"
)

func cert(serial int64, notAfter time.Time) *x509.Certificate {
	return &x509.Certificate{Raw: []byte{byte(serial)}, SerialNumber: big.NewInt(serial), NotAfter: notAfter}
}

func TestSummarizeReload(t *testing.T) {
	until := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	old, want := cert(0x0a, until), cert(0x03e9, until)
	pods := []string{"cache-0", "cache-1", "cache-2", "cache-3", "cache-4", "cache-5"}
	res := []cluster.TLSReload{
		{Before: old, After: want, Sent: true}, // reloaded now
		{Before: want, After: want},            // served it already
		{Before: old, After: old, Sent: true},  // its files are still old
		{Before: old, After: old, Error: "node x: CONFIG SET ...: ERR Unable to update TLS configuration"},
		{Error: "node y: not reachable (connection refused)"}, // not asked
		{Before: old, After: old, Refused: "the certificate does not name cache-5.cache-headless.team-a.svc.cluster.local"},
	}
	got := summarizeReload(pods, res, want)
	expect := reloadReport{
		reloaded: []string{"cache-0"},
		serving:  2,
		behind: []string{
			"cache-2 (serial 0A)",
			"cache-3 (serial 0A; node x: CONFIG SET ...: ERR Unable to update TLS configuration)",
			"cache-4 (node y: not reachable (connection refused))",
		},
		refused: []string{"cache-5: the certificate does not name cache-5.cache-headless.team-a.svc.cluster.local"},
	}
	if diff := cmp.Diff(expect, got, cmp.AllowUnexported(reloadReport{})); diff != "" {
		t.Errorf("summarizeReload (-want +got):\n%s", diff)
	}
}

func TestReloadVerdict(t *testing.T) {
	behind := reloadReport{serving: 3, behind: []string{"cache-3 (serial 0A)"}}
	refused := reloadReport{refused: []string{"cache-0: the certificate expired at ..."}}
	for _, tt := range []struct {
		name string
		rep  reloadReport
		look reloadLook
		want verdict
	}{
		{"every node serves it, nothing loaded: at rest, no Event", reloadReport{serving: 6}, reloadLook{}, verdict{}},
		{"every node serves it, some loaded by these looks: the Event", reloadReport{serving: 6}, reloadLook{attempts: 3, reloaded: []string{"cache-0"}}, verdict{reloaded: true}},
		{"a node behind: soon again, no Event yet", behind, reloadLook{attempts: 1, reloaded: []string{"cache-0"}}, verdict{again: reloadInterval}},
		{"still behind, within patience", behind, reloadLook{attempts: reloadPatience - 1}, verdict{again: reloadInterval}},
		{"behind at the last look of patience: a warning, then at rest", behind, reloadLook{attempts: reloadPatience}, verdict{warn: true}},
		{"behind past patience: at rest, warned already", behind, reloadLook{attempts: reloadPatience + 1}, verdict{}},
		{"a certificate that does not fit: a warning at once, at rest", refused, reloadLook{attempts: 1}, verdict{warn: true}},
		{"still does not fit: warned already", refused, reloadLook{attempts: 2}, verdict{}},
		{"does not fit some, others behind: the Secret must change first", reloadReport{refused: refused.refused, behind: behind.behind}, reloadLook{attempts: 1}, verdict{warn: true}},
	} {
		if got := reloadVerdict(tt.rep, tt.look); got != tt.want {
			t.Errorf("%s: reloadVerdict = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestReloadTracker(t *testing.T) {
	var tr reloadTracker
	key := types.NamespacedName{Namespace: "team-a", Name: "cache"}
	other := types.NamespacedName{Namespace: "team-a", Name: "other"}
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	a, b := cert(1, t0), cert(2, t0)
	behind := func(reloaded ...string) reloadReport {
		return reloadReport{reloaded: reloaded, behind: []string{"cache-5 (serial 01)"}}
	}
	done := func(reloaded ...string) reloadReport { return reloadReport{reloaded: reloaded, serving: 6} }
	steps := []struct {
		key    types.NamespacedName
		want   *x509.Certificate
		rep    reloadReport
		at     time.Duration
		expect reloadLook
	}{
		{key, a, done(), 0, reloadLook{raw: a.Raw}},
		{key, a, behind(), 0, reloadLook{raw: a.Raw, attempts: 1, first: t0}},
		{key, a, behind("cache-0", "cache-1"), 10 * time.Second, reloadLook{raw: a.Raw, attempts: 2, first: t0, since: 10 * time.Second, reloaded: []string{"cache-0", "cache-1"}}},
		{other, a, behind(), 15 * time.Second, reloadLook{raw: a.Raw, attempts: 1, first: t0.Add(15 * time.Second)}},
		{key, a, behind("cache-1", "cache-2"), 20 * time.Second, reloadLook{raw: a.Raw, attempts: 3, first: t0, since: 20 * time.Second, reloaded: []string{"cache-0", "cache-1", "cache-2"}}},
		{key, a, done("cache-5"), 30 * time.Second, reloadLook{raw: a.Raw, attempts: 3, first: t0, since: 20 * time.Second, reloaded: []string{"cache-0", "cache-1", "cache-2", "cache-5"}}},
		{key, a, done(), 40 * time.Second, reloadLook{raw: a.Raw}},
		{key, a, behind("cache-0"), 50 * time.Second, reloadLook{raw: a.Raw, attempts: 1, first: t0.Add(50 * time.Second), reloaded: []string{"cache-0"}}},
		{key, b, behind(), 60 * time.Second, reloadLook{raw: b.Raw, attempts: 1, first: t0.Add(60 * time.Second)}},
		{key, b, done("cache-3"), 70 * time.Second, reloadLook{raw: b.Raw, attempts: 1, first: t0.Add(60 * time.Second), reloaded: []string{"cache-3"}}},
		{other, a, behind(), 75 * time.Second, reloadLook{raw: a.Raw, attempts: 2, first: t0.Add(15 * time.Second), since: time.Minute}},
	}
	for i, s := range steps {
		got := tr.look(s.key, s.want, s.rep, t0.Add(s.at))
		if diff := cmp.Diff(s.expect, got, cmp.AllowUnexported(reloadLook{})); diff != "" {
			t.Errorf("step %d (-want +got):\n%s", i, diff)
		}
	}
	tr.forget(other)
	if got := tr.look(other, a, behind(), t0.Add(2*time.Minute)); got.attempts != 1 {
		t.Errorf("after forget: attempts = %d, want 1", got.attempts)
	}
}

func TestReloadNotes(t *testing.T) {
	until := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	want := cert(0x03e9, until)
	staggered := reloadLook{attempts: 3, since: 20*time.Second + 300*time.Millisecond, reloaded: []string{"cache-0", "cache-1", "cache-2", "cache-3"}}
	if got, expect := reloadedNote(staggered, "team-a/cache-tls", want, 4),
		"loaded the certificate of Secret team-a/cache-tls (serial 03E9, valid until 2026-09-01T00:00:00Z) in place on 4 node(s), cache-0, cache-1, cache-2, cache-3, with CONFIG SET: no pod restarted; all 4 nodes serve it "+
			"(3 look(s) over 20s found nodes whose mounted Secret the kubelet had not updated yet)"; got != expect {
		t.Errorf("reloadedNote =\n%s\nwant\n%s", got, expect)
	}
	atOnce := reloadLook{reloaded: []string{"cache-3"}}
	if got, expect := reloadedNote(atOnce, "team-a/cache-tls", want, 4),
		"loaded the certificate of Secret team-a/cache-tls (serial 03E9, valid until 2026-09-01T00:00:00Z) in place on 1 node(s), cache-3, with CONFIG SET: no pod restarted; all 4 nodes serve it"; got != expect {
		t.Errorf("reloadedNote =\n%s\nwant\n%s", got, expect)
	}
	look := reloadLook{attempts: reloadPatience, since: 290*time.Second + 400*time.Millisecond}
	if got, expect := notReloadedNote(reloadReport{behind: []string{"cache-3 (serial 0A)", "cache-4 (serial 0A)"}}, "team-a/cache-tls", want, "team-a", look),
		"after 30 looks over 4m50s, still serving another certificate than Secret team-a/cache-tls (serial 03E9): cache-3 (serial 0A), cache-4 (serial 0A). "+
			"Either the kubelet has not written the Secret into their volume /etc/valkey/tls (it does within about 2 minutes, never for a subPath mount), or Valkey refused the files (its log says why). "+
			"Compare: kubectl -n team-a exec cache-3 -c valkey -- cat /etc/valkey/tls/tls.crt; deleting such a pod starts it with the Secret's certificate. Asking again every 2m0s"; got != expect {
		t.Errorf("notReloadedNote =\n%s\nwant\n%s", got, expect)
	}
	if got, expect := notReloadedNote(reloadReport{refused: []string{"cache-0: the certificate does not name cache-0.cache-headless.team-a.svc.cluster.local"}}, "team-a/cache-tls", want, "team-a", reloadLook{attempts: 1}),
		"the certificate of Secret team-a/cache-tls (serial 03E9) is not loaded, the nodes keep the one they serve: cache-0: the certificate does not name cache-0.cache-headless.team-a.svc.cluster.local. "+
			"Fix tls.crt of the Secret: it must name every pod's DNS name (<pod>.<headless Service>.<namespace>.svc.<tls.clusterDomain>, or a wildcard of it) and be valid now"; got != expect {
		t.Errorf("notReloadedNote =\n%s\nwant\n%s", got, expect)
	}
}

func TestCertificateIssued(t *testing.T) {
	at := func(revision *int) *cmapi.Certificate {
		c := &cmapi.Certificate{}
		c.Status.Revision = revision
		return c
	}
	p := certificateIssued()
	for _, tt := range []struct {
		name     string
		old, new *cmapi.Certificate
		want     bool
	}{
		{"first issuance", at(nil), at(ptr.To(1)), true},
		{"a renewal", at(ptr.To(1)), at(ptr.To(2)), true},
		{"a spec or condition change, same revision", at(ptr.To(2)), at(ptr.To(2)), false},
		{"nothing issued yet", at(nil), at(nil), false},
	} {
		if got := p.Update(event.UpdateEvent{ObjectOld: tt.old, ObjectNew: tt.new}); got != tt.want {
			t.Errorf("%s: Update = %t, want %t", tt.name, got, tt.want)
		}
	}
	if p.Create(event.CreateEvent{Object: at(ptr.To(1))}) || p.Delete(event.DeleteEvent{Object: at(ptr.To(1))}) {
		t.Error("a Certificate created or deleted wakes the lifecycle controller; only a new revision should")
	}
}
