// Package framework starts a real control plane for the test suites under test/: an
// envtest kube-apiserver and etcd, optionally with valkey-webhook's webhook
// configurations and cert-manager's CRDs installed, the `valkey-webhook serve`
// process behind it, and the real kube-controller-manager with a chosen set of
// controllers.
//
// A suite starts one ControlPlane in its BeforeSuite and stops it with DeferCleanup:
//
//	cp, err := framework.Start(framework.Options{Webhooks: true})
//	Expect(err).NotTo(HaveOccurred())
//	DeferCleanup(cp.Stop)
//
// The binaries come from $KUBEBUILDER_ASSETS, which hack/envtest-assets.sh prints.
package framework

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/onsi/gomega/gexec"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/valkey-webhook/valkey-webhook/webhook"
)

// AssetsEnv names the environment variable that holds the directory of the
// kube-apiserver, etcd and kube-controller-manager binaries.
const AssetsEnv = "KUBEBUILDER_ASSETS"

// webhookConfiguration is what the webhook configurations are rendered with when
// Options.Webhooks is set, as the Deployment would install them; envtest then points
// their client configurations at the local serving host and port.
var webhookConfiguration = webhook.ConfigurationOptions{
	Name:           "valkey-webhook",
	Namespace:      "valkey-webhook-system",
	ServiceName:    "valkey-webhook",
	Port:           443,
	TimeoutSeconds: 5,
}

// Options choose what Start installs into the fresh API server.
type Options struct {
	// Webhooks installs webhook.MutatingConfiguration, webhook.ValidatingConfiguration
	// and webhook.EnforcementConfiguration,
	// through envtest's WebhookInstallOptions,
	// so that the API server calls the process Serve starts.
	Webhooks bool
	// CertManagerCRDs installs the CRDs shipped in the cert-manager Go module
	// (its directory deploy/crds), so that Certificates, Issuers and the like can be
	// stored.
	CertManagerCRDs bool
}

// ControlPlane is a running kube-apiserver and etcd, with the processes started
// against them.
type ControlPlane struct {
	// Env is the envtest environment; Env.WebhookInstallOptions holds the webhook's
	// serving host, port and certificate directory.
	Env *envtest.Environment
	// Config is the admin's REST config (group system:masters).
	Config *rest.Config
	// Client is an admin client whose scheme holds client-go's built-in types and
	// cert-manager's v1 types. Its admission warnings go to Warnings.
	Client client.Client
	// Warnings collects the admission warnings the API server returns to Client.
	Warnings *WarningRecorder

	// dir holds files of the control plane's own, such as the kubeconfig of the
	// controller manager; Stop removes it.
	dir string

	mu sync.Mutex
	// sessions are the processes started by Serve and ControllerManager; Stop kills
	// those the caller left running.
	sessions []*gexec.Session
}

// Scheme returns a new scheme with client-go's built-in types and cert-manager's
// v1 types (Certificate, Issuer, ClusterIssuer, CertificateRequest).
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("adding client-go's types to the scheme: %w", err)
	}
	if err := cmapi.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("adding cert-manager's types to the scheme: %w", err)
	}
	return s, nil
}

// Start starts kube-apiserver and etcd, with RBAC authorization, and installs what
// opts ask for. The caller calls Stop (Ginkgo: DeferCleanup(cp.Stop)), also when a
// later step of its set-up fails.
func Start(opts Options) (*ControlPlane, error) {
	if os.Getenv(AssetsEnv) == "" {
		return nil, fmt.Errorf("%s is not set: run the tests with `make test`, or with %s=$(hack/envtest-assets.sh), which builds the control plane", AssetsEnv, AssetsEnv)
	}
	s, err := Scheme()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{Scheme: s, ErrorIfCRDPathMissing: true}
	// RBAC is envtest's default too; it is set here because Kubeconfig promises that
	// RBAC applies to the users it creates.
	env.ControlPlane.GetAPIServer().Configure().Set("authorization-mode", "RBAC")
	if opts.Webhooks {
		env.WebhookInstallOptions = envtest.WebhookInstallOptions{
			MutatingWebhooks: []*admissionregistrationv1.MutatingWebhookConfiguration{webhook.MutatingConfiguration(webhookConfiguration)},
			ValidatingWebhooks: []*admissionregistrationv1.ValidatingWebhookConfiguration{
				webhook.ValidatingConfiguration(webhookConfiguration),
				webhook.EnforcementConfiguration(webhookConfiguration),
			},
		}
	}
	if opts.CertManagerCRDs {
		dir, err := certManagerCRDDir()
		if err != nil {
			return nil, err
		}
		env.CRDDirectoryPaths = append(env.CRDDirectoryPaths, dir)
	}

	cp := &ControlPlane{Env: env, Warnings: &WarningRecorder{}}
	cfg, err := env.Start()
	if err != nil {
		// envtest may have started some of its processes; stop them.
		return nil, errors.Join(fmt.Errorf("starting the envtest control plane: %w", err), cp.stopEnv())
	}
	cp.Config = cfg
	running.add()

	fail := func(err error) (*ControlPlane, error) {
		return nil, errors.Join(err, cp.Stop())
	}
	if cp.dir, err = os.MkdirTemp("", "valkey-webhook-framework-"); err != nil {
		return fail(fmt.Errorf("creating the control plane's directory: %w", err))
	}
	clientCfg := rest.CopyConfig(cfg)
	clientCfg.WarningHandlerWithContext = nil
	clientCfg.WarningHandler = cp.Warnings
	if cp.Client, err = client.New(clientCfg, client.Options{Scheme: s}); err != nil {
		return fail(fmt.Errorf("creating the admin client: %w", err))
	}
	return cp, nil
}

