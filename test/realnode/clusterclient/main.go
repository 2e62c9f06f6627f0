// Command clusterclient is the real-node suite's Valkey cluster client, run inside
// a pod so that names resolve through CoreDNS. It writes keys through a valkey-go
// cluster client and reads every one back, over TLS with full certificate
// verification: the chain against the CA, and the name against the address it
// dials, which is the pod's DNS name that the nodes announce with TLS.
//
//	clusterclient -seed cache-0.cache-headless.ns.svc.cluster.local:6379 -ca ca.crt -password-file password -keys 200
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valkey-io/valkey-go"
)

func main() {
	seed := flag.String("seed", "", "host:port of one node, by DNS name")
	caFile := flag.String("ca", "", "CA certificate (PEM) the nodes' certificates chain to")
	passwordFile := flag.String("password-file", "", "file holding the password")
	keys := flag.Int("keys", 100, "keys to write and read back")
	flag.Parse()
	if err := run(*seed, *caFile, *passwordFile, *keys); err != nil {
		fmt.Fprintln(os.Stderr, "clusterclient:", err)
		os.Exit(1)
	}
}

func run(seed, caFile, passwordFile string, keys int) error {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		return fmt.Errorf("%s: no certificate", caFile)
	}
	password, err := os.ReadFile(passwordFile)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	verified := map[string]string{}
	option := valkey.ClientOption{
		InitAddress:  []string{seed},
		Password:     strings.TrimSpace(string(password)),
		DisableCache: true,
		TLSConfig:    &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		// What any client does (crypto/tls takes the server name from the
		// address), recorded. The nodes announce their pods' DNS names, so every
		// address, the redirects' too, is a name the certificate must cover; an
		// IP would mean the announcement is missing, and fails.
		DialCtxFn: func(ctx context.Context, dst string, d *net.Dialer, cfg *tls.Config) (net.Conn, error) {
			host, _, err := net.SplitHostPort(dst)
			if err != nil {
				return nil, err
			}
			if net.ParseIP(host) != nil {
				return nil, fmt.Errorf("%s: a node announced an IP, not its DNS name", dst)
			}
			conn, err := (&tls.Dialer{NetDialer: d, Config: cfg}).DialContext(ctx, "tcp", dst)
			if err == nil {
				mu.Lock()
				verified[dst] = host
				mu.Unlock()
			}
			return conn, err
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A NetworkPolicy admits a new pod once the enforcer has seen it (kube-router
	// adds its IP to the policy's sets within a second or so): until then the
	// first connection is refused, so the client tries again for a while.
	var cl valkey.Client
	for {
		if cl, err = valkey.NewClient(option); err == nil {
			break
		}
		fmt.Fprintf(os.Stderr, "clusterclient: %v; trying again\n", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
	defer cl.Close()
	for i := range keys {
		if err := cl.Do(ctx, cl.B().Set().Key("tls:"+strconv.Itoa(i)).Value(strconv.Itoa(i)).Build()).Error(); err != nil {
			return fmt.Errorf("SET tls:%d: %w", i, err)
		}
	}
	for i := range keys {
		v, err := cl.Do(ctx, cl.B().Get().Key("tls:"+strconv.Itoa(i)).Build()).ToString()
		if err != nil || v != strconv.Itoa(i) {
			return fmt.Errorf("GET tls:%d: %q, %v", i, v, err)
		}
	}
	fmt.Printf("wrote and read back %d keys\n", keys)
	mu.Lock()
	defer mu.Unlock()
	for _, dst := range slices.Sorted(maps.Keys(verified)) {
		fmt.Printf("verified %s as %s\n", dst, verified[dst])
	}
	return nil
}
