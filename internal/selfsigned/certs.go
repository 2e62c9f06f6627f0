// Package selfsigned lets `serve --cert-mode self-managed` run without
// cert-manager: it keeps a CA and a serving certificate in a Secret, renews them
// before they expire, keeps the old and the new CA in the webhook configurations'
// caBundle while both may be in use, and writes the serving certificate where the
// webhook server reads it.
//
// This file is the pure part: what the certificates should be at a given time.
package selfsigned

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"
)

// Validity is how long certificates live. Each is renewed once two thirds of its
// life have passed.
type Validity struct {
	CA      time.Duration
	Serving time.Duration
}

// DefaultValidity is ten years for the CA, one year for the serving certificate.
var DefaultValidity = Validity{CA: 10 * 365 * 24 * time.Hour, Serving: 365 * 24 * time.Hour}

// Bundle is what the Secret holds, all PEM.
type Bundle struct {
	CACert []byte
	CAKey  []byte
	// CABundle is every CA a serving certificate in use may be signed by: the
	// current CA, and the previous one until it expires.
	CABundle    []byte
	ServingCert []byte
	ServingKey  []byte
}

// Renew returns the bundle to use at now: b itself when nothing is due (changed is
// false), or a bundle with a new serving certificate (expiring, for other hosts,
// or signed by a replaced CA) and, when the CA is due, a new CA next to the old one
// in CABundle.
func Renew(b Bundle, hosts []string, now time.Time, v Validity) (out Bundle, changed bool, err error) {
	out = b
	ca, caErr := parseCert(b.CACert)
	if caErr != nil || len(b.CAKey) == 0 || due(ca, now) {
		if out.CACert, out.CAKey, err = newCA(now, v.CA); err != nil {
			return Bundle{}, false, err
		}
		changed = true
	}
	bundle, err := caBundle(out.CACert, b.CABundle, now)
	if err != nil {
		return Bundle{}, false, err
	}
	if !bytes.Equal(bundle, b.CABundle) {
		out.CABundle = bundle
		changed = true
	}
	serving, servingErr := parseCert(b.ServingCert)
	if changed || servingErr != nil || due(serving, now) || !sameHosts(serving, hosts) || !signedBy(serving, out.CACert) {
		if out.ServingCert, out.ServingKey, err = newServing(out.CACert, out.CAKey, hosts, now, v.Serving); err != nil {
			return Bundle{}, false, err
		}
		changed = true
	}
	return out, changed, nil
}

// due reports whether two thirds of a certificate's life have passed.
func due(c *x509.Certificate, now time.Time) bool {
	life := c.NotAfter.Sub(c.NotBefore)
	return !now.Before(c.NotBefore.Add(life * 2 / 3))
}

// caBundle is the current CA followed by the previous CAs that have not expired.
func caBundle(current, previous []byte, now time.Time) ([]byte, error) {
	out := bytes.Clone(current)
	for rest := previous; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return out, nil
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil || now.After(c.NotAfter) {
			continue
		}
		encoded := pem.EncodeToMemory(block)
		if !bytes.Contains(out, encoded) {
			out = append(out, encoded...)
		}
	}
}

func parseCert(p []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(p)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

func sameHosts(c *x509.Certificate, hosts []string) bool {
	var have []string
	have = append(have, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		have = append(have, ip.String())
	}
	want := slices.Clone(hosts)
	slices.Sort(have)
	slices.Sort(want)
	return slices.Equal(have, want)
}

func signedBy(c *x509.Certificate, caPEM []byte) bool {
	ca, err := parseCert(caPEM)
	return err == nil && c.CheckSignatureFrom(ca) == nil
}

func newCA(now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: fmt.Sprintf("valkey-webhook-ca@%d", now.Unix())},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	return encode(der, key)
}

func newServing(caCertPEM, caKeyPEM []byte, hosts []string, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	ca, err := parseCert(caCertPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("the CA: %w", err)
	}
	block, _ := pem.Decode(caKeyPEM)
	if block == nil {
		return nil, nil, errors.New("the CA key: no PEM block")
	}
	caKey, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("the CA key: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	return encode(der, key)
}

func encode(der []byte, key *ecdsa.PrivateKey) (certPEM, keyPEM []byte, err error) {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}