// Stop kills the processes started by Serve and ControllerManager that are still
// running, stops kube-apiserver and etcd, and removes the control plane's files.
// Once the last ControlPlane of the process stops, the binary Serve built is removed
// too.
func (cp *ControlPlane) Stop() error {
	cp.mu.Lock()
	sessions := cp.sessions
	cp.sessions = nil
	cp.mu.Unlock()
	for _, s := range sessions {
		if s.ExitCode() == -1 {
			s.Kill()
			<-s.Exited
		}
	}

	errs := []error{cp.stopEnv()}
	if cp.dir != "" {
		if err := os.RemoveAll(cp.dir); err != nil {
			errs = append(errs, fmt.Errorf("removing the control plane's directory: %w", err))
		}
	}
	if cp.Config != nil {
		cp.Config = nil
		running.done()
	}
	return errors.Join(errs...)
}

func (cp *ControlPlane) stopEnv() error {
	if err := cp.Env.Stop(); err != nil {
		return fmt.Errorf("stopping the envtest control plane: %w", err)
	}
	return nil
}

// track remembers a started process, for Stop.
func (cp *ControlPlane) track(s *gexec.Session) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.sessions = append(cp.sessions, s)
}

// Kubeconfig writes a kubeconfig for a user of the API server into dir and returns
// its path. The user "" is the admin (group system:masters). Any other user is
// created with its own client certificate, in the given groups (and
// system:authenticated), so that RBAC applies to it: it may do nothing a Role or
// ClusterRole bound to it, or to its groups, does not allow.
func (cp *ControlPlane) Kubeconfig(dir, user string, groups ...string) (string, error) {
	cfg := cp.Config
	name := "admin"
	if user != "" {
		u, err := cp.Env.ControlPlane.AddUser(envtest.User{Name: user, Groups: groups}, nil)
		if err != nil {
			return "", fmt.Errorf("creating the user %q: %w", user, err)
		}
		cfg = u.Config()
		name = "user-" + fileSafe(user)
	}
	path := filepath.Join(dir, name+".kubeconfig")
	if err := writeKubeconfig(cfg, path); err != nil {
		return "", fmt.Errorf("writing the kubeconfig of %q: %w", name, err)
	}
	return path, nil
}

// writeKubeconfig writes a kubeconfig with the server, CA and credentials of cfg.
func writeKubeconfig(cfg *rest.Config, path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["envtest"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "envtest"}
	kc.CurrentContext = "envtest"
	return clientcmd.WriteToFile(*kc, path)
}

// fileSafe replaces the characters of a user name that do not belong in a file name.
func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
			return r
		}
		return '_'
	}, s)
}

// certManagerCRDDir finds deploy/crds in the cert-manager module this module
// requires.
func certManagerCRDDir() (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager")
	cmd.Dir = repoRoot()
	out, err := cmd.Output()
	if err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			err = fmt.Errorf("%w: %s", err, bytesTrim(exitErr.Stderr))
		}
		return "", fmt.Errorf("finding the cert-manager module: %w", err)
	}
	moduleDir := bytesTrim(out)
	if moduleDir == "" {
		return "", errors.New("finding the cert-manager module: `go list -m` printed no directory; run `go mod download github.com/cert-manager/cert-manager`")
	}
	dir := filepath.Join(moduleDir, "deploy", "crds")
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("finding cert-manager's CRDs: %w", err)
	}
	return dir, nil
}

func bytesTrim(b []byte) string { return strings.TrimSpace(string(b)) }

// repoRoot is the root of this repository's checkout, found from this file's path,
// or "" (the working directory, which go test sets to the package's directory, also
// inside the module) when the path is not known, as with -trimpath.
func repoRoot() string {
	_, here, _, ok := goruntime.Caller(0)
	if !ok {
		return ""
	}
	root := filepath.Join(filepath.Dir(here), "..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return ""
	}
	return root
}
