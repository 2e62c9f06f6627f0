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
		{Before: old, After: want, Sent: true},              // reloaded now
		{Before: want, After: want},                         // served it already
		{Before: old, After: old, Sent: true},               // its files are still old
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
		name     string
		rep      reloadReport
		attempts int
		want     verdict
	}{
		{"every node serves it: at rest", reloadReport{serving: 6}, 0, verdict{}},
		{"every node serves it, some just reloaded: at rest", reloadReport{serving: 6, reloaded: []string{"cache-0"}}, 0, verdict{}},
		{"a node behind: soon again, no warning", behind, 1, verdict{again: reloadInterval}},
		{"still behind, within patience", behind, reloadPatience - 1, verdict{again: reloadInterval}},
		{"behind at the last look of patience: a warning, then at rest", behind, reloadPatience, verdict{warn: true}},
		{"behind past patience: at rest, warned already", behind, reloadPatience + 1, verdict{}},
		{"a certificate that does not fit: a warning at once, at rest", refused, 1, verdict{warn: true}},
		{"still does not fit: warned already", refused, 2, verdict{}},
		{"does not fit some, others behind: the Secret must change first", reloadReport{refused: refused.refused, behind: behind.behind}, 1, verdict{warn: true}},
	} {
		if got := reloadVerdict(tt.rep, tt.attempts); got != tt.want {
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
	steps := []struct {
		key    types.NamespacedName
		want   *x509.Certificate
		behind bool
		at     time.Duration
		expect reloadLook
	}{
		{key, a, true, 0, reloadLook{raw: a.Raw, attempts: 1, first: t0}},
		{key, a, true, 10 * time.Second, reloadLook{raw: a.Raw, attempts: 2, first: t0, since: 10 * time.Second}},
		{other, a, true, 15 * time.Second, reloadLook{raw: a.Raw, attempts: 1, first: t0.Add(15 * time.Second)}},
		{key, b, true, 20 * time.Second, reloadLook{raw: b.Raw, attempts: 1, first: t0.Add(20 * time.Second)}},
		{key, b, false, 30 * time.Second, reloadLook{}},
		{key, b, true, 40 * time.Second, reloadLook{raw: b.Raw, attempts: 1, first: t0.Add(40 * time.Second)}},
		{other, a, true, 45 * time.Second, reloadLook{raw: a.Raw, attempts: 2, first: t0.Add(15 * time.Second), since: 30 * time.Second}},
	}
	for i, s := range steps {
		got := tr.look(s.key, s.want, s.behind, t0.Add(s.at))
		if diff := cmp.Diff(s.expect, got, cmp.AllowUnexported(reloadLook{})); diff != "" {
			t.Errorf("step %d (-want +got):\n%s", i, diff)
		}
	}
	tr.forget(other)
	if got := tr.look(other, a, true, t0.Add(time.Minute)); got.attempts != 1 {
		t.Errorf("after forget: attempts = %d, want 1", got.attempts)
	}
}

func TestReloadNotes(t *testing.T) {
	until := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	want := cert(0x03e9, until)
	partial := reloadReport{reloaded: []string{"cache-0", "cache-1"}, serving: 3, behind: []string{"cache-3 (serial 0A)"}}
	if got, expect := reloadedNote(partial, "team-a/cache-tls", want, 4),
		"loaded the certificate of Secret team-a/cache-tls (serial 03E9, valid until 2026-09-01T00:00:00Z) in place on 2 node(s), cache-0, cache-1, with CONFIG SET: no pod restarted; 3 of 4 nodes serve it; still serving another: cache-3 (serial 0A) (the kubelet has not updated their mounted Secret yet): asking again every 10s"; got != expect {
		t.Errorf("reloadedNote =\n%s\nwant\n%s", got, expect)
	}
	done := reloadReport{reloaded: []string{"cache-3"}, serving: 4}
	if got, expect := reloadedNote(done, "team-a/cache-tls", want, 4),
		"loaded the certificate of Secret team-a/cache-tls (serial 03E9, valid until 2026-09-01T00:00:00Z) in place on 1 node(s), cache-3, with CONFIG SET: no pod restarted; 4 of 4 nodes serve it"; got != expect {
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
