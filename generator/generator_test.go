package generator

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/config"
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
