package framework

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega/gexec"
)

// servePackage is the main package Serve builds.
const servePackage = "github.com/valkey-webhook/valkey-webhook/cmd/valkey-webhook"

// binary is the valkey-webhook binary, built once per process.
var binary struct {
	mu   sync.Mutex
	path string
}

// valkeyWebhookBinary builds the valkey-webhook binary, or returns the one built
// before if it still exists.
func valkeyWebhookBinary() (string, error) {
	binary.mu.Lock()
	defer binary.mu.Unlock()
	if binary.path != "" {
		if _, err := os.Stat(binary.path); err == nil {
			return binary.path, nil
		}
	}
	path, err := gexec.Build(servePackage)
	if err != nil {
		return "", fmt.Errorf("building %s: %w", servePackage, err)
	}
	binary.path = path
	return path, nil
}

// Binary is the valkey-webhook binary Serve runs (built once per process), for
// tests of its other subcommands against the control plane.
func Binary() (string, error) { return valkeyWebhookBinary() }

// forgetBinary removes the built binary (and whatever else gexec built).
func forgetBinary() {
	binary.mu.Lock()
	defer binary.mu.Unlock()
	if binary.path != "" {
		gexec.CleanupBuildArtifacts()
		binary.path = ""
	}
}

// Serve builds valkey-webhook (once per process) and starts `valkey-webhook serve`
// with the port and certificate directory of the webhook install options, the given
// kubeconfig, /healthz and /readyz on a free loopback port, no metrics and no drain
// delay, plus extraArgs (flags given there win, as the last occurrence of a flag
// does). It waits until the process serves TLS and /readyz answers 200, and returns
// the session and the /readyz URL.
//
// The caller stops the process: session.Terminate(), then
// Eventually(session).Should(gexec.Exit(0)). Stop kills it if it still runs.
func (cp *ControlPlane) Serve(kubeconfig string, extraArgs ...string) (*gexec.Session, string, error) {
	path, err := valkeyWebhookBinary()
	if err != nil {
		return nil, "", err
	}
	probeAddr, err := freeLocalAddr(cp.Env.WebhookInstallOptions.LocalServingPort)
	if err != nil {
		return nil, "", err
	}
	readyzURL := "http://" + probeAddr + "/readyz"
	wio := &cp.Env.WebhookInstallOptions
	args := append([]string{"serve",
		"--port", strconv.Itoa(wio.LocalServingPort),
		"--cert-dir", wio.LocalServingCertDir,
		"--kubeconfig", kubeconfig,
		"--health-probe-bind-address", probeAddr,
		"--metrics-bind-address", "0",
		"--shutdown-drain-delay", "0s",
	}, extraArgs...)
	session, err := gexec.Start(exec.Command(path, args...), ginkgo.GinkgoWriter, ginkgo.GinkgoWriter)
	if err != nil {
		return nil, "", fmt.Errorf("starting valkey-webhook serve: %w", err)
	}
	cp.track(session)

	servingAddr := net.JoinHostPort(wio.LocalServingHost, strconv.Itoa(wio.LocalServingPort))
	if err := eventually("valkey-webhook to serve TLS on "+servingAddr, startTimeout, func() error {
		if err := exited(session, "valkey-webhook serve"); err != nil {
			return err
		}
		return dialTLS(servingAddr)
	}); err != nil {
		return nil, "", stopFailed(session, err)
	}
	if err := eventually("valkey-webhook to report ready at "+readyzURL, startTimeout, func() error {
		if err := exited(session, "valkey-webhook serve"); err != nil {
			return err
		}
		return getOK(readyzURL)
	}); err != nil {
		return nil, "", stopFailed(session, err)
	}
	return session, readyzURL, nil
}
