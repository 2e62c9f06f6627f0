// Command demo shows valkey-webhook doing its job on a real node: `make demo` (root,
// Linux). It starts the real single-node Kubernetes of make node-up, installs
// valkey-webhook in-cluster as `generate install` installs it, applies the minimal
// example, and reports what admission injected, which companion objects appeared,
// the Valkey cluster that formed by itself (cluster status), a key written and read
// back, and an unsafe spec denied. It then prints kubectl commands to look around
// and stays up until Ctrl-C, which removes the node (make node-down).
package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/valkey-io/valkey-go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/defaults"
	"github.com/valkey-webhook/valkey-webhook/test/framework"
)

const ns = "team-a"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	repo, err := os.Getwd()
	if err == nil {
		err = run(ctx, repo)
	}
	step("removing the node (make node-down)")
	if derr := framework.NodeDown(repo, os.Stderr); derr != nil && err == nil {
		err = derr
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, repo string) error {
	step("starting a real single-node Kubernetes (make node-up): kubelet, containerd, CNI, kube-proxy, CoreDNS, kube-router, local-path-provisioner")
	node, err := framework.NodeUp(ctx, repo, os.Stderr)
	if err != nil {
		return err
	}
	for _, role := range slices.Sorted(maps.Keys(node.Images)) {
		fmt.Printf("  image %s=%s\n", role, node.Images[role])
	}
	fmt.Printf("  (the exporter image is a stand-in for redis_exporter, which cannot be built here)\n")
	cfg, err := clientcmd.BuildConfigFromFlags("", node.Kubeconfig)
	if err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		return err
	}

	step("installing valkey-webhook in-cluster: generate install --cert-mode self-managed --image " + node.Images["valkey-webhook"] + " | kubectl apply -f -")
	manifests, err := node.InstallManifests(ctx)
	if err != nil {
		return err
	}
	if _, _, err := node.Kubectl(ctx, manifests, "apply", "-f", "-"); err != nil {
		return err
	}
	if _, _, err := node.Kubectl(ctx, "", "-n", framework.WebhookNamespace, "rollout", "status", "deployment/valkey-webhook", "--timeout=3m"); err != nil {
		return err
	}
	fmt.Println("  2 replicas Ready, leader election on, the API server calls them through their Service")

	step("kubectl apply -f examples/minimal-statefulset.yaml (its image set to the node's)")
	example, err := node.MinimalExample(ns)
	if err != nil {
		return err
	}
	if _, _, err := node.Kubectl(ctx, "", "create", "namespace", ns); err != nil {
		return err
	}
	// The webhook answers once its certificate is in the configurations: retry the
	// first apply for a while.
	if err := poll(ctx, 2*time.Minute, func() (bool, error) {
		_, _, err := node.Kubectl(ctx, example, "apply", "-f", "-")
		return err == nil, nil
	}); err != nil {
		return fmt.Errorf("applying the example: %w", err)
	}
	sts := &appsv1.StatefulSet{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "cache"}, sts); err != nil {
		return err
	}
	reportInjected(sts)
	if err := reportCompanions(ctx, c, sts); err != nil {
		return err
	}

	step("waiting for the cluster to form by itself (the lifecycle controller, in-cluster)")
	if err := poll(ctx, 4*time.Minute, func() (bool, error) { return formed(ctx, c) }); err != nil {
		return fmt.Errorf("the cluster did not form: %w", err)
	}
	addrs, password, err := podAddresses(ctx, c)
	if err != nil {
		return err
	}
	pwFile := filepath.Join(os.TempDir(), "valkey-webhook-demo-password")
	if err := os.WriteFile(pwFile, []byte(password), 0o600); err != nil {
		return err
	}
	defer os.Remove(pwFile)
	step("valkey-webhook cluster status --nodes <the pod IPs> --password-file <key password of Secret cache-auth>")
	status, err := node.ValkeyWebhook(ctx, "cluster", "status", "--nodes", strings.Join(addrs, ","), "--password-file", pwFile)
	if err != nil {
		return err
	}
	fmt.Print(indent(status))

	step("a key written and read back through a valkey-go cluster client")
	if err := writeAndRead(ctx, addrs, password); err != nil {
		return err
	}

	step("kubectl apply -f examples/unsafe/root-user.yaml")
	unsafe, err := os.ReadFile(filepath.Join(repo, "examples/unsafe/root-user.yaml"))
	if err != nil {
		return err
	}
	_, denied, err := node.Kubectl(ctx, strings.Replace(string(unsafe), "name: cache\n", "name: root-user\n", 1), "apply", "-f", "-")
	if err == nil {
		return errors.New("the unsafe example was not denied")
	}
	fmt.Print(indent(denied))

	k := node.KubectlBinary + " --kubeconfig " + node.Kubeconfig
	fmt.Printf("\nThe node stays up until Ctrl-C, which removes it. Look around:\n"+
		"  %[1]s -n team-a get statefulsets,pods,pvc,configmaps,services,pdb,networkpolicies,secrets\n"+
		"  %[1]s -n team-a get events --sort-by=.lastTimestamp\n"+
		"  %[1]s -n team-a exec cache-0 -c valkey -- sh -c 'REDISCLI_AUTH=$(cat /etc/valkey/auth/password) valkey-cli cluster nodes'\n"+
		"  %[1]s -n %[2]s logs deployment/valkey-webhook\n", k, framework.WebhookNamespace)
	<-ctx.Done()
	return nil
}

