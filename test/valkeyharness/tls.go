package valkeyharness

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// TLSFiles is a CA made for one test run and a client certificate it signed, as
// files (for the CLI's --tls-ca, --tls-cert, --tls-key) and in memory.
type TLSFiles struct {
	CAFile, CertFile, KeyFile string

	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caPEM  []byte
	client tls.Certificate
}

func newTLSFiles(dir string) (*TLSFiles, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "valkeyharness CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	f := &TLSFiles{
		CAFile:   filepath.Join(dir, "ca.crt"),
		CertFile: filepath.Join(dir, "tls.crt"),
		KeyFile:  filepath.Join(dir, "tls.key"),
		caCert:   ca,
		caKey:    key,
		caPEM:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}
	if err := os.WriteFile(f.CAFile, f.caPEM, 0o600); err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := f.issue("valkeyharness client", nil, nil)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(f.CertFile, certPEM, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(f.KeyFile, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if f.client, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return nil, err
	}
	return f, nil
}

// ClientConfig trusts the CA and presents the client certificate.
func (f *TLSFiles) ClientConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(f.caCert)
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{f.client}, MinVersion: tls.VersionTLS12}
}

// serverFiles are a pod's tls.crt, tls.key and ca.crt, the keys of its TLS
// Secret, for a certificate naming its address (for server and client use: the
// cluster bus and replication use it both ways).
func (f *TLSFiles) serverFiles(name, ip, dns string) (map[string][]byte, error) {
	return f.SecretData(name, []string{name, dns, "localhost"}, net.ParseIP(ip), net.ParseIP("127.0.0.1"))
}

// SecretData is the data of a kubernetes.io/tls Secret with ca.crt, for a
// certificate of the given DNS names and IPs signed by the CA, for server and
// client use: what cert-manager issues for the companion Certificate.
func (f *TLSFiles) SecretData(cn string, dns []string, ips ...net.IP) (map[string][]byte, error) {
	certPEM, keyPEM, err := f.issue(cn, dns, ips)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM, "ca.crt": f.caPEM}, nil
}

// NewTLSFiles makes a CA and a client certificate it signed, in dir.
func NewTLSFiles(dir string) (*TLSFiles, error) { return newTLSFiles(dir) }

func (f *TLSFiles) issue(cn string, dns []string, ips []net.IP) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     dns,
		IPAddresses:  ips,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.caCert, &key.PublicKey, f.caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("valkeyharness: issuing %s: %w", cn, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}
