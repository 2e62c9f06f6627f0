package selfsigned

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"
)

var (
	hosts = []string{"valkey-webhook.valkey-webhook-system.svc", "127.0.0.1"}
	day   = 24 * time.Hour
	v     = Validity{CA: 300 * day, Serving: 30 * day}
	t0    = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

// verify checks that the serving certificate is valid at now for every host,
// against the CA bundle only.
func verify(t *testing.T, b Bundle, now time.Time) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b.CABundle) {
		t.Fatal("the CA bundle holds no certificate")
	}
	serving, err := parseCert(b.ServingCert)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if _, err := serving.Verify(x509.VerifyOptions{Roots: pool, DNSName: h, CurrentTime: now}); err != nil {
			t.Errorf("the serving certificate does not verify for %s at %s: %v", h, now, err)
		}
	}
}

func certCount(bundle []byte) int {
	n := 0
	for rest := bundle; ; n++ {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return n
		}
	}
}

func TestRenewLifecycle(t *testing.T) {
	first, changed, err := Renew(Bundle{}, hosts, t0, v)
	if err != nil || !changed {
		t.Fatalf("first issue: changed %v, err %v", changed, err)
	}
	verify(t, first, t0)
	if certCount(first.CABundle) != 1 {
		t.Errorf("a new installation's bundle holds %d CAs, want 1", certCount(first.CABundle))
	}

	same, changed, err := Renew(first, hosts, t0.Add(day), v)
	if err != nil || changed || !bytes.Equal(same.ServingCert, first.ServingCert) {
		t.Fatalf("a day later nothing is due, but changed=%v err=%v", changed, err)
	}

	renewed, changed, err := Renew(first, hosts, t0.Add(21*day), v)
	if err != nil || !changed {
		t.Fatalf("at two thirds of its life the serving certificate is due: changed=%v err=%v", changed, err)
	}
	if bytes.Equal(renewed.ServingCert, first.ServingCert) || !bytes.Equal(renewed.CACert, first.CACert) {
		t.Error("want a new serving certificate from the same CA")
	}
	verify(t, renewed, t0.Add(21*day))

	moved, changed, err := Renew(renewed, []string{"other.svc"}, t0.Add(22*day), v)
	if err != nil || !changed || bytes.Equal(moved.ServingCert, renewed.ServingCert) {
		t.Errorf("new hosts need a new serving certificate: changed=%v err=%v", changed, err)
	}

	// Shortly before two thirds of the CA's life: a serving certificate from the old CA.
	beforeRotation, _, err := Renew(renewed, hosts, t0.Add(195*day), v)
	if err != nil || !bytes.Equal(beforeRotation.CACert, renewed.CACert) {
		t.Fatalf("want a serving certificate from the old CA, err %v", err)
	}
	// Two thirds of the CA's life: a new CA, both in the bundle.
	at := t0.Add(201 * day)
	rotated, changed, err := Renew(beforeRotation, hosts, at, v)
	if err != nil || !changed {
		t.Fatalf("the CA is due: changed=%v err=%v", changed, err)
	}
	if bytes.Equal(rotated.CACert, renewed.CACert) {
		t.Error("want a new CA")
	}
	if certCount(rotated.CABundle) != 2 || !bytes.Contains(rotated.CABundle, renewed.CACert) {
		t.Errorf("during the overlap the bundle holds the new and the old CA; it holds %d", certCount(rotated.CABundle))
	}
	verify(t, rotated, at)
	oldServing := beforeRotation
	oldServing.CABundle = rotated.CABundle
	verify(t, oldServing, at) // a replica still serving the old certificate is trusted

	// Once the old CA has expired, it leaves the bundle.
	later, _, err := Renew(rotated, hosts, t0.Add(301*day), v)
	if err != nil {
		t.Fatal(err)
	}
	if certCount(later.CABundle) != 1 || bytes.Contains(later.CABundle, renewed.CACert) {
		t.Errorf("the expired CA is still in the bundle (%d CAs)", certCount(later.CABundle))
	}
}

func TestRenewRepairsABrokenSecret(t *testing.T) {
	b, changed, err := Renew(Bundle{CACert: []byte("garbage"), ServingCert: []byte("garbage")}, hosts, t0, v)
	if err != nil || !changed {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	verify(t, b, t0)
}
