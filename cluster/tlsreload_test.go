package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testCert makes a certificate of the names, self-signed: decideReload looks at
// names, validity and identity, never at the chain.
func testCert(t *testing.T, serial int64, notBefore, notAfter time.Time, dns []string, ips ...net.IP) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "cache"},
		DNSNames:     dns,
		IPAddresses:  ips,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestDecideReload(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	const pod0 = "cache-0.cache-headless.team-a.svc.cluster.local"
	names := []string{"*.cache-headless.team-a.svc.cluster.local", "localhost"}
	old := testCert(t, 1, now.Add(-60*24*time.Hour), now.Add(30*24*time.Hour), names)
	renewed := testCert(t, 2, now.Add(-time.Hour), now.Add(90*24*time.Hour), names, net.ParseIP("10.0.0.5"))
	// The same names and serial as renewed, but another key: a different
	// certificate all the same.
	twin := testCert(t, 2, now.Add(-time.Hour), now.Add(90*24*time.Hour), names, net.ParseIP("10.0.0.5"))
	notYet := testCert(t, 3, now.Add(time.Hour), now.Add(90*24*time.Hour), names)
	expired := testCert(t, 4, now.Add(-90*24*time.Hour), now.Add(-time.Hour), names)
	otherNames := testCert(t, 5, now.Add(-time.Hour), now.Add(90*24*time.Hour), []string{"*.other-headless.team-a.svc.cluster.local"})

	for _, tt := range []struct {
		name   string
		served []servedCert
		want   *x509.Certificate
		expect []reloadAction
	}{{
		name:   "every node serves the wanted certificate: nothing to send",
		served: []servedCert{{Name: pod0, Cert: renewed}, {Name: "10.0.0.5", Cert: renewed}},
		want:   renewed,
		expect: []reloadAction{{kind: reloadNone}, {kind: reloadNone}},
	}, {
		name: "the nodes that serve the old one are reloaded, the others left alone",
		served: []servedCert{
			{Name: pod0, Cert: old},
			{Name: "cache-1.cache-headless.team-a.svc.cluster.local", Cert: renewed},
			{Name: "10.0.0.5", Cert: old},
		},
		want:   renewed,
		expect: []reloadAction{{kind: reloadNow}, {kind: reloadNone}, {kind: reloadNow}},
	}, {
		name:   "a certificate of the same serial and names but another key is not the wanted one",
		served: []servedCert{{Name: pod0, Cert: twin}},
		want:   renewed,
		expect: []reloadAction{{kind: reloadNow}},
	}, {
		name:   "a node whose handshake failed is not sent anything",
		served: []servedCert{{Name: pod0, Err: errors.New("connection refused")}, {Name: pod0}},
		want:   renewed,
		expect: []reloadAction{{kind: reloadUnasked}, {kind: reloadUnasked}},
	}, {
		name:   "a certificate that does not name the node would cut it off: refused",
		served: []servedCert{{Name: pod0, Cert: old}, {Name: "10.0.0.6", Cert: old}},
		want:   otherNames,
		expect: []reloadAction{
			{kind: reloadRefused, why: "the certificate does not name " + pod0},
			{kind: reloadRefused, why: "the certificate does not name 10.0.0.6"},
		},
	}, {
		name:   "a certificate not valid yet, or expired, is refused",
		served: []servedCert{{Name: pod0, Cert: old}},
		want:   notYet,
		expect: []reloadAction{{kind: reloadRefused, why: "the certificate is not valid before 2026-06-01T13:00:00Z"}},
	}, {
		name:   "expired",
		served: []servedCert{{Name: pod0, Cert: old}},
		want:   expired,
		expect: []reloadAction{{kind: reloadRefused, why: "the certificate expired at 2026-06-01T11:00:00Z"}},
	}, {
		name:   "a node that serves the wanted certificate needs nothing, even an expired one",
		served: []servedCert{{Name: pod0, Cert: expired}},
		want:   expired,
		expect: []reloadAction{{kind: reloadNone}},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			got := decideReload(tt.served, tt.want, now)
			if diff := cmp.Diff(tt.expect, got, cmp.AllowUnexported(reloadAction{})); diff != "" {
				t.Errorf("decideReload (-want +got):\n%s", diff)
			}
		})
	}
}

func TestServerName(t *testing.T) {
	for _, tt := range []struct {
		node Node
		want string
	}{
		{Node{Address: "10.0.0.5:6379", ServerName: "cache-0.cache-headless.team-a.svc.cluster.local"}, "cache-0.cache-headless.team-a.svc.cluster.local"},
		{Node{Address: "10.0.0.5:6379"}, "10.0.0.5"},
		{Node{Address: "[fd00::5]:6379"}, "fd00::5"},
		{Node{Address: "cache-0.cache-headless:6379"}, "cache-0.cache-headless"},
	} {
		if got := serverName(tt.node); got != tt.want {
			t.Errorf("serverName(%+v) = %q, want %q", tt.node, got, tt.want)
		}
	}
}
