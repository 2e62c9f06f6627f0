package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/controller"
	"github.com/valkey-webhook/valkey-webhook/internal/webhookserver"
	"github.com/valkey-webhook/valkey-webhook/webhook"
)

type serveOptions struct {
	port        int
	certDir     string
	kubeconfig  string
	probeAddr   string
	metricsAddr string
	drainDelay  time.Duration
	leaderElect bool
	leaderNS    string
	lifecycle   bool
	certs       certOptions
}

func newServeCommand(o *options) *cobra.Command {
	s := &serveOptions{}
	zapOpts := zap.Options{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the admission webhook server",
		Long: `serve runs the HTTPS admission webhooks for StatefulSets (mutate, validate, the
cluster-wide enforcement for unlabeled Valkey clusters, and the scale guard, which
asks the live Valkey cluster before a scale-down removes pods), with health and
readiness endpoints and Prometheus metrics.

It reports ready only once the webhook serves TLS. On SIGTERM it stops being ready
at once, keeps serving for --shutdown-drain-delay so that the API server and the
Service stop sending it requests, then exits 0. The serving certificate in
--cert-dir is reloaded when its files change.

The webhook port bounds every connection in time (TLS handshake and headers
10s, request and answer 30s each, idle 90s), serves TLS 1.2 or later with ECDHE
AEAD suites only, over HTTP/2 or HTTP/1.1, and denies a review of 7 MiB or more
with its uid and code 413. The probe and metrics ports are servers of their own,
with timeouts and at most 16 connections each, so that they cannot slow it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
			p, err := o.policy()
			if err != nil {
				return err
			}
			cfg, err := restConfig(s.kubeconfig)
			if err != nil {
				return badInput(err)
			}
			return serve(cmd.Context(), cfg, s, p)
		},
	}
	f := cmd.Flags()
	f.IntVar(&s.port, "port", 9443, "HTTPS port of the webhook server")
	f.StringVar(&s.certDir, "cert-dir", "/etc/valkey-webhook/tls", "directory holding the serving certificate, tls.crt and tls.key")
	f.StringVar(&s.kubeconfig, "kubeconfig", "", "kubeconfig file, for running outside a cluster (default: in-cluster config, then $KUBECONFIG)")
	f.StringVar(&s.probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	f.StringVar(&s.metricsAddr, "metrics-bind-address", ":8080", `address of /metrics; "0" turns metrics off`)
	f.DurationVar(&s.drainDelay, "shutdown-drain-delay", 10*time.Second, "how long to keep serving after SIGTERM, not ready, before exiting")
	s.certs.bindFlags(f)
	f.BoolVar(&s.leaderElect, "leader-elect", true, "elect one replica to run the companion and lifecycle controllers (the webhooks are served by every replica)")
	f.BoolVar(&s.lifecycle, "cluster-lifecycle", true, "form the Valkey cluster of every labeled StatefulSet once its pods run, and heal it after they come back on new IPs (false: run `valkey-webhook cluster init|heal` yourself)")
	f.StringVar(&s.leaderNS, "leader-election-namespace", "", "namespace of the leader election Lease (default: the pod's namespace; required outside a cluster)")
	logFlags := flag.NewFlagSet("log", flag.ContinueOnError)
	zapOpts.BindFlags(logFlags)
	f.AddGoFlagSet(logFlags)
	return cmd
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("no cluster to talk to: %w; pass --kubeconfig when running outside a cluster", err)
	}
	return cfg, nil
}

func serve(parent context.Context, cfg *rest.Config, s *serveOptions, p config.Policy) error {
	log := ctrl.Log.WithName("serve")
	scheme := newScheme()
	certs, err := selfManagedCerts(parent, cfg, scheme, &s.certs, s.certDir)
	if err != nil {
		return err
	}
	certManager, err := servesCertificates(cfg)
	if err != nil {
		return fmt.Errorf("asking the API server for cert-manager's Certificate kind: %w", err)
	}
	if !certManager {
		log.Info("cert-manager's Certificate kind is not served: StatefulSets with tls.issuer get no Certificate until cert-manager is installed and valkey-webhook restarted")
	}
	webhooks := &webhookserver.Server{Addr: fmt.Sprintf(":%d", s.port), CertDir: s.certDir}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme,
		// The probes and metrics have servers of their own, with limits, below.
		Metrics:                 metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:  "0",
		WebhookServer:           webhooks,
		LeaderElection:          s.leaderElect,
		LeaderElectionID:        "valkey-webhook.valkey-webhook.io",
		LeaderElectionNamespace: s.leaderNS,
		Cache:                   controller.CacheOptions(certManager),
		Client:                  controller.ClientOptions(),
	})
	if err != nil {
		return fmt.Errorf("setting up the manager: %w", err)
	}
	// The scale guard reads StatefulSets and their pods from the cache, on every
	// replica, also those that do not lead the controllers.
	if err := mgr.Add(warmInformers{cache: mgr.GetCache(), objects: []client.Object{&appsv1.StatefulSet{}, &corev1.Pod{}}}); err != nil {
		return err
	}
	var draining atomic.Bool
	for path, hook := range webhook.ServeHandlers(scheme, p, mgr.GetClient(), mgr.GetAPIReader()) {
		mgr.GetWebhookServer().Register(path, closeWhileDraining(hook, &draining))
	}
	if certs != nil {
		if err := mgr.Add(certs); err != nil {
			return err
		}
	}
	companions := &controller.CompanionReconciler{
		Client:      mgr.GetClient(),
		APIReader:   mgr.GetAPIReader(),
		Recorder:    controller.CappedRecorder{EventRecorder: mgr.GetEventRecorder("valkey-webhook")},
		Policy:      p,
		CertManager: certManager,
	}
	// The lifecycle controller and the scale guard (on every replica) reach the
	// pods on the client port.
	companions.ControllerNamespace = s.certs.namespace
	if err := companions.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the companion controller: %w", err)
	}
	if s.lifecycle {
		lifecycle := &controller.LifecycleReconciler{
			Client:              mgr.GetClient(),
			APIReader:           mgr.GetAPIReader(),
			Recorder:            controller.CappedRecorder{EventRecorder: mgr.GetEventRecorder("valkey-webhook")},
			Policy:              p,
			ControllerNamespace: s.certs.namespace,
			CertManager:         certManager,
		}
		if err := lifecycle.SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the cluster lifecycle controller: %w", err)
		}
	}

	started := webhooks.StartedChecker()
	probes := webhookserver.ProbeHandler(map[string]healthz.Checker{"ping": healthz.Ping}, map[string]healthz.Checker{
		"webhook": func(req *http.Request) error {
			if draining.Load() {
				return errors.New("shutting down")
			}
			return started(req)
		},
	})
	// "" or "0" turns the probes off and "0" the metrics, "" serving them on
	// :8080, as controller-runtime's options do.
	if s.probeAddr != "" && s.probeAddr != "0" {
		if err := addEndpoint(mgr, "health probe", s.probeAddr, probes); err != nil {
			return err
		}
	}
	if s.metricsAddr != "0" {
		if err := addEndpoint(mgr, "metrics", cmp.Or(s.metricsAddr, ":8080"), webhookserver.MetricsHandler()); err != nil {
			return err
		}
	}

	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(signals)
	go func() {
		select {
		case sig := <-signals:
			draining.Store(true)
			log.Info("not ready any more; serving until the drain delay is over", "signal", sig.String(), "drainDelay", s.drainDelay)
			select {
			case <-time.After(s.drainDelay):
			case <-signals:
				log.Info("second signal: stopping now")
			}
			cancel()
		case <-ctx.Done():
		}
	}()

	log.Info("starting", "port", s.port, "certDir", s.certDir)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running the webhook server: %w", err)
	}
	log.Info("stopped")
	return nil
}

// addEndpoint serves handler on addr, on a listener and server of its own.
func addEndpoint(mgr ctrl.Manager, name, addr string, handler http.Handler) error {
	r, err := webhookserver.Endpoint{Name: name, Addr: addr, Handler: handler}.Runnable()
	if err != nil {
		return fmt.Errorf("the %s endpoint: %w", name, err)
	}
	return mgr.Add(r)
}

// servesCertificates reports whether the API server serves cert-manager.io/v1.
func servesCertificates(cfg *rest.Config) (bool, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return false, err
	}
	_, err = dc.ServerResourcesForGroupVersion(cmapi.SchemeGroupVersion.String())
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// warmInformers starts the cache's informers of some kinds once the cache runs,
// on every replica, rather than at the first read. It is not registered before
// the manager starts: the manager would then wait for them to sync before it
// starts anything else, and for ever without the RBAC to list them.
type warmInformers struct {
	cache   cache.Cache
	objects []client.Object
}

// Start asks for each informer and returns once they are synced, or the manager
// stops; an informer that cannot sync only makes the first reads slower.
func (w warmInformers) Start(ctx context.Context) error {
	for _, obj := range w.objects {
		if _, err := w.cache.GetInformer(ctx, obj); err != nil && ctx.Err() == nil {
			ctrl.Log.WithName("serve").Info("the scale guard's cache has not synced", "kind", fmt.Sprintf("%T", obj), "error", err.Error())
		}
	}
	return nil
}

// NeedLeaderElection is false: every replica serves the webhooks.
func (warmInformers) NeedLeaderElection() bool { return false }

// closeWhileDraining answers with Connection: close once serve drains (after
// SIGTERM). The API server keeps its connections to a webhook pod open across
// requests, and the pod leaving its Service moves none of them; a connection
// still open when serve exits breaks the request written on it at that moment
// (seen on the real node: "write: broken pipe", one request failed). Over HTTP/1.1
// the header closes the connection after the answer; over HTTP/2 Go's server turns
// it into a GOAWAY, after which the API server opens a new connection, to a pod
// that stays. So during the drain delay every connection in use is moved off.
func closeWhileDraining(h http.Handler, draining *atomic.Bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if draining.Load() {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}
