package config_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/valkey-webhook/valkey-webhook/config"
)

func TestValidate(t *testing.T) {
	path := config.KeyPath
	tests := []struct {
		name    string
		modify  func(p *config.Policy)
		wantErr field.ErrorList
	}{
		{
			name:   "defaults",
			modify: func(p *config.Policy) {},
		},
		{
			name:    "image.valkey empty",
			modify:  func(p *config.Policy) { p.Image.Valkey = "" },
			wantErr: field.ErrorList{field.Required(path("image.valkey"), "")},
		},
		{
			name:    "cluster.minMasters below 3",
			modify:  func(p *config.Policy) { p.Cluster.MinMasters = 2 },
			wantErr: field.ErrorList{field.Invalid(path("cluster.minMasters"), 2, "")},
		},
		{
			name:   "cluster.minMasters 3 and more replicas",
			modify: func(p *config.Policy) { p.Cluster.MinMasters = 3; p.Cluster.ReplicasPerMaster = 2 },
		},
		{
			name:    "cluster.replicasPerMaster negative",
			modify:  func(p *config.Policy) { p.Cluster.ReplicasPerMaster = -1 },
			wantErr: field.ErrorList{field.Invalid(path("cluster.replicasPerMaster"), -1, "")},
		},
		{
			name:    "rollout.maxClusters 0",
			modify:  func(p *config.Policy) { p.Rollout.MaxClusters = 0 },
			wantErr: field.ErrorList{field.Invalid(path("rollout.maxClusters"), 0, "")},
		},
		{
			name:    "rollout.healthTimeoutSeconds 0",
			modify:  func(p *config.Policy) { p.Rollout.HealthTimeoutSeconds = 0 },
			wantErr: field.ErrorList{field.Invalid(path("rollout.healthTimeoutSeconds"), 0, "")},
		},
		{
			name:   "cluster.replicasPerMaster 0",
			modify: func(p *config.Policy) { p.Cluster.ReplicasPerMaster = 0 },
		},
		{
			name:    "cluster.nodeTimeout below 100",
			modify:  func(p *config.Policy) { p.Cluster.NodeTimeout = 99 },
			wantErr: field.ErrorList{field.Invalid(path("cluster.nodeTimeout"), 99, "")},
		},
		{
			name:   "cluster.nodeTimeout 100",
			modify: func(p *config.Policy) { p.Cluster.NodeTimeout = 100 },
		},
		{
			name:    "cluster.replicaValidityFactor negative",
			modify:  func(p *config.Policy) { p.Cluster.ReplicaValidityFactor = -1 },
			wantErr: field.ErrorList{field.Invalid(path("cluster.replicaValidityFactor"), -1, "")},
		},
		{
			name:    "valkey.port 0",
			modify:  func(p *config.Policy) { p.Valkey.Port = 0 },
			wantErr: field.ErrorList{field.Invalid(path("valkey.port"), 0, "")},
		},
		{
			name:    "valkey.port leaves no room for the bus port",
			modify:  func(p *config.Policy) { p.Valkey.Port = 55536 },
			wantErr: field.ErrorList{field.Invalid(path("valkey.port"), 55536, "")},
		},
		{
			name:   "valkey.port highest allowed",
			modify: func(p *config.Policy) { p.Valkey.Port = 55535 },
		},
		{
			name:    "valkey.maxmemory not a quantity",
			modify:  func(p *config.Policy) { p.Valkey.Maxmemory = "lots" },
			wantErr: field.ErrorList{field.Invalid(path("valkey.maxmemory"), "lots", "")},
		},
		{
			name:    "valkey.maxmemory zero",
			modify:  func(p *config.Policy) { p.Valkey.Maxmemory = "0" },
			wantErr: field.ErrorList{field.Invalid(path("valkey.maxmemory"), "0", "")},
		},
		{
			name:    "valkey.maxmemory negative",
			modify:  func(p *config.Policy) { p.Valkey.Maxmemory = "-1Gi" },
			wantErr: field.ErrorList{field.Invalid(path("valkey.maxmemory"), "-1Gi", "")},
		},
		{
			name:   "valkey.maxmemory quantity",
			modify: func(p *config.Policy) { p.Valkey.Maxmemory = "512Mi" },
		},
		{
			name:    "valkey.maxmemoryPercent 0",
			modify:  func(p *config.Policy) { p.Valkey.MaxmemoryPercent = 0 },
			wantErr: field.ErrorList{field.Invalid(path("valkey.maxmemoryPercent"), 0, "")},
		},
		{
			name:    "valkey.maxmemoryPercent 96",
			modify:  func(p *config.Policy) { p.Valkey.MaxmemoryPercent = 96 },
			wantErr: field.ErrorList{field.Invalid(path("valkey.maxmemoryPercent"), 96, "")},
		},
		{
			name:   "valkey.maxmemoryPercent bounds",
			modify: func(p *config.Policy) { p.Valkey.MaxmemoryPercent = 95 },
		},
		{
			name:   "valkey.maxmemoryPercent 1",
			modify: func(p *config.Policy) { p.Valkey.MaxmemoryPercent = 1 },
		},
		{
			name:   "valkey.maxmemoryPolicy unknown",
			modify: func(p *config.Policy) { p.Valkey.MaxmemoryPolicy = "lru" },
			wantErr: field.ErrorList{field.NotSupported(path("valkey.maxmemoryPolicy"), "lru",
				[]string{"allkeys-lfu", "allkeys-lru", "allkeys-random", "noeviction", "volatile-lfu", "volatile-lru", "volatile-random", "volatile-ttl"})},
		},
		{
			name:   "valkey.maxmemoryPolicy known",
			modify: func(p *config.Policy) { p.Valkey.MaxmemoryPolicy = "volatile-ttl" },
		},
		{
			name:    "valkey.appendfsync unknown",
			modify:  func(p *config.Policy) { p.Valkey.AppendFsync = "sometimes" },
			wantErr: field.ErrorList{field.NotSupported(path("valkey.appendfsync"), "sometimes", []string{"always", "everysec", "no"})},
		},
		{
			name:    "valkey.save odd count",
			modify:  func(p *config.Policy) { p.Valkey.Save = "3600 1 300" },
			wantErr: field.ErrorList{field.Invalid(path("valkey.save"), "3600 1 300", "")},
		},
		{
			name:    "valkey.save non-numeric",
			modify:  func(p *config.Policy) { p.Valkey.Save = "3600 x" },
			wantErr: field.ErrorList{field.Invalid(path("valkey.save"), "3600 x", "")},
		},
		{
			name:    "valkey.save zero",
			modify:  func(p *config.Policy) { p.Valkey.Save = "0 1" },
			wantErr: field.ErrorList{field.Invalid(path("valkey.save"), "0 1", "")},
		},
		{
			name:   "valkey.save empty turns snapshots off",
			modify: func(p *config.Policy) { p.Valkey.Save = "" },
		},
		{
			name:    "persistence.size empty",
			modify:  func(p *config.Policy) { p.Persistence.Size = "" },
			wantErr: field.ErrorList{field.Invalid(path("persistence.size"), "", "")},
		},
		{
			name:    "persistence.size not a quantity",
			modify:  func(p *config.Policy) { p.Persistence.Size = "big" },
			wantErr: field.ErrorList{field.Invalid(path("persistence.size"), "big", "")},
		},
		{
			name:    "persistence.size zero",
			modify:  func(p *config.Policy) { p.Persistence.Size = "0Gi" },
			wantErr: field.ErrorList{field.Invalid(path("persistence.size"), "0Gi", "")},
		},
		{
			name:    "persistence.storageClassName invalid name",
			modify:  func(p *config.Policy) { p.Persistence.StorageClassName = "Fast_SSD" },
			wantErr: field.ErrorList{field.Invalid(path("persistence.storageClassName"), "Fast_SSD", "")},
		},
		{
			name:   "persistence.storageClassName valid name",
			modify: func(p *config.Policy) { p.Persistence.StorageClassName = "fast-ssd.example.com" },
		},
		{
			name:    "security.runAsUser 0",
			modify:  func(p *config.Policy) { p.Security.RunAsUser = 0 },
			wantErr: field.ErrorList{field.Invalid(path("security.runAsUser"), 0, "")},
		},
		{
			name:    "security.fsGroup 0",
			modify:  func(p *config.Policy) { p.Security.FSGroup = 0 },
			wantErr: field.ErrorList{field.Invalid(path("security.fsGroup"), 0, "")},
		},
		{
			name:    "podDisruptionBudget.maxUnavailable 0",
			modify:  func(p *config.Policy) { p.PodDisruptionBudget.MaxUnavailable = 0 },
			wantErr: field.ErrorList{field.Invalid(path("podDisruptionBudget.maxUnavailable"), 0, "")},
		},
		{
			name:    "topologySpreadConstraints.topologyKey invalid",
			modify:  func(p *config.Policy) { p.TopologySpreadConstraints.TopologyKey = "zone key!" },
			wantErr: field.ErrorList{field.Invalid(path("topologySpreadConstraints.topologyKey"), "zone key!", "")},
		},
		{
			name: "topologySpreadConstraints.topologyKey ignored when disabled",
			modify: func(p *config.Policy) {
				p.TopologySpreadConstraints.Enabled = false
				p.TopologySpreadConstraints.TopologyKey = "zone key!"
			},
		},
		{
			name:    "topologySpreadConstraints.maxSkew 0",
			modify:  func(p *config.Policy) { p.TopologySpreadConstraints.MaxSkew = 0 },
			wantErr: field.ErrorList{field.Invalid(path("topologySpreadConstraints.maxSkew"), 0, "")},
		},
		{
			name:    "topologySpreadConstraints.whenUnsatisfiable unknown",
			modify:  func(p *config.Policy) { p.TopologySpreadConstraints.WhenUnsatisfiable = "Sometimes" },
			wantErr: field.ErrorList{field.NotSupported(path("topologySpreadConstraints.whenUnsatisfiable"), "Sometimes", []string{"DoNotSchedule", "ScheduleAnyway"})},
		},
		{
			name:    "startupProbe.periodSeconds 0",
			modify:  func(p *config.Policy) { p.StartupProbe.PeriodSeconds = 0 },
			wantErr: field.ErrorList{field.Invalid(path("startupProbe.periodSeconds"), 0, "")},
		},
		{
			name:    "startupProbe.failureThreshold 0",
			modify:  func(p *config.Policy) { p.StartupProbe.FailureThreshold = 0 },
			wantErr: field.ErrorList{field.Invalid(path("startupProbe.failureThreshold"), 0, "")},
		},
		{
			name:    "auth.existingSecret invalid name",
			modify:  func(p *config.Policy) { p.Auth.ExistingSecret = "Team_Secret" },
			wantErr: field.ErrorList{field.Invalid(path("auth.existingSecret"), "Team_Secret", "")},
		},
		{
			name: "tls.issuer and tls.secretName both set",
			modify: func(p *config.Policy) {
				p.TLS.Issuer = "ClusterIssuer/internal-ca"
				p.TLS.SecretName = "valkey-tls"
			},
			wantErr: field.ErrorList{field.Forbidden(path("tls.secretName"), "")},
		},
		{
			name:    "tls.issuer bad kind",
			modify:  func(p *config.Policy) { p.TLS.Issuer = "Foo/x" },
			wantErr: field.ErrorList{field.NotSupported(path("tls.issuer"), "Foo", []string{"ClusterIssuer", "Issuer"})},
		},
		{
			name:    "tls.issuer bad name",
			modify:  func(p *config.Policy) { p.TLS.Issuer = "ClusterIssuer/Internal_CA" },
			wantErr: field.ErrorList{field.Invalid(path("tls.issuer"), "ClusterIssuer/Internal_CA", "")},
		},
		{
			name:    "tls.issuer kind without a name",
			modify:  func(p *config.Policy) { p.TLS.Issuer = "Issuer/" },
			wantErr: field.ErrorList{field.Invalid(path("tls.issuer"), "Issuer/", "")},
		},
		{
			name: "tls.issuer bad kind and bad name",
			modify: func(p *config.Policy) {
				p.TLS.Issuer = "Foo/Bad_Name"
			},
			wantErr: field.ErrorList{
				field.NotSupported(path("tls.issuer"), "Foo", []string{"ClusterIssuer", "Issuer"}),
				field.Invalid(path("tls.issuer"), "Foo/Bad_Name", ""),
			},
		},
		{
			name:   "tls.issuer bare name with client auth",
			modify: func(p *config.Policy) { p.TLS.Issuer = "internal-ca"; p.TLS.AuthClients = true },
		},
		{
			name:    "tls.secretName invalid name",
			modify:  func(p *config.Policy) { p.TLS.SecretName = "Valkey_TLS" },
			wantErr: field.ErrorList{field.Invalid(path("tls.secretName"), "Valkey_TLS", "")},
		},
		{
			name:    "tls.authClients without TLS",
			modify:  func(p *config.Policy) { p.TLS.AuthClients = true },
			wantErr: field.ErrorList{field.Forbidden(path("tls.authClients"), "")},
		},
		{
			name:   "tls.authClients with tls.secretName",
			modify: func(p *config.Policy) { p.TLS.AuthClients = true; p.TLS.SecretName = "valkey-tls" },
		},
		{
			name:    "metrics.port equal to valkey.port",
			modify:  func(p *config.Policy) { p.Metrics.Port = 6379 },
			wantErr: field.ErrorList{field.Invalid(path("metrics.port"), 6379, "")},
		},
		{
			name:    "metrics.port equal to the cluster bus port",
			modify:  func(p *config.Policy) { p.Metrics.Port = 16379 },
			wantErr: field.ErrorList{field.Invalid(path("metrics.port"), 16379, "")},
		},
		{
			name:    "metrics.port equal to a changed valkey.port",
			modify:  func(p *config.Policy) { p.Valkey.Port = 7000; p.Metrics.Port = 7000 },
			wantErr: field.ErrorList{field.Invalid(path("metrics.port"), 7000, "")},
		},
		{
			name:   "metrics.port equal to valkey.port with metrics off",
			modify: func(p *config.Policy) { p.Metrics.Enabled = false; p.Metrics.Port = 6379 },
		},
		{
			name:    "metrics.port out of range",
			modify:  func(p *config.Policy) { p.Metrics.Port = 65536 },
			wantErr: field.ErrorList{field.Invalid(path("metrics.port"), 65536, "")},
		},
		{
			name:    "metrics.port 0 even with metrics off",
			modify:  func(p *config.Policy) { p.Metrics.Enabled = false; p.Metrics.Port = 0 },
			wantErr: field.ErrorList{field.Invalid(path("metrics.port"), 0, "")},
		},
		{
			name:    "metrics.image empty",
			modify:  func(p *config.Policy) { p.Metrics.Image = "" },
			wantErr: field.ErrorList{field.Required(path("metrics.image"), "")},
		},
		{
			name:   "metrics.image empty with metrics off",
			modify: func(p *config.Policy) { p.Metrics.Enabled = false; p.Metrics.Image = "" },
		},
		{
			name:    "enforcement.unlabeled unknown",
			modify:  func(p *config.Policy) { p.Enforcement.Unlabeled = "block" },
			wantErr: field.ErrorList{field.NotSupported(path("enforcement.unlabeled"), "block", []string{"deny", "off", "warn"})},
		},
		{
			name:    "scaleGuard unknown",
			modify:  func(p *config.Policy) { p.ScaleGuard = "deny" },
			wantErr: field.ErrorList{field.NotSupported(path("scaleGuard"), "deny", []string{"enforce", "off", "warn"})},
		},
		{
			name:   "scaleGuard warn",
			modify: func(p *config.Policy) { p.ScaleGuard = config.ScaleGuardWarn },
		},
		{
			name:   "scaleGuard off",
			modify: func(p *config.Policy) { p.ScaleGuard = config.ScaleGuardOff },
		},
		{
			name: "two fields, every error in order",
			modify: func(p *config.Policy) {
				p.Cluster.MinMasters = 1
				p.Enforcement.Unlabeled = ""
				p.ScaleGuard = ""
			},
			wantErr: field.ErrorList{
				field.Invalid(path("cluster.minMasters"), 1, ""),
				field.NotSupported(path("enforcement.unlabeled"), "", []string{"deny", "off", "warn"}),
				field.NotSupported(path("scaleGuard"), "", []string{"enforce", "off", "warn"}),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := withDefaults(tc.modify)
			got := p.Validate(config.KeyPath)
			if diff := cmp.Diff(tc.wantErr, got, ignoreDetail); diff != "" {
				t.Errorf("Validate() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestValidatePathOf checks that every error is reported at the path pathOf gives.
func TestValidatePathOf(t *testing.T) {
	p := withDefaults(func(p *config.Policy) { p.Cluster.NodeTimeout = 1 })
	got := p.Validate(func(key string) *field.Path { return field.NewPath("overrides").Key(key) })
	want := field.ErrorList{field.Invalid(field.NewPath("overrides").Key("cluster.nodeTimeout"), 1, "")}
	if diff := cmp.Diff(want, got, ignoreDetail); diff != "" {
		t.Errorf("Validate() mismatch (-want +got):\n%s", diff)
	}
}

func TestParseIssuer(t *testing.T) {
	tests := []struct {
		in       string
		wantKind string
		wantName string
	}{
		{in: "Issuer/internal-ca", wantKind: "Issuer", wantName: "internal-ca"},
		{in: "ClusterIssuer/internal-ca", wantKind: "ClusterIssuer", wantName: "internal-ca"},
		{in: "internal-ca", wantKind: "Issuer", wantName: "internal-ca"},
		{in: "Foo/x", wantKind: "Foo", wantName: "x"},
		{in: "ClusterIssuer/", wantKind: "ClusterIssuer", wantName: ""},
		{in: "ClusterIssuer/a/b", wantKind: "ClusterIssuer", wantName: "a/b"},
		{in: "", wantKind: "Issuer", wantName: ""},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			kind, name := config.ParseIssuer(tc.in)
			if kind != tc.wantKind || name != tc.wantName {
				t.Errorf("ParseIssuer(%q) = (%q, %q), want (%q, %q)", tc.in, kind, name, tc.wantKind, tc.wantName)
			}
		})
	}
}
