// Command floor serves the benchmark's floor (bench.FloorServer): controller-runtime's
// webhook server, TLS set up as in `valkey-webhook serve`, answering "allowed" on
// valkey-webhook's webhook paths without decoding the object. test/bench/run starts
// it beside `serve`; it runs until SIGTERM or SIGINT.
package main

import (
	"flag"
	"fmt"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/valkey-webhook/valkey-webhook/test/bench"
)

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 9444, "HTTPS port")
	certDir := flag.String("cert-dir", "", "directory holding tls.crt and tls.key")
	flag.Parse()
	if *certDir == "" {
		fmt.Fprintln(os.Stderr, "floor: --cert-dir is required")
		os.Exit(2)
	}
	ctrl.SetLogger(zap.New())
	if err := bench.FloorServer(*host, *port, *certDir).Start(ctrl.SetupSignalHandler()); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}
