package generator

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
	"github.com/valkey-webhook/valkey-webhook/scaleguard"
	"github.com/valkey-webhook/valkey-webhook/webhook"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from the current output")

// modes are the generator's outputs, each with its golden file.
var modes = map[string]func() ([]byte, error){
	"cluster-minimal": func() ([]byte, error) {
		sts, err := MinimalCluster(ClusterOptions{Name: "cache", Namespace: "team-a"}, config.Default())
		if err != nil {
			return nil, err
		}
		return Render([]client.Object{sts}, nil)
	},
	"cluster-choices": func() ([]byte, error) {
		sts, err := MinimalCluster(ClusterOptions{
			Name: "sessions", Namespace: "team-b", Masters: 4, ReplicasPerMaster: ptr.To(2),
			Memory: "4Gi", Storage: "50Gi", StorageClass: "fast-ssd", TLSIssuer: "ClusterIssuer/internal-ca",
			Auth: ptr.To(true),
		}, config.Default())
		if err != nil {
			return nil, err
		}
		return Render([]client.Object{sts}, nil)
	},
	"cluster-hardened": func() ([]byte, error) {
		objects, header, err := HardenedCluster(ClusterOptions{Name: "cache", Namespace: "team-a", TLSIssuer: "Issuer/valkey-ca"}, config.Default())
		if err != nil {
			return nil, err
		}
		return Render(objects, header)
	},
	"install": func() ([]byte, error) {
		objects, err := Install(InstallOptions{})
		if err != nil {
			return nil, err
		}
		return Render(objects, nil)
	},
	"install-self-managed": func() ([]byte, error) {
		objects, err := Install(InstallOptions{CertMode: CertModeSelfManaged, Enforcement: "deny", FailurePolicy: "Ignore", Replicas: 3})
		if err != nil {
			return nil, err
		}
		return Render(objects, nil)
	},
	"install-dev": func() ([]byte, error) {
		objects, err := Install(InstallOptions{DevURL: "https://127.0.0.1:9443", CABundle: []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")})
		if err != nil {
			return nil, err
		}
		return Render(objects, nil)
	},
}

// TestGolden renders each mode ten times: every run must give the same bytes, and
// those the golden file holds.
func TestGolden(t *testing.T) {
	for name, render := range modes {
		t.Run(name, func(t *testing.T) {
			first, err := render()
			if err != nil {
				t.Fatal(err)
			}
			for range 9 {
				again, err := render()
				if err != nil || string(again) != string(first) {
					t.Fatalf("rendering twice gave different bytes (err %v)", err)
				}
			}
			path := filepath.Join("testdata", name+".yaml")
			if *update {
				if err := os.WriteFile(path, first, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./generator -update, then review the diff)", err)
			}
			if diff := cmp.Diff(string(want), string(first)); diff != "" {
				t.Errorf("%s differs (-want +got); if intended, run go test ./generator -update and review:\n%s", path, diff)
			}
		})
	}
}

func TestClusterFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		opts ClusterOptions
		want FlagErrors
	}{
		{"no name", ClusterOptions{}, FlagErrors{{Flag: "name", Value: "", Reason: ""}}},
		{"not a DNS label", ClusterOptions{Name: "Cache_1"}, FlagErrors{{Flag: "name", Value: "Cache_1"}}},
		{"replicas below the minimum", ClusterOptions{Name: "c", Replicas: 4}, FlagErrors{{Flag: "replicas", Value: "4"}}},
		{"replicas with masters", ClusterOptions{Name: "c", Replicas: 6, Masters: 3}, FlagErrors{{Flag: "replicas", Value: "6"}}},
		{"too few masters", ClusterOptions{Name: "c", Masters: 2}, FlagErrors{{Flag: "masters", Value: "2"}}},
		{"memory that does not parse", ClusterOptions{Name: "c", Memory: "lots"}, FlagErrors{{Flag: "memory", Value: "lots"}}},
		{"storage that does not parse", ClusterOptions{Name: "c", Storage: "-1Gi"}, FlagErrors{{Flag: "storage", Value: "-1Gi"}}},
		{"issuer without KIND/NAME", ClusterOptions{Name: "c", TLSIssuer: "internal-ca"}, FlagErrors{{Flag: "tls-issuer", Value: "internal-ca"}}},
		{"issuer of an unknown kind", ClusterOptions{Name: "c", TLSIssuer: "Vault/ca"}, FlagErrors{{Flag: "tls-issuer", Value: "Vault/ca"}}},
		{"issuer and secret", ClusterOptions{Name: "c", TLSIssuer: "Issuer/ca", TLSSecret: "tls"}, FlagErrors{{Flag: "tls-secret", Value: "tls"}}},
		{"several at once", ClusterOptions{Name: "c", Memory: "x", Storage: "y"}, FlagErrors{{Flag: "memory", Value: "x"}, {Flag: "storage", Value: "y"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := MinimalCluster(tc.opts, config.Default())
			var got FlagErrors
			if !errors.As(err, &got) {
				t.Fatalf("error %v is not FlagErrors", err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b FlagError) bool { return a.Flag == b.Flag && a.Value == b.Value })); diff != "" {
				t.Errorf("refused flags (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInstallFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		opts InstallOptions
		want []string
	}{
		{"kube-system", InstallOptions{Namespace: "kube-system"}, []string{"namespace"}},
		{"bad failure policy", InstallOptions{FailurePolicy: "Sometimes"}, []string{"failure-policy"}},
		{"bad enforcement", InstallOptions{Enforcement: "strict"}, []string{"enforcement"}},
		{"unknown certificate mode", InstallOptions{CertMode: "vault"}, []string{"cert-mode"}},
		{"no replicas", InstallOptions{Replicas: -1}, []string{"replicas"}},
		{"dev URL without CA", InstallOptions{DevURL: "https://127.0.0.1:9443"}, []string{"ca-file"}},
		{"dev URL with a path", InstallOptions{DevURL: "https://127.0.0.1:9443/x", CABundle: []byte("ca")}, []string{"dev-url"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Install(tc.opts)
			var got FlagErrors
			if !errors.As(err, &got) {
				t.Fatalf("error %v is not FlagErrors", err)
			}
			var flags []string
			for _, fe := range got {
				flags = append(flags, fe.Flag)
			}
			if diff := cmp.Diff(tc.want, flags); diff != "" {
				t.Errorf("refused flags (-want +got):\n%s", diff)
			}
		})
	}
}

// hardenedJob renders the hardened cluster and returns its objects' Job and
// NetworkPolicy (nil when absent) and the StatefulSet.
func hardenedJob(t *testing.T, o ClusterOptions, p config.Policy) (*batchv1.Job, *networkingv1.NetworkPolicy, *appsv1.StatefulSet, []string) {
	t.Helper()
	objects, header, err := HardenedCluster(o, p)
	if err != nil {
		t.Fatal(err)
	}
	var (
		job *batchv1.Job
		np  *networkingv1.NetworkPolicy
		sts *appsv1.StatefulSet
	)
	for _, obj := range objects {
		switch obj := obj.(type) {
		case *batchv1.Job:
			job = obj
		case *networkingv1.NetworkPolicy:
			if obj.Name == o.Name { // the cluster's, not the Job's own
				np = obj
			}
		case *appsv1.StatefulSet:
			sts = obj
		}
	}
	return job, np, sts, header
}

// TestInitJob compares what varies in the cluster-init Job with TLS, auth and the
// namespace: its arguments, environment, mounts and volumes. The rest is in the
// cluster-hardened golden file.
func TestInitJob(t *testing.T) {
	nodes := func(ns, domain string) string {
		var s []string
		for i := range 6 {
			s = append(s, fmt.Sprintf("c-%d.c-headless.%s.svc.%s:6379", i, ns, domain))
		}
		return "--nodes=" + strings.Join(s, ",")
	}
	secret := func(name, secretName string, keys ...string) corev1.Volume {
		v := corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secretName, DefaultMode: ptr.To(int32(0o440))}}}
		for _, k := range keys {
			v.Secret.Items = append(v.Secret.Items, corev1.KeyToPath{Key: k, Path: k})
		}
		return v
	}
	authMount := corev1.VolumeMount{Name: "auth", MountPath: "/etc/valkey/auth", ReadOnly: true}
	tlsMount := corev1.VolumeMount{Name: "tls", MountPath: "/etc/valkey/tls", ReadOnly: true}
	mtls := config.Default()
	mtls.TLS.SecretName = "team-tls"
	mtls.TLS.AuthClients = true
	mtls.TLS.ClusterDomain = "corp.example"
	mtls.Auth.ExistingSecret = "team-auth"
	mtls.Cluster.ReplicasPerMaster = 2

	type want struct {
		Args    []string
		Env     []corev1.EnvVar
		Mounts  []corev1.VolumeMount
		Volumes []corev1.Volume
		Image   string
	}
	tests := []struct {
		name string
		opts ClusterOptions
		p    config.Policy
		want want
	}{
		{
			name: "auth, no TLS",
			opts: ClusterOptions{Name: "c", Namespace: "team-a"},
			p:    config.Default(),
			want: want{
				Args:    []string{"cluster", "init", nodes("team-a", "cluster.local"), "--replicas-per-master=1", "--timeout=2m0s", "--password-file=/etc/valkey/auth/password"},
				Mounts:  []corev1.VolumeMount{authMount},
				Volumes: []corev1.Volume{secret("auth", "c-auth", "password")},
				Image:   DefaultImage,
			},
		},
		{
			name: "neither auth nor TLS, another image",
			opts: ClusterOptions{Name: "c", Namespace: "team-a", Auth: ptr.To(false), InitImage: "registry.internal/valkey-webhook:v0.1.0"},
			p:    config.Default(),
			want: want{
				Args:  []string{"cluster", "init", nodes("team-a", "cluster.local"), "--replicas-per-master=1", "--timeout=2m0s"},
				Image: "registry.internal/valkey-webhook:v0.1.0",
			},
		},
		{
			name: "client certificates, an existing auth Secret, another domain",
			opts: ClusterOptions{Name: "c", Namespace: "team-a", Replicas: 9},
			p:    mtls,
			want: want{
				Args: []string{"cluster", "init", nodesOf(9, "team-a", "corp.example"), "--replicas-per-master=2", "--timeout=2m0s",
					"--password-file=/etc/valkey/auth/password", "--tls-ca=/etc/valkey/tls/ca.crt", "--tls-cert=/etc/valkey/tls/tls.crt", "--tls-key=/etc/valkey/tls/tls.key"},
				Mounts:  []corev1.VolumeMount{authMount, tlsMount},
				Volumes: []corev1.Volume{secret("auth", "team-auth", "password"), secret("tls", "team-tls", "ca.crt", "tls.crt", "tls.key")},
				Image:   DefaultImage,
			},
		},
		{
			name: "no namespace: the pod's own",
			opts: ClusterOptions{Name: "c", TLSIssuer: "Issuer/ca"},
			p:    config.Default(),
			want: want{
				Args: []string{"cluster", "init", nodes("$(POD_NAMESPACE)", "cluster.local"), "--replicas-per-master=1", "--timeout=2m0s", "--password-file=/etc/valkey/auth/password", "--tls-ca=/etc/valkey/tls/ca.crt"},
				Env: []corev1.EnvVar{{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{
					FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"},
				}}},
				Mounts:  []corev1.VolumeMount{authMount, tlsMount},
				Volumes: []corev1.Volume{secret("auth", "c-auth", "password"), secret("tls", "c-tls", "ca.crt")},
				Image:   DefaultImage,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			job, _, sts, header := hardenedJob(t, tc.opts, tc.p)
			if job == nil {
				t.Fatal("no Job in the hardened output")
			}
			spec := job.Spec.Template.Spec
			c := spec.Containers[0]
			got := want{Args: c.Args, Env: c.Env, Mounts: c.VolumeMounts, Volumes: spec.Volumes, Image: c.Image}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Job (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(defaults.CompanionLabels(sts), job.Labels); diff != "" {
				t.Errorf("Job labels (-want +got):\n%s", diff)
			}
			if job.Namespace != sts.Namespace || job.Name != sts.Name+"-init" {
				t.Errorf("Job %s/%s, want %s/%s-init", job.Namespace, job.Name, sts.Namespace, sts.Name)
			}
			for _, line := range header {
				if strings.Contains(line, "cluster init --") {
					t.Errorf("the header still gives the cluster init command by hand: %q", line)
				}
			}
		})
	}
}

func nodesOf(n int, ns, domain string) string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("c-%d.c-headless.%s.svc.%s:6379", i, ns, domain)
	}
	return "--nodes=" + strings.Join(s, ",")
}

