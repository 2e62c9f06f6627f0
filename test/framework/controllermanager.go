package framework

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega/gexec"
)

// ControllerManager starts the real kube-controller-manager from $KUBEBUILDER_ASSETS
// against this API server, as the admin, with only the given controllers (e.g.
// "garbagecollector" or its current name "garbage-collector-controller"; "*" would
// start them all, most of which need nodes, a scheduler or service account keys that
// this control plane does not have). Leader election is off and every controller
// uses the admin's credentials, so no service account tokens are needed. It waits
// until the controller manager's /healthz answers 200 on its secure port, which it
// serves on a free loopback port with a self-signed certificate kept in memory.
// /healthz needs no credentials (it is one of the paths always allowed), so the
// controller manager is given no authentication or authorization kubeconfig, and
// it warns at start-up that it cannot look up client CAs or review tokens.
//
// The caller stops it like Serve's session: session.Terminate(), then
// Eventually(session).Should(gexec.Exit(0)). Stop kills it if it still runs.
func (cp *ControlPlane) ControllerManager(controllers ...string) (*gexec.Session, error) {
	if len(controllers) == 0 {
		return nil, fmt.Errorf("starting kube-controller-manager: no controllers given")
	}
	path := filepath.Join(os.Getenv(AssetsEnv), "kube-controller-manager")
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("finding kube-controller-manager in $%s: %w", AssetsEnv, err)
	}
	kubeconfig, err := cp.Kubeconfig(cp.dir, "")
	if err != nil {
		return nil, err
	}
	addr, err := freeLocalAddr(cp.Env.WebhookInstallOptions.LocalServingPort)
	if err != nil {
		return nil, err
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("splitting %s: %w", addr, err)
	}
	cmd := exec.Command(path,
		"--kubeconfig", kubeconfig,
		"--controllers", strings.Join(controllers, ","),
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--bind-address", host,
		"--secure-port", port,
		// Without this gate (alpha, off by default in 1.37) kube-controller-manager
		// installs no SIGTERM handler and dies of the signal (exit code 143); with it,
		// SIGTERM stops the controllers and the process exits 0.
		"--feature-gates", "ControllerManagerReleaseLeaderElectionLockOnExit=true",
	)
	session, err := gexec.Start(cmd, ginkgo.GinkgoWriter, ginkgo.GinkgoWriter)
	if err != nil {
		return nil, fmt.Errorf("starting kube-controller-manager: %w", err)
	}
	cp.track(session)

	healthz := "https://" + addr + "/healthz"
	if err := eventually("kube-controller-manager to report healthy at "+healthz, startTimeout, func() error {
		if err := exited(session, "kube-controller-manager"); err != nil {
			return err
		}
		return getOK(healthz)
	}); err != nil {
		return nil, stopFailed(session, err)
	}
	return session, nil
}
