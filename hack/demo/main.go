// Command demo runs valkey-webhook against a local control plane and shows what it
// does: `make demo`. It starts kube-apiserver and etcd (the envtest binaries),
// registers the webhook with the configurations `generate install --dev-url`
// prints, runs `valkey-webhook serve` against them, applies the example
// StatefulSet and an unsafe one, and reports what was injected, which companion
// objects appeared and what was denied. It then stays up until Ctrl-C, with a
// kubeconfig for kubectl.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/valkey-webhook/valkey-webhook/defaults"
	"github.com/valkey-webhook/valkey-webhook/generator"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return errors.New("KUBEBUILDER_ASSETS is not set: run `make demo`, which builds the control plane first")
	}
	dir, err := os.MkdirTemp("", "valkey-webhook-demo-")
	if err != nil {
		return err
	}
	step("starting kube-apiserver and etcd")
	env := &envtest.Environment{}
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("starting the control plane: %w", err)
	}
	defer func() {
		step("stopping")
		_ = env.Stop()
		_ = os.RemoveAll(dir)
	}()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(cfg, kubeconfig); err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		return err
	}

	wio := env.WebhookInstallOptions
	url := "https://" + net.JoinHostPort(wio.LocalServingHost, strconv.Itoa(wio.LocalServingPort))
	step("registering the webhook: generate install --dev-url " + url)
	configs, err := generator.Install(generator.InstallOptions{DevURL: url, CABundle: wio.LocalServingCAData})
	if err != nil {
		return err
	}
	for _, obj := range configs {
		if err := c.Create(ctx, obj); err != nil {
			return fmt.Errorf("creating %s: %w", obj.GetName(), err)
		}
	}

	binary := filepath.Join(dir, "valkey-webhook")
	step("building and starting valkey-webhook serve (its log: " + filepath.Join(dir, "serve.log") + ")")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", binary, "./cmd/valkey-webhook").CombinedOutput(); err != nil {
		return fmt.Errorf("building valkey-webhook: %v: %s", err, out)
	}
	logFile, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	probe := freeAddr()
	serve := exec.Command(binary, "serve", "--kubeconfig", kubeconfig, "--leader-elect=false",
		"--port", strconv.Itoa(wio.LocalServingPort), "--cert-dir", wio.LocalServingCertDir,
		"--health-probe-bind-address", probe, "--metrics-bind-address", "0", "--shutdown-drain-delay", "0s")
	serve.Stdout, serve.Stderr = logFile, logFile
	if err := serve.Start(); err != nil {
		return err
	}
	defer func() {
		_ = serve.Process.Signal(syscall.SIGTERM)
		_ = serve.Wait()
	}()
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		resp, err := http.Get("http://" + probe + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	}); err != nil {
		return fmt.Errorf("valkey-webhook did not become ready; see %s: %w", logFile.Name(), err)
	}

	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}}); err != nil {
		return err
	}
	step("applying examples/minimal-statefulset.yaml")
	sts, err := readStatefulSet("examples/minimal-statefulset.yaml")
	if err != nil {
		return err
	}
	if err := c.Create(ctx, sts); err != nil {
		return fmt.Errorf("creating the example: %w", err)
	}
	stored := &appsv1.StatefulSet{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(sts), stored); err != nil {
		return err
	}
	reportInjected(stored)
	if err := reportCompanions(ctx, c, stored); err != nil {
		return err
	}

	step("applying examples/unsafe/root-user.yaml")
	unsafe, err := readStatefulSet("examples/unsafe/root-user.yaml")
	if err != nil {
		return err
	}
	unsafe.Name = "root-user"
	if err := c.Create(ctx, unsafe); apierrors.IsInvalid(err) {
		fmt.Printf("  denied: %v\n", err)
	} else {
		return fmt.Errorf("the unsafe example was not denied: %v", err)
	}

	fmt.Printf("\nThe control plane stays up until Ctrl-C. Try:\n  kubectl --kubeconfig %s -n team-a get statefulsets,configmaps,services,pdb,networkpolicies,secrets\n", kubeconfig)
	<-ctx.Done()
	return nil
}

func step(s string) { fmt.Printf("==> %s\n", s) }

func reportInjected(sts *appsv1.StatefulSet) {
	step("what admission injected into cache")
	spec := sts.Spec.Template.Spec
	fmt.Printf("  podManagementPolicy: %s, serviceName: %s, volumeClaimTemplates: %d (%s)\n",
		sts.Spec.PodManagementPolicy, sts.Spec.ServiceName, len(sts.Spec.VolumeClaimTemplates), sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage())
	fmt.Printf("  pod template: %s=%s\n", defaults.ChecksumAnnotation, sts.Spec.Template.Annotations[defaults.ChecksumAnnotation])
	for _, c := range spec.Containers {
		fmt.Printf("  container %s: image %s, %d ports, probes liveness=%t readiness=%t startup=%t, %d mounts, read-only root=%t\n",
			c.Name, c.Image, len(c.Ports), c.LivenessProbe != nil, c.ReadinessProbe != nil, c.StartupProbe != nil, len(c.VolumeMounts),
			c.SecurityContext != nil && c.SecurityContext.ReadOnlyRootFilesystem != nil && *c.SecurityContext.ReadOnlyRootFilesystem)
	}
	fmt.Printf("  runs as user %d, seccomp %s, topology spread on %s, %d volumes\n",
		*spec.SecurityContext.RunAsUser, spec.SecurityContext.SeccompProfile.Type, spec.TopologySpreadConstraints[0].TopologyKey, len(spec.Volumes))
}

func reportCompanions(ctx context.Context, c client.Client, sts *appsv1.StatefulSet) error {
	step("companion objects the controller made beside it")
	companions := []struct {
		kind string
		obj  client.Object
		name string
	}{
		{"ConfigMap", &corev1.ConfigMap{}, sts.Name + "-config"},
		{"Service", &corev1.Service{}, sts.Name + "-headless"},
		{"Service", &corev1.Service{}, sts.Name},
		{"PodDisruptionBudget", &policyv1.PodDisruptionBudget{}, sts.Name},
		{"NetworkPolicy", &networkingv1.NetworkPolicy{}, sts.Name},
		{"Secret", &corev1.Secret{}, sts.Name + "-auth"},
	}
	for _, comp := range companions {
		key := client.ObjectKey{Namespace: sts.Namespace, Name: comp.name}
		if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			return c.Get(ctx, key, comp.obj) == nil, nil
		}); err != nil {
			return fmt.Errorf("%s %s did not appear: %w", comp.kind, comp.name, err)
		}
		fmt.Printf("  %s %s\n", comp.kind, comp.name)
	}
	return nil
}

func readStatefulSet(path string) (*appsv1.StatefulSet, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sts := &appsv1.StatefulSet{}
	if err := yaml.UnmarshalStrict(data, sts); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return sts, nil
}

func writeKubeconfig(cfg *rest.Config, path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["demo"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["demo"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["demo"] = &clientcmdapi.Context{Cluster: "demo", AuthInfo: "demo"}
	kc.CurrentContext = "demo"
	return clientcmd.WriteToFile(*kc, path)
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:18081"
	}
	defer l.Close()
	return l.Addr().String()
}