// TestInitJobRestricted: the Job's pod meets the restricted Pod Security Standard
// and reaches neither the API server nor the Services' environment.
func TestInitJobRestricted(t *testing.T) {
	job, _, _, _ := hardenedJob(t, ClusterOptions{Name: "c", Namespace: "team-a", TLSIssuer: "Issuer/ca"}, config.Default())
	spec := job.Spec.Template.Spec
	c := spec.Containers[0]
	checks := map[string]bool{
		"runAsNonRoot":                         ptr.Deref(spec.SecurityContext.RunAsNonRoot, false),
		"a non-root user":                      ptr.Deref(spec.SecurityContext.RunAsUser, 0) != 0,
		"seccomp RuntimeDefault":               spec.SecurityContext.SeccompProfile != nil && spec.SecurityContext.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault,
		"no privilege escalation":              c.SecurityContext.AllowPrivilegeEscalation != nil && !*c.SecurityContext.AllowPrivilegeEscalation,
		"read-only root filesystem":            ptr.Deref(c.SecurityContext.ReadOnlyRootFilesystem, false),
		"ALL capabilities dropped, none added": cmp.Equal(c.SecurityContext.Capabilities, &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}),
		"no service account token":             spec.AutomountServiceAccountToken != nil && !*spec.AutomountServiceAccountToken,
		"cpu and memory limits":                !c.Resources.Limits.Cpu().IsZero() && !c.Resources.Limits.Memory().IsZero(),
		"cpu and memory requests":              !c.Resources.Requests.Cpu().IsZero() && !c.Resources.Requests.Memory().IsZero(),
		"retried in a new pod, within bounds":  spec.RestartPolicy == corev1.RestartPolicyNever && job.Spec.BackoffLimit != nil && job.Spec.ActiveDeadlineSeconds != nil && job.Spec.TTLSecondsAfterFinished != nil,
	}
	for what, ok := range checks {
		if !ok {
			t.Errorf("the Job's pod lacks %s", what)
		}
	}
	for _, m := range c.VolumeMounts {
		if !m.ReadOnly {
			t.Errorf("mount %s is writable", m.Name)
		}
	}
}

