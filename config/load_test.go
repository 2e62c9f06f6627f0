package config_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/valkey-webhook/valkey-webhook/config"
)

// ignoreDetail compares field errors by type, path and value, not by message.
var ignoreDetail = cmpopts.IgnoreFields(field.Error{}, "Detail")

// fieldErrors returns the field errors carried by an error from Parse or Load, or
// nil when err carries none (a YAML or I/O error).
func fieldErrors(err error) field.ErrorList {
	var agg utilerrors.Aggregate
	if !errors.As(err, &agg) {
		return nil
	}
	var out field.ErrorList
	for _, e := range agg.Errors() {
		var fe *field.Error
		if errors.As(e, &fe) {
			out = append(out, fe)
		}
	}
	return out
}

// withDefaults returns Default() changed by f.
func withDefaults(f func(p *config.Policy)) config.Policy {
	p := config.Default()
	f(&p)
	return p
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want config.Policy
	}{
		{
			name: "empty document",
			doc:  "",
			want: config.Default(),
		},
		{
			name: "comment only",
			doc:  "# nothing to override\n",
			want: config.Default(),
		},
		{
			name: "empty mapping",
			doc:  "{}",
			want: config.Default(),
		},
		{
			name: "empty sections",
			doc:  "cluster: {}\ntls: {}\n",
			want: config.Default(),
		},
		{
			name: "full override of several keys",
			doc: `
image:
  valkey: registry.example.com/valkey/valkey:8.1.0
cluster:
  minMasters: 5
  replicasPerMaster: 2
  nodeTimeout: 15000
  requireFullCoverage: true
valkey:
  maxmemory: 2Gi
  maxmemoryPolicy: allkeys-lru
  appendfsync: "no"
  save: ""
persistence:
  size: 20Gi
  storageClassName: fast-ssd
security:
  runAsUser: 1001
podDisruptionBudget:
  enabled: false
topologySpreadConstraints:
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: DoNotSchedule
auth:
  existingSecret: team-valkey-auth
tls:
  issuer: ClusterIssuer/internal-ca
  authClients: true
metrics:
  enabled: false
enforcement:
  unlabeled: deny
scaleGuard: warn
`,
			want: withDefaults(func(p *config.Policy) {
				p.Image.Valkey = "registry.example.com/valkey/valkey:8.1.0"
				p.Cluster.MinMasters = 5
				p.Cluster.ReplicasPerMaster = 2
				p.Cluster.NodeTimeout = 15000
				p.Cluster.RequireFullCoverage = true
				p.Valkey.Maxmemory = "2Gi"
				p.Valkey.MaxmemoryPolicy = "allkeys-lru"
				p.Valkey.AppendFsync = "no"
				p.Valkey.Save = ""
				p.Persistence.Size = "20Gi"
				p.Persistence.StorageClassName = "fast-ssd"
				p.Security.RunAsUser = 1001
				p.PodDisruptionBudget.Enabled = false
				p.TopologySpreadConstraints.TopologyKey = "kubernetes.io/hostname"
				p.TopologySpreadConstraints.WhenUnsatisfiable = "DoNotSchedule"
				p.Auth.ExistingSecret = "team-valkey-auth"
				p.TLS.Issuer = "ClusterIssuer/internal-ca"
				p.TLS.AuthClients = true
				p.Metrics.Enabled = false
				p.Enforcement.Unlabeled = config.EnforceDeny
				p.ScaleGuard = config.ScaleGuardWarn
			}),
		},
		{
			name: "JSON document",
			doc:  `{"cluster": {"nodeTimeout": 6000}, "metrics": {"port": 9200}}`,
			want: withDefaults(func(p *config.Policy) {
				p.Cluster.NodeTimeout = 6000
				p.Metrics.Port = 9200
			}),
		},
		{
			name: "a value equal to the default",
			doc:  "cluster:\n  nodeTimeout: 5000\n",
			want: config.Default(),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := config.Parse([]byte(tc.doc))
			if err != nil {
				t.Fatalf("Parse() error = %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Parse() policy mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseFieldErrors(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		wantErr field.ErrorList
	}{
		{
			name:    "unknown top-level key",
			doc:     "clustr:\n  nodeTimeout: 1000\n",
			wantErr: field.ErrorList{field.NotSupported[string](field.NewPath("clustr"), "clustr", nil)},
		},
		{
			name:    "a dotted key, which only annotations use",
			doc:     "cluster.nodeTimeout: 1000\ncluster: {nodeTimeout: 2000}\n",
			wantErr: field.ErrorList{field.NotSupported[string](field.NewPath("cluster.nodeTimeout"), "cluster.nodeTimeout", nil)},
		},
		{
			name:    "unknown nested key",
			doc:     "cluster: {nodeTimout: 1}\n",
			wantErr: field.ErrorList{field.NotSupported[string](field.NewPath("cluster", "nodeTimout"), "nodeTimout", nil)},
		},
		{
			name:    "string for an int",
			doc:     "cluster:\n  nodeTimeout: \"5000\"\n",
			wantErr: field.ErrorList{field.Invalid(field.NewPath("cluster", "nodeTimeout"), "5000", "")},
		},
		{
			name:    "fraction for an int",
			doc:     "cluster:\n  nodeTimeout: 1.5\n",
			wantErr: field.ErrorList{field.Invalid(field.NewPath("cluster", "nodeTimeout"), 1.5, "")},
		},
		{
			name:    "int too large",
			doc:     "cluster:\n  nodeTimeout: 3000000000\n",
			wantErr: field.ErrorList{field.Invalid(field.NewPath("cluster", "nodeTimeout"), float64(3000000000), "")},
		},
		{
			name:    "int for a bool",
			doc:     "metrics:\n  enabled: 1\n",
			wantErr: field.ErrorList{field.Invalid(field.NewPath("metrics", "enabled"), float64(1), "")},
		},
		{
			name:    "string for a bool",
			doc:     "metrics:\n  enabled: \"true\"\n",
			wantErr: field.ErrorList{field.Invalid(field.NewPath("metrics", "enabled"), "true", "")},
		},
		{
			name:    "int for a string",
			doc:     "image:\n  valkey: 8\n",
			wantErr: field.ErrorList{field.Invalid(field.NewPath("image", "valkey"), float64(8), "")},
		},
		{
			// YAML 1.1 reads an unquoted no as a boolean, so appendfsync must be quoted.
			name:    "unquoted no for a string",
			doc:     "valkey:\n  appendfsync: no\n",
			wantErr: field.ErrorList{field.Invalid(field.NewPath("valkey", "appendfsync"), false, "")},
		},
		{
			name:    "mapping where a scalar is wanted",
			doc:     "valkey:\n  port:\n    number: 6380\n",
			wantErr: field.ErrorList{field.Invalid(field.NewPath("valkey", "port"), map[string]any{"number": float64(6380)}, "")},
		},
		{
			name:    "list where a scalar is wanted",
			doc:     "valkey:\n  save: [3600, 1]\n",
			wantErr: field.ErrorList{field.Invalid(field.NewPath("valkey", "save"), []any{float64(3600), float64(1)}, "")},
		},
		{
			name:    "scalar where a section is wanted",
			doc:     "cluster: 5\n",
			wantErr: field.ErrorList{field.Invalid(field.NewPath("cluster"), float64(5), "")},
		},
		{
			name:    "null section",
			doc:     "cluster: null\n",
			wantErr: field.ErrorList{field.Invalid(field.NewPath("cluster"), nil, "")},
		},
		{
			name:    "empty section value",
			doc:     "tls:\n",
			wantErr: field.ErrorList{field.Invalid(field.NewPath("tls"), nil, "")},
		},
		{
			name:    "null leaf",
			doc:     "cluster:\n  nodeTimeout: null\n",
			wantErr: field.ErrorList{field.Invalid(field.NewPath("cluster", "nodeTimeout"), nil, "")},
		},
		{
			name: "every merge error, sorted by key",
			doc:  "valkey: {port: x}\nbogus: 1\ncluster: {nodeTimeout: soon, minMasters: z}\n",
			wantErr: field.ErrorList{
				field.NotSupported[string](field.NewPath("bogus"), "bogus", nil),
				field.Invalid(field.NewPath("cluster", "minMasters"), "z", ""),
				field.Invalid(field.NewPath("cluster", "nodeTimeout"), "soon", ""),
				field.Invalid(field.NewPath("valkey", "port"), "x", ""),
			},
		},
		{
			name:    "well-typed but invalid value",
			doc:     "cluster:\n  minMasters: 1\n",
			wantErr: field.ErrorList{field.Invalid(field.NewPath("cluster", "minMasters"), 1, "")},
		},
		{
			name: "a merge error skips validation",
			doc:  "cluster:\n  minMasters: 1\n  nodeTimeout: x\n",
			wantErr: field.ErrorList{
				field.Invalid(field.NewPath("cluster", "nodeTimeout"), "x", ""),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := config.Parse([]byte(tc.doc))
			if err == nil {
				t.Fatalf("Parse() error = nil, want field errors")
			}
			if diff := cmp.Diff(tc.wantErr, fieldErrors(err), ignoreDetail); diff != "" {
				t.Errorf("Parse() field errors mismatch (-want +got):\n%s\nerror: %v", diff, err)
			}
			if diff := cmp.Diff(config.Policy{}, got); diff != "" {
				t.Errorf("Parse() returned a policy with an error (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseUnknownKeyMessage is about the message itself: an unknown key names its
// path and lists the names that may appear beside it.
func TestParseUnknownKeyMessage(t *testing.T) {
	tests := []struct {
		name      string
		doc       string
		wantPath  string
		wantNames []string
	}{
		{
			name:      "nested",
			doc:       "cluster: {nodeTimout: 1}\n",
			wantPath:  "cluster.nodeTimout",
			wantNames: []string{`"nodeTimeout"`, `"minMasters"`, `"replicasPerMaster"`, `"requireFullCoverage"`},
		},
		{
			name:      "top level",
			doc:       "clustr: {}\n",
			wantPath:  "clustr",
			wantNames: []string{`"cluster"`, `"valkey"`, `"tls"`, `"metrics"`, `"enforcement"`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tc.doc))
			if err == nil {
				t.Fatal("Parse() error = nil, want an unknown key error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.wantPath) {
				t.Errorf("Parse() error %q does not contain the path %q", msg, tc.wantPath)
			}
			for _, name := range tc.wantNames {
				if !strings.Contains(msg, name) {
					t.Errorf("Parse() error %q does not list the known name %s", msg, name)
				}
			}
		})
	}
}

func TestParseNotAPolicy(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		// mention is a word the message must contain, when the message is the point.
		mention string
	}{
		{name: "duplicate keys", doc: "cluster:\n  nodeTimeout: 1000\n  nodeTimeout: 2000\n", mention: `"nodeTimeout"`},
		{name: "duplicate sections", doc: "cluster: {}\ncluster: {}\n", mention: `"cluster"`},
		{name: "a list", doc: "- cluster\n- tls\n"},
		{name: "a string", doc: "cluster.nodeTimeout=1000\n"},
		{name: "a number", doc: "42\n"},
		{name: "invalid YAML", doc: "cluster: [\n"},
		{name: "tab indentation", doc: "cluster:\n\tnodeTimeout: 1000\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := config.Parse([]byte(tc.doc))
			if err == nil {
				t.Fatalf("Parse() error = nil, want an error; policy: %+v", got)
			}
			if fe := fieldErrors(err); fe != nil {
				t.Errorf("Parse() returned field errors %v, want a document error", fe)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("Parse() error %q does not mention %s", err, tc.mention)
			}
			if diff := cmp.Diff(config.Policy{}, got); diff != "" {
				t.Errorf("Parse() returned a policy with an error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	t.Run("valid file", func(t *testing.T) {
		path := write("good.yaml", "cluster:\n  nodeTimeout: 15000\n")
		got, err := config.Load(path)
		if err != nil {
			t.Fatalf("Load() error = %v", err)
		}
		want := withDefaults(func(p *config.Policy) { p.Cluster.NodeTimeout = 15000 })
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Load() policy mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("missing file", func(t *testing.T) {
		got, err := config.Load(filepath.Join(dir, "missing.yaml"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Load() error = %v, want one wrapping fs.ErrNotExist", err)
		}
		if !strings.Contains(err.Error(), "missing.yaml") {
			t.Errorf("Load() error %q does not name the file", err)
		}
		if diff := cmp.Diff(config.Policy{}, got); diff != "" {
			t.Errorf("Load() returned a policy with an error (-want +got):\n%s", diff)
		}
	})

	t.Run("bad key names the file", func(t *testing.T) {
		path := write("bad.yaml", "cluster:\n  nodeTimout: 1\n")
		got, err := config.Load(path)
		if err == nil {
			t.Fatal("Load() error = nil, want an unknown key error")
		}
		wantErr := field.ErrorList{field.NotSupported[string](field.NewPath("cluster", "nodeTimout"), "nodeTimout", nil)}
		if diff := cmp.Diff(wantErr, fieldErrors(err), ignoreDetail); diff != "" {
			t.Errorf("Load() field errors mismatch (-want +got):\n%s", diff)
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("Load() error %q does not name the file %q", err, path)
		}
		if diff := cmp.Diff(config.Policy{}, got); diff != "" {
			t.Errorf("Load() returned a policy with an error (-want +got):\n%s", diff)
		}
	})

	t.Run("invalid YAML names the file", func(t *testing.T) {
		path := write("broken.yaml", "cluster: [\n")
		_, err := config.Load(path)
		if err == nil {
			t.Fatal("Load() error = nil, want a YAML error")
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("Load() error %q does not name the file %q", err, path)
		}
	})
}

func TestDefaultIsValid(t *testing.T) {
	p := config.Default()
	if errs := p.Validate(config.KeyPath); len(errs) != 0 {
		t.Errorf("Default().Validate() = %v, want no errors", errs)
	}
}

func TestKeys(t *testing.T) {
	keys := config.Keys()
	if !sort.StringsAreSorted(keys) {
		t.Errorf("Keys() is not sorted: %v", keys)
	}
	have := map[string]bool{}
	for _, k := range keys {
		if have[k] {
			t.Errorf("Keys() lists %q twice", k)
		}
		have[k] = true
	}
	for _, k := range []string{"cluster.nodeTimeout", "tls.issuer", "metrics.port", "valkey.maxmemory", "enforcement.unlabeled", "persistence.allowEphemeral", "scaleGuard"} {
		if !have[k] {
			t.Errorf("Keys() does not contain %q: %v", k, keys)
		}
	}
	// Sections are not keys: only leaves can be set.
	for _, k := range []string{"cluster", "tls", "metrics"} {
		if have[k] {
			t.Errorf("Keys() contains the section %q", k)
		}
	}
}

func TestKeyPath(t *testing.T) {
	tests := []struct {
		key  string
		want *field.Path
	}{
		{key: "cluster.nodeTimeout", want: field.NewPath("cluster", "nodeTimeout")},
		{key: "tls.issuer", want: field.NewPath("tls", "issuer")},
		{key: "cluster", want: field.NewPath("cluster")},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			if got := config.KeyPath(tc.key).String(); got != tc.want.String() {
				t.Errorf("KeyPath(%q) = %q, want %q", tc.key, got, tc.want.String())
			}
		})
	}
}
