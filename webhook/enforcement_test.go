package webhook

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

const bitnamiCluster = "docker.io/bitnami/valkey-cluster:8.0"

func TestRunsValkeyCluster(t *testing.T) {
	tests := []struct {
		name          string
		sts           *appsv1.StatefulSet
		wantContainer string
		wantOK        bool
	}{
		{
			name:          "bitnami valkey-cluster image",
			sts:           makeSTS("cache").Unlabeled().Image(bitnamiCluster).Obj(),
			wantContainer: "valkey",
			wantOK:        true,
		},
		{
			name:          "valkey-cluster image by digest",
			sts:           makeSTS("cache").Unlabeled().Image("docker.io/bitnami/valkey-cluster@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef").Obj(),
			wantContainer: "valkey",
			wantOK:        true,
		},
		{
			name:          "valkey-cluster image behind a registry port",
			sts:           makeSTS("cache").Unlabeled().Image("localhost:5000/valkey-cluster").Obj(),
			wantContainer: "valkey",
			wantOK:        true,
		},
		{
			name:          "cluster-enabled argument",
			sts:           makeSTS("cache").Unlabeled().Image("valkey/valkey:8.0").Args("--cluster-enabled", "yes").Obj(),
			wantContainer: "valkey",
			wantOK:        true,
		},
		{
			name:          "cluster-enabled in the command",
			sts:           makeSTS("cache").Unlabeled().Image("valkey/valkey:8.0").Command("valkey-server", "--cluster-enabled", "yes").Obj(),
			wantContainer: "valkey",
			wantOK:        true,
		},
		{
			name:          "cluster-enabled in a shell command",
			sts:           makeSTS("cache").Unlabeled().Image("valkey/valkey:8.0").Command("sh", "-c", "exec valkey-server --cluster-enabled yes").Obj(),
			wantContainer: "valkey",
			wantOK:        true,
		},
		{
			name: "cluster environment variable",
			sts: makeSTS("cache").Unlabeled().Image("valkey/valkey:8.0").
				Env(corev1.EnvVar{Name: "VALKEY_CLUSTER_ANNOUNCE_IP", Value: "10.0.0.1"}).Obj(),
			wantContainer: "valkey",
			wantOK:        true,
		},
		{
			name: "lower-case cluster environment variable",
			sts: makeSTS("cache").Unlabeled().Image("valkey/valkey:8.0").
				Env(corev1.EnvVar{Name: "valkey_cluster_hosts", Value: "a,b,c"}).Obj(),
			wantContainer: "valkey",
			wantOK:        true,
		},
		{
			name: "names the container that gave it away",
			sts: makeSTS("cache").Unlabeled().ContainerName("exporter").Image("oliver006/redis_exporter:v1.67.0").
				Container(corev1.Container{Name: "server", Image: bitnamiCluster}).Obj(),
			wantContainer: "server",
			wantOK:        true,
		},
		{
			name: "plain valkey without cluster hints",
			sts: makeSTS("cache").Unlabeled().Image("valkey/valkey:8.0").Args("--appendonly", "yes").
				Env(corev1.EnvVar{Name: "VALKEY_PORT", Value: "6379"}).Obj(),
		},
		{
			name: "plain valkey with an unrelated CLUSTER variable",
			sts: makeSTS("cache").Unlabeled().Image("valkey/valkey:8.0").
				Env(corev1.EnvVar{Name: "KUBERNETES_CLUSTER_DOMAIN", Value: "cluster.local"}).Obj(),
		},
		{
			name: "redis image in cluster mode",
			sts: makeSTS("cache").Unlabeled().Image("redis:7.4").Args("--cluster-enabled", "yes").
				Env(corev1.EnvVar{Name: "REDIS_CLUSTER_ANNOUNCE_IP", Value: "10.0.0.1"}).Obj(),
		},
		{
			name: "bitnami redis-cluster image",
			sts:  makeSTS("cache").Unlabeled().Image("docker.io/bitnami/redis-cluster:7.4").Obj(),
		},
		{
			name: "cluster hint on a non-valkey container",
			sts: makeSTS("cache").Unlabeled().Image("valkey/valkey:8.0").
				Container(corev1.Container{Name: "sidecar", Image: "busybox:1.36", Args: []string{"--cluster-enabled"}}).Obj(),
		},
		{
			name: "no containers",
			sts:  makeSTS("cache").Unlabeled().PodSpec(func(s *corev1.PodSpec) { s.Containers = nil }).Obj(),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			container, ok := RunsValkeyCluster(tc.sts)
			if container != tc.wantContainer || ok != tc.wantOK {
				t.Errorf("RunsValkeyCluster() = (%q, %v), want (%q, %v)", container, ok, tc.wantContainer, tc.wantOK)
			}
		})
	}
}

func TestEnforce(t *testing.T) {
	labelPath := field.NewPath("metadata", "labels").Key(defaults.ClusterLabel)
	tests := []struct {
		name         string
		sts          *appsv1.StatefulSet
		mode         string
		wantErr      field.ErrorList
		wantWarnings int
	}{
		{
			name:    "deny unlabeled cluster",
			sts:     makeSTS("cache").Unlabeled().Image(bitnamiCluster).Obj(),
			mode:    config.EnforceDeny,
			wantErr: field.ErrorList{field.Required(labelPath, "")},
		},
		{
			name:    "deny cluster with the label not enabled",
			sts:     makeSTS("cache").Label(defaults.ClusterLabel, "disabled").Image(bitnamiCluster).Obj(),
			mode:    config.EnforceDeny,
			wantErr: field.ErrorList{field.Required(labelPath, "")},
		},
		{
			name:         "warn about unlabeled cluster",
			sts:          makeSTS("cache").Unlabeled().Image("valkey/valkey:8.0").Args("--cluster-enabled", "yes").Obj(),
			mode:         config.EnforceWarn,
			wantWarnings: 1,
		},
		{
			name: "off",
			sts:  makeSTS("cache").Unlabeled().Image(bitnamiCluster).Obj(),
			mode: config.EnforceOff,
		},
		{
			name: "labeled cluster, deny",
			sts:  makeSTS("cache").Image(bitnamiCluster).Obj(),
			mode: config.EnforceDeny,
		},
		{
			name: "labeled cluster, warn",
			sts:  makeSTS("cache").Image(bitnamiCluster).Obj(),
			mode: config.EnforceWarn,
		},
		{
			name: "unlabeled plain valkey, deny",
			sts:  makeSTS("cache").Unlabeled().Image("valkey/valkey:8.0").Obj(),
			mode: config.EnforceDeny,
		},
		{
			name: "unlabeled redis cluster, deny",
			sts:  makeSTS("cache").Unlabeled().Image("docker.io/bitnami/redis-cluster:7.4").Obj(),
			mode: config.EnforceDeny,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := config.Default()
			p.Enforcement.Unlabeled = tc.mode
			gotErr, gotWarnings := Enforce(tc.sts, p)
			if diff := cmp.Diff(tc.wantErr, gotErr, ignoreDetail); diff != "" {
				t.Errorf("Enforce() errors mismatch (-want +got):\n%s", diff)
			}
			if len(gotWarnings) != tc.wantWarnings {
				t.Fatalf("Enforce() warnings = %q, want %d", gotWarnings, tc.wantWarnings)
			}
			for _, w := range gotWarnings {
				if !strings.HasPrefix(w, labelPath.String()+": ") {
					t.Errorf("Enforce() warning %q does not start with the label path %q", w, labelPath)
				}
			}
		})
	}
}