// TestInitJobAdmittedByNetworkPolicy: whatever pods the policy lets reach the
// client port, the Job's pod is one of them, and not one of the cluster's own.
func TestInitJobAdmittedByNetworkPolicy(t *testing.T) {
	companion := map[string]string{"app.kubernetes.io/managed-by": "valkey-webhook", "valkey-webhook.io/statefulset": "c", "batch.kubernetes.io/job-name": "c-init"}
	with := func(extra map[string]string) map[string]string {
		out := maps.Clone(companion)
		maps.Copy(out, extra)
		return out
	}
	tests := []struct {
		clientPods, clientNamespaces string
		want                         map[string]string
		wantHeader                   string
	}{
		{clientPods: "", want: companion},
		{clientPods: "role=api", want: with(map[string]string{"role": "api"})},
		{clientPods: "tier in (web,batch),!legacy", want: with(map[string]string{"tier": "batch"})},
		{clientPods: "valkey-client", want: with(map[string]string{"valkey-client": "cluster-init"})},
		{clientPods: "valkey-client,valkey-client notin (cluster-init)", want: with(map[string]string{"valkey-client": "cluster-init-2"})},
		{clientPods: "app.kubernetes.io/managed-by notin (valkey-webhook)", want: map[string]string{"valkey-webhook.io/statefulset": "c", "batch.kubernetes.io/job-name": "c-init"}},
		{clientPods: "valkey-webhook.io/statefulset=other", want: with(map[string]string{"valkey-webhook.io/statefulset": "other"})},
		{clientPods: "role=api", clientNamespaces: "team=platform", want: with(map[string]string{"role": "api"}), wantHeader: `admits it only from namespaces matching "team=platform"`},
	}
	for _, tc := range tests {
		t.Run(tc.clientPods+" "+tc.clientNamespaces, func(t *testing.T) {
			p := config.Default()
			p.NetworkPolicy.ClientPodSelector = tc.clientPods
			p.NetworkPolicy.ClientNamespaceSelector = tc.clientNamespaces
			job, np, sts, header := hardenedJob(t, ClusterOptions{Name: "c", Namespace: "team-a"}, p)
			got := job.Spec.Template.Labels
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("pod labels (-want +got):\n%s", diff)
			}
			own, err := metav1.LabelSelectorAsSelector(sts.Spec.Selector)
			if err != nil {
				t.Fatal(err)
			}
			if own.Matches(labels.Set(got)) {
				t.Errorf("the Job's pod %v is selected as one of the cluster's own pods", got)
			}
			if !admitsToPort(t, np, got, corev1.ContainerPort{Name: defaults.ClientPortName, ContainerPort: 6379}) {
				t.Errorf("the NetworkPolicy does not admit the Job's pod %v to port 6379:\n%+v", got, np.Spec.Ingress)
			}
			if joined := strings.Join(header, "\n"); !strings.Contains(joined, tc.wantHeader) {
				t.Errorf("header lacks %q:\n%s", tc.wantHeader, joined)
			}
		})
	}
}

