package reliability

import (
	"context"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/defaults"
	"github.com/valkey-webhook/valkey-webhook/test/framework"
)

// apiServerLoad is a load of dry-run CREATEs of labeled StatefulSets through the
// API server: each calls the mutating and the validating webhook, which fail
// closed, so any failed call fails the request. The answer must be hardened.
func apiServerLoad(workers int, max int64) *framework.Load {
	return &framework.Load{Workers: workers, Max: max, Do: func(ctx context.Context, n int64) error {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		sts := minimal(ns, fmt.Sprintf("load-%d", n))
		if err := k8s.Create(ctx, sts, client.DryRunAll); err != nil {
			return fmt.Errorf("request %d: %w", n, err)
		}
		if sts.Spec.Template.Annotations[defaults.ChecksumAnnotation] == "" {
			return fmt.Errorf("request %d: stored without the checksum: the mutating webhook was not called", n)
		}
		return nil
	}}
}

// directLoad is a load of CREATE reviews sent straight to addr over HTTPS.
func directLoad(workers int, max int64, addr string, keepAlive bool, cas ...[]byte) *framework.Load {
	https := httpsClient(keepAlive, cas...)
	return &framework.Load{Workers: workers, Max: max, Do: func(ctx context.Context, n int64) error {
		return admitted(ctx, https, addr, n)
	}}
}

// runLoads starts loads in the background; the returned function stops them and
// returns their results.
func runLoads(ctx context.Context, loads ...*framework.Load) func() []framework.LoadResult {
	ctx, cancel := context.WithCancel(ctx)
	results := make([]framework.LoadResult, len(loads))
	var wg sync.WaitGroup
	for i, l := range loads {
		wg.Add(1)
		go func() {
			defer GinkgoRecover()
			defer wg.Done()
			results[i] = l.Run(ctx)
		}()
	}
	return func() []framework.LoadResult {
		cancel()
		wg.Wait()
		return results
	}
}

// progressed waits until every load has made at least n more requests.
func progressed(loads []*framework.Load, n int64) {
	start := make([]int64, len(loads))
	for i, l := range loads {
		start[i] = l.Sent()
	}
	Eventually(func() error {
		for i, l := range loads {
			if got := l.Sent() - start[i]; got < n {
				return fmt.Errorf("load %d made %d of %d requests", i, got, n)
			}
		}
		return nil
	}).WithTimeout(60 * time.Second).WithPolling(poll).Should(Succeed())
}

var _ = Describe("Serving certificate rotation", func() {
	It("keeps serving, with zero failed requests and no restart, while the files in --cert-dir are replaced", func(ctx SpecContext) {
		host := cp.Env.WebhookInstallOptions.LocalServingHost
		ca1, err := framework.NewCA("reliability-ca-1")
		Expect(err).NotTo(HaveOccurred())
		ca2, err := framework.NewCA("reliability-ca-2")
		Expect(err).NotTo(HaveOccurred())
		dir := filepath.Join(GinkgoT().TempDir(), "tls")
		issue := func(ca *framework.CA) (cert, key []byte, serial *big.Int) {
			cert, key, serial, err := ca.Serving(host, "localhost")
			Expect(err).NotTo(HaveOccurred())
			return cert, key, serial
		}
		served := func(want *big.Int) {
			GinkgoHelper()
			addr := framework.HostPort(host, cp.Env.WebhookInstallOptions.LocalServingPort)
			Eventually(func() (*big.Int, error) { return servedSerial(addr) }).
				WithTimeout(60*time.Second).WithPolling(poll).Should(Equal(want), "the new certificate is served")
		}

		By("serving a certificate of CA 1, which the webhook configurations trust")
		cert, key, serial := issue(ca1)
		Expect(framework.WriteSecretVolume(dir, map[string][]byte{"tls.crt": cert, "tls.key": key})).To(Succeed())
		Expect(cp.SetCABundle(ctx, ca1.PEM)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) {
			Expect(cp.SetCABundle(ctx, cp.Env.WebhookInstallOptions.LocalServingCAData)).To(Succeed())
			Expect(cp.WaitForWebhookConfigurations(ctx, ns)).To(Succeed())
		})
		Expect(cp.WaitForWebhookConfigurations(ctx, ns)).To(Succeed())
		srv := startServe("--cert-dir", dir)
		served(serial)
		pid := srv.session.Command.Process.Pid

		By("running a load through the API server and straight to the webhook, one TLS handshake per request")
		loads := []*framework.Load{
			apiServerLoad(3, 20000),
			directLoad(2, 50000, srv.addr, false, ca1.PEM, ca2.PEM),
		}
		loadCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		stop := runLoads(loadCtx, loads...)
		progressed(loads, 50)

		By("replacing key and certificate with new ones of the same CA, as the kubelet updates a Secret volume")
		cert, key, serial = issue(ca1)
		Expect(framework.WriteSecretVolume(dir, map[string][]byte{"tls.crt": cert, "tls.key": key})).To(Succeed())
		served(serial)
		progressed(loads, 50)

		By("adding CA 2 to the bundle, then serving a certificate of CA 2")
		Expect(cp.SetCABundle(ctx, append(append([]byte(nil), ca1.PEM...), ca2.PEM...))).To(Succeed())
		Expect(cp.WaitForWebhookConfigurations(ctx, ns)).To(Succeed())
		progressed(loads, 50)
		cert, key, serial = issue(ca2)
		Expect(framework.WriteSecretVolume(dir, map[string][]byte{"tls.crt": cert, "tls.key": key})).To(Succeed())
		served(serial)
		progressed(loads, 50)

		By("overwriting the files in place, certificate first: a reader sees a mismatched pair for a moment")
		cert, key, serial = issue(ca2)
		Expect(os.WriteFile(filepath.Join(dir, "tls.crt"), cert, 0o600)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(dir, "tls.key"), key, 0o600)).To(Succeed())
		served(serial)
		progressed(loads, 50)

		results := stop()
		for i, r := range results {
			GinkgoWriter.Printf("rotation load %d: %s\n", i, r)
			Expect(r.Failed).To(BeZero(), "load %d: %s", i, r)
		}
		AddReportEntry("rotation: requests through the API server", results[0].String())
		AddReportEntry("rotation: requests straight to the webhook", results[1].String())
		Expect(srv.session.ExitCode()).To(Equal(-1), "serve exited")
		Expect(srv.session.Command.Process.Pid).To(Equal(pid))
		Expect(srv.metric("certwatcher_read_certificate_total")).To(BeNumerically(">", 0))
		GinkgoWriter.Printf("rotation: certificate reads %v, failed reads %v (the mismatched pair)\n",
			srv.metric("certwatcher_read_certificate_total"), srv.metric("certwatcher_read_certificate_errors_total"))
		Expect(srv.panics()).To(BeZero())
	}, SpecTimeout(4*time.Minute))
})
