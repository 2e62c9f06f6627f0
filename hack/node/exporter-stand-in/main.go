// Command exporter-stand-in is a STAND-IN for the metrics sidecar's image
// (oliver006/redis_exporter), which cannot be built here: the module proxy refuses
// it. It reads the environment admission gives the sidecar (REDIS_ADDR,
// REDIS_PASSWORD, REDIS_EXPORTER_WEB_LISTEN_ADDRESS and the REDIS_EXPORTER_TLS_*
// files), serves /metrics on the same port, and reports one series of the real
// exporter, redis_up, from a PING to the node. It proves the sidecar's wiring (port,
// environment, Secret, TLS files, NetworkPolicy), not the real exporter's metrics.
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

func main() {
	listen := envOr("REDIS_EXPORTER_WEB_LISTEN_ADDRESS", ":9121")
	http.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		up := 0
		if err := ping(); err != nil {
			log.Printf("ping %s: %v", os.Getenv("REDIS_ADDR"), err)
		} else {
			up = 1
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# HELP redis_up Information about the Redis instance\n# TYPE redis_up gauge\nredis_up %d\n", up)
		fmt.Fprintf(w, "# HELP valkey_webhook_exporter_stand_in 1: this is the real node's stand-in, not redis_exporter\n# TYPE valkey_webhook_exporter_stand_in gauge\nvalkey_webhook_exporter_stand_in 1\n")
	})
	log.Printf("exporter stand-in (not redis_exporter) listening on %s", listen)
	srv := &http.Server{Addr: listen, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(srv.ListenAndServe())
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// ping sends AUTH (with a password) and PING to REDIS_ADDR and wants +PONG.
func ping() error {
	u, err := url.Parse(envOr("REDIS_ADDR", "redis://127.0.0.1:6379"))
	if err != nil {
		return err
	}
	d := &net.Dialer{Timeout: 2 * time.Second}
	var conn net.Conn
	switch u.Scheme {
	case "redis":
		conn, err = d.Dial("tcp", u.Host)
	case "rediss":
		var cfg *tls.Config
		if cfg, err = tlsConfig(); err == nil {
			conn, err = tls.DialWithDialer(d, "tcp", u.Host, cfg)
		}
	default:
		err = fmt.Errorf("scheme %q: want redis or rediss", u.Scheme)
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(conn)
	if pw := os.Getenv("REDIS_PASSWORD"); pw != "" {
		if err := command(conn, r, "AUTH", pw); err != nil {
			return fmt.Errorf("AUTH: %w", err)
		}
	}
	return command(conn, r, "PING")
}

func command(conn net.Conn, r *bufio.Reader, args ...string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+") {
		return fmt.Errorf("answered %q", strings.TrimSpace(line))
	}
	return nil
}

func tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca := os.Getenv("REDIS_EXPORTER_TLS_CA_CERT_FILE"); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		cfg.RootCAs.AppendCertsFromPEM(pem)
	}
	if os.Getenv("REDIS_EXPORTER_SKIP_TLS_VERIFICATION") == "true" {
		cfg.InsecureSkipVerify = true // as the real exporter's flag does
	}
	if crt, key := os.Getenv("REDIS_EXPORTER_TLS_CLIENT_CERT_FILE"), os.Getenv("REDIS_EXPORTER_TLS_CLIENT_KEY_FILE"); crt != "" && key != "" {
		pair, err := tls.LoadX509KeyPair(crt, key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}