// admitsToPort evaluates np's ingress rules for a pod of the policy's namespace with
// podLabels, to the cluster pods' container port, by its number or its name; a
// namespace selector is taken to match (the header says it must).
func admitsToPort(t *testing.T, np *networkingv1.NetworkPolicy, podLabels map[string]string, port corev1.ContainerPort) bool {
	t.Helper()
	for _, rule := range np.Spec.Ingress {
		portOK := false
		for _, pp := range rule.Ports {
			portOK = portOK || pp.Port.IntValue() == int(port.ContainerPort) || pp.Port.Type == intstr.String && pp.Port.StrVal == port.Name
		}
		if !portOK {
			continue
		}
		for _, peer := range rule.From {
			s, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
			if err != nil {
				t.Fatal(err)
			}
			if s.Matches(labels.Set(podLabels)) {
				return true
			}
		}
	}
	return false
}

func TestInitJobRefusals(t *testing.T) {
	tests := []struct {
		name       string
		opts       ClusterOptions
		clientPods string
		want       []string
	}{
		{"an image with spaces", ClusterOptions{Name: "c", InitImage: "valkey webhook"}, "", []string{"init-image"}},
		{"an image for a Job left out", ClusterOptions{Name: "c", NoInitJob: true, InitImage: "x:1"}, "", []string{"init-image"}},
		{"an unknown hook", ClusterOptions{Name: "c", InitHook: "flux"}, "", []string{"init-hook"}},
		{"a hook for a Job left out", ClusterOptions{Name: "c", NoInitJob: true, InitHook: InitHookHelm}, "", []string{"init-hook"}},
		{"an unknown hook for a Job left out, said once", ClusterOptions{Name: "c", NoInitJob: true, InitHook: "flux"}, "", []string{"init-hook"}},
		{"pods that do not divide into shards", ClusterOptions{Name: "c", Replicas: 7}, "", []string{"replicas"}},
		{"reported with the other refusals", ClusterOptions{Name: "c", Replicas: 7, Memory: "lots"}, "", []string{"memory", "replicas"}},
		{"a client selector no pod matches", ClusterOptions{Name: "c"}, "role,!role", []string{"init-job"}},
		{"a client selector only the cluster's pods match", ClusterOptions{Name: "c"}, "app.kubernetes.io/name=valkey,app.kubernetes.io/instance=c", []string{"init-job"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := config.Default()
			p.NetworkPolicy.ClientPodSelector = tc.clientPods
			_, _, err := HardenedCluster(tc.opts, p)
			var got FlagErrors
			if !errors.As(err, &got) {
				t.Fatalf("error %v is not FlagErrors", err)
			}
			var flags []string
			for _, fe := range got {
				flags = append(flags, fe.Flag)
			}
			if diff := cmp.Diff(tc.want, flags); diff != "" {
				t.Errorf("refused flags (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("a multiple of the shard size, and no Job without one", func(t *testing.T) {
		for _, o := range []ClusterOptions{{Name: "c", Replicas: 8}, {Name: "c", Replicas: 7, NoInitJob: true}} {
			if _, _, err := HardenedCluster(o, config.Default()); err != nil {
				t.Errorf("%+v: %v", o, err)
			}
		}
	})
}

// TestInitHook: --init-hook makes the Job the hook of the tool that applies the
// output, and its header says when the hook runs; none, or no choice, is a
// plain Job.
func TestInitHook(t *testing.T) {
	tests := []struct {
		hook        string
		annotations map[string]string
		header      string
	}{
		{"", nil, ""},
		{InitHookNone, nil, ""},
		{InitHookArgoCD, map[string]string{
			"argocd.argoproj.io/hook":               "PostSync",
			"argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation",
		}, "It is an Argo CD PostSync hook"},
		{InitHookHelm, map[string]string{
			"helm.sh/hook":               "post-install,post-upgrade",
			"helm.sh/hook-delete-policy": "before-hook-creation",
		}, "It is a Helm post-install and post-upgrade hook"},
	}
	for _, tc := range tests {
		t.Run("hook "+tc.hook, func(t *testing.T) {
			job, _, _, header := hardenedJob(t, ClusterOptions{Name: "c", Namespace: "team-a", InitHook: tc.hook}, config.Default())
			if diff := cmp.Diff(tc.annotations, job.Annotations); diff != "" {
				t.Errorf("Job annotations (-want +got):\n%s", diff)
			}
			joined := strings.Join(header, "\n")
			if tc.header == "" && strings.Contains(joined, " hook") {
				t.Errorf("a plain Job's header speaks of a hook:\n%s", joined)
			}
			if !strings.Contains(joined, tc.header) {
				t.Errorf("header lacks %q:\n%s", tc.header, joined)
			}
		})
	}
}

// TestNoInitJob: --init-job=false leaves the Job out and gives the command by hand.
func TestNoInitJob(t *testing.T) {
	job, _, _, header := hardenedJob(t, ClusterOptions{Name: "c", Namespace: "team-a", NoInitJob: true}, config.Default())
	if job != nil {
		t.Error("NoInitJob printed the Job")
	}
	joined := strings.Join(header, "\n")
	if !strings.Contains(joined, "valkey-webhook cluster init --password-file") || !strings.Contains(joined, "--init-job=false") {
		t.Errorf("header lacks the cluster init command:\n%s", joined)
	}
}

func TestMatchingLabels(t *testing.T) {
	base := map[string]string{"a": "1"}
	tests := []struct {
		selector string
		want     map[string]string // nil: none match
	}{
		{"", base},
		{"a=1", base},
		{"a=2", map[string]string{"a": "2"}},
		{"a in (3,2)", map[string]string{"a": "2"}},
		{"a in (1,2),a notin (1)", map[string]string{"a": "2"}},
		{"a in (1),a notin (1)", nil},
		{"!a", map[string]string{}},
		{"a notin (1)", map[string]string{}},
		{"a,a notin (1)", map[string]string{"a": "cluster-init"}},
		{"a,!a", nil},
		{"b", map[string]string{"a": "1", "b": "cluster-init"}},
		{"a in (x,y),a in (y,z)", map[string]string{"a": "y"}},
		{"a in (x),a in (z)", nil},
	}
	for _, tc := range tests {
		t.Run(tc.selector, func(t *testing.T) {
			sel, err := metav1.ParseToLabelSelector(tc.selector)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := matchingLabels(base, sel)
			if ok != (tc.want != nil) {
				t.Fatalf("ok %v, want %v (labels %v)", ok, tc.want != nil, got)
			}
			if diff := cmp.Diff(tc.want, got); ok && diff != "" {
				t.Errorf("labels (-want +got):\n%s", diff)
			}
			if base["a"] != "1" {
				t.Fatal("matchingLabels changed its base")
			}
		})
	}
}

// TestInstallLeavesTheScaleGuardItsBudget: the API server must get the scale
// guard's own answer, so every webhook calling it gives it more time than its
// budget, with a second to spare for the call itself.
func TestInstallLeavesTheScaleGuardItsBudget(t *testing.T) {
	objects, err := Install(InstallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	for _, obj := range objects {
		c, ok := obj.(*admissionregistrationv1.ValidatingWebhookConfiguration)
		if !ok {
			continue
		}
		for _, w := range c.Webhooks {
			if w.ClientConfig.Service == nil || ptr.Deref(w.ClientConfig.Service.Path, "") != webhook.ScaleGuardPath {
				continue
			}
			calls++
			if timeout := time.Duration(ptr.Deref(w.TimeoutSeconds, 10)) * time.Second; timeout < scaleguard.Budget+time.Second {
				t.Errorf("%s: timeoutSeconds %s leaves the scale guard's %s budget less than a second", w.Name, timeout, scaleguard.Budget)
			}
		}
	}
	if calls != 2 {
		t.Errorf("%d webhooks call the scale guard, want 2 (statefulsets and statefulsets/scale)", calls)
	}
}
