package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/internal/selfsigned"
)

// Certificate modes of serve.
const (
	certModeFiles       = "files"
	certModeSelfManaged = "self-managed"
)

// certOptions are the flags of --cert-mode self-managed.
type certOptions struct {
	mode          string
	namespace     string
	secret        string
	serviceName   string
	hosts         []string
	configuration string
	interval      time.Duration
}

func (c *certOptions) bindFlags(f *pflag.FlagSet) {
	f.StringVar(&c.mode, "cert-mode", certModeFiles, `where the serving certificate comes from: "files" (tls.crt and tls.key in --cert-dir, kept by someone else, such as cert-manager) or "self-managed" (serve issues, stores, renews and writes it itself)`)
	f.StringVar(&c.namespace, "namespace", os.Getenv("POD_NAMESPACE"), "the webhook's namespace: where --cert-mode self-managed keeps its Secret, and whose valkey-webhook pods the companion NetworkPolicies admit to the client port, for the lifecycle controller and the scale guard (default: $POD_NAMESPACE)")
	f.StringVar(&c.secret, "cert-secret", "valkey-webhook-tls", "Secret that holds the self-managed CA and serving certificate")
	f.StringVar(&c.serviceName, "service-name", "valkey-webhook", "the webhook's Service, whose DNS names the self-managed certificate carries")
	f.StringSliceVar(&c.hosts, "cert-hosts", nil, "DNS names and IP addresses of the self-managed certificate (default: the Service's names)")
	f.StringVar(&c.configuration, "webhook-configuration-name", "valkey-webhook", "name of the webhook configurations whose caBundle the self-managed mode keeps (and NAME-enforcement)")
	f.DurationVar(&c.interval, "cert-check-interval", time.Hour, "how often the self-managed mode checks whether a certificate is due")
}

// selfManagedCerts issues or loads the serving certificate before the webhook
// server starts, so that it only ever reports ready with its certificate loaded,
// and returns the manager that keeps it renewed. It returns nil in files mode.
func selfManagedCerts(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme, c *certOptions, certDir string) (*selfsigned.Manager, error) {
	switch c.mode {
	case certModeFiles:
		return nil, nil
	case certModeSelfManaged:
	default:
		return nil, badInput(fmt.Errorf("--cert-mode %q: must be %s or %s", c.mode, certModeFiles, certModeSelfManaged))
	}
	if c.namespace == "" {
		return nil, badInput(fmt.Errorf("--cert-mode self-managed needs --namespace (or $POD_NAMESPACE): where its Secret %s lives", c.secret))
	}
	hosts := c.hosts
	if len(hosts) == 0 {
		hosts = []string{
			fmt.Sprintf("%s.%s.svc", c.serviceName, c.namespace),
			fmt.Sprintf("%s.%s.svc.cluster.local", c.serviceName, c.namespace),
		}
	}
	direct, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return nil, fmt.Errorf("--cert-dir: %w", err)
	}
	m := &selfsigned.Manager{
		Client:                   direct,
		Namespace:                c.namespace,
		Secret:                   c.secret,
		Hosts:                    hosts,
		CertDir:                  certDir,
		MutatingConfigurations:   []string{c.configuration},
		ValidatingConfigurations: []string{c.configuration, c.configuration + "-enforcement"},
		Validity:                 selfsigned.DefaultValidity,
		Interval:                 c.interval,
		Now:                      time.Now,
	}
	if err := m.Ensure(ctx); err != nil {
		return nil, fmt.Errorf("self-managed certificate (hosts %s): %w", strings.Join(hosts, ","), err)
	}
	return m, nil
}