func step(s string) { fmt.Printf("==> %s\n", s) }

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ") + "\n"
}

func poll(ctx context.Context, timeout time.Duration, f func() (bool, error)) error {
	return wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(context.Context) (bool, error) { return f() })
}

// formed: every pod Ready and the controller's ClusterFormed Event seen.
func formed(ctx context.Context, c client.Client) (bool, error) {
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{"app": "cache"}); err != nil {
		return false, err
	}
	ready := 0
	for _, p := range pods.Items {
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	events := &eventsv1.EventList{}
	if err := c.List(ctx, events, client.InNamespace(ns)); err != nil {
		return false, err
	}
	for _, e := range events.Items {
		if e.Regarding.Kind == "StatefulSet" && e.Reason == "ClusterFormed" && ready == 6 {
			fmt.Printf("  6 pods Ready; Event %s: %s\n", e.Reason, e.Note)
			return true, nil
		}
	}
	return false, nil
}

func podAddresses(ctx context.Context, c client.Client) ([]string, string, error) {
	var addrs []string
	for i := range 6 {
		p := &corev1.Pod{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: fmt.Sprintf("cache-%d", i)}, p); err != nil {
			return nil, "", err
		}
		addrs = append(addrs, net.JoinHostPort(p.Status.PodIP, "6379"))
	}
	s := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "cache-auth"}, s); err != nil {
		return nil, "", err
	}
	return addrs, string(s.Data[defaults.PasswordKey]), nil
}

func writeAndRead(ctx context.Context, addrs []string, password string) error {
	cl, err := valkey.NewClient(valkey.ClientOption{InitAddress: addrs, Password: password, DisableCache: true})
	if err != nil {
		return err
	}
	defer cl.Close()
	value := time.Now().UTC().Format(time.RFC3339)
	if err := cl.Do(ctx, cl.B().Set().Key("demo").Value(value).Build()).Error(); err != nil {
		return err
	}
	got, err := cl.Do(ctx, cl.B().Get().Key("demo").Build()).ToString()
	if err != nil {
		return err
	}
	if got != value {
		return fmt.Errorf("read back %q, wrote %q", got, value)
	}
	slot, _ := cl.Do(ctx, cl.B().ClusterKeyslot().Key("demo").Build()).AsInt64()
	fmt.Printf("  SET demo %q, GET demo: %q (slot %d)\n", value, got, slot)
	return nil
}

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
		if err := poll(ctx, time.Minute, func() (bool, error) { return c.Get(ctx, key, comp.obj) == nil, nil }); err != nil {
			return fmt.Errorf("%s %s did not appear: %w", comp.kind, comp.name, err)
		}
		fmt.Printf("  %s %s\n", comp.kind, comp.name)
	}
	return nil
}
