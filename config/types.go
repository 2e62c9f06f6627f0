// Package config holds the valkey-webhook policy: its types, the built-in defaults
// (the seed chart's production values), strict loading from a YAML file, and the
// per-object overrides read from valkey-webhook.io/<key> annotations.
//
// Every policy key is a dotted path such as "cluster.nodeTimeout"; the same path is
// used in the policy file, in annotation names and in error messages.
package config

// Policy is the whole policy, shaped like the values of the Valkey cluster chart it
// replaces. Every field is a scalar so that every leaf has a dotted key.
type Policy struct {
	Image                     ImagePolicy               `json:"image"`
	Cluster                   ClusterPolicy             `json:"cluster"`
	Valkey                    ValkeyPolicy              `json:"valkey"`
	Persistence               PersistencePolicy         `json:"persistence"`
	Security                  SecurityPolicy            `json:"security"`
	PodDisruptionBudget       PodDisruptionBudgetPolicy `json:"podDisruptionBudget"`
	TopologySpreadConstraints TopologySpreadPolicy      `json:"topologySpreadConstraints"`
	StartupProbe              StartupProbePolicy        `json:"startupProbe"`
	NetworkPolicy             NetworkPolicyPolicy       `json:"networkPolicy"`
	Auth                      AuthPolicy                `json:"auth"`
	TLS                       TLSPolicy                 `json:"tls"`
	Metrics                   MetricsPolicy             `json:"metrics"`
	Enforcement               EnforcementPolicy         `json:"enforcement"`
	Rollout                   RolloutPolicy             `json:"rollout"`
	// ScaleGuard is what the scale guard does with a scale-down of a labeled
	// StatefulSet: enforce, warn or off.
	ScaleGuard string `json:"scaleGuard"`
}

// ImagePolicy names the image used when the pod template has no valkey container.
type ImagePolicy struct {
	Valkey string `json:"valkey"`
}

// ClusterPolicy holds the cluster-mode settings of valkey.conf and the cluster's shape.
type ClusterPolicy struct {
	// MinMasters is the smallest number of masters a cluster may have.
	MinMasters int `json:"minMasters"`
	// ReplicasPerMaster is how many replicas each master gets.
	ReplicasPerMaster int `json:"replicasPerMaster"`
	// NodeTimeout is cluster-node-timeout, in milliseconds.
	NodeTimeout           int  `json:"nodeTimeout"`
	RequireFullCoverage   bool `json:"requireFullCoverage"`
	AllowReadsWhenDown    bool `json:"allowReadsWhenDown"`
	ReplicaValidityFactor int  `json:"replicaValidityFactor"`
}

// ValkeyPolicy holds the server settings of valkey.conf.
type ValkeyPolicy struct {
	Port int `json:"port"`
	// Maxmemory is a Kubernetes quantity ("3Gi"). Empty means derived from the valkey
	// container's memory limit: MaxmemoryPercent of it.
	Maxmemory        string `json:"maxmemory"`
	MaxmemoryPercent int    `json:"maxmemoryPercent"`
	MaxmemoryPolicy  string `json:"maxmemoryPolicy"`
	AppendOnly       bool   `json:"appendonly"`
	AppendFsync      string `json:"appendfsync"`
	// Save is the RDB save rule list in valkey.conf syntax: "3600 1 300 100 60 10000".
	// Empty turns RDB snapshots off.
	Save string `json:"save"`
	// CPURequest is the CPU request of a valkey container that sets no CPU request
	// or limit, a Kubernetes quantity ("100m"). Empty sets none.
	CPURequest string `json:"cpuRequest"`
}

// PersistencePolicy shapes the data volumeClaimTemplate injected on CREATE.
type PersistencePolicy struct {
	Size             string `json:"size"`
	StorageClassName string `json:"storageClassName"`
	// AllowEphemeral admits a data volume that does not survive a pod restart.
	AllowEphemeral bool `json:"allowEphemeral"`
}

// SecurityPolicy holds the non-root identity the pods run as.
type SecurityPolicy struct {
	RunAsUser int `json:"runAsUser"`
	FSGroup   int `json:"fsGroup"`
}

// PodDisruptionBudgetPolicy shapes the companion PodDisruptionBudget.
type PodDisruptionBudgetPolicy struct {
	Enabled        bool `json:"enabled"`
	MaxUnavailable int  `json:"maxUnavailable"`
}

// TopologySpreadPolicy shapes the injected topology spread constraint.
type TopologySpreadPolicy struct {
	Enabled           bool   `json:"enabled"`
	TopologyKey       string `json:"topologyKey"`
	MaxSkew           int    `json:"maxSkew"`
	WhenUnsatisfiable string `json:"whenUnsatisfiable"`
}

// StartupProbePolicy shapes the injected startup probe.
type StartupProbePolicy struct {
	Enabled          bool `json:"enabled"`
	PeriodSeconds    int  `json:"periodSeconds"`
	FailureThreshold int  `json:"failureThreshold"`
}

// NetworkPolicyPolicy shapes the companion NetworkPolicy. Selectors are written in
// kubectl's label selector syntax ("role=api,tier in (web,batch)").
type NetworkPolicyPolicy struct {
	Enabled bool `json:"enabled"`
	// ClientPodSelector selects the pods that may reach the client port; empty means
	// every pod.
	ClientPodSelector string `json:"clientPodSelector"`
	// ClientNamespaceSelector selects the namespaces those pods may be in; empty
	// means the StatefulSet's own namespace only.
	ClientNamespaceSelector string `json:"clientNamespaceSelector"`
	// MonitoringNamespaceSelector and MonitoringPodSelector select who may scrape the
	// exporter port; an empty pod selector means every pod of those namespaces.
	MonitoringNamespaceSelector string `json:"monitoringNamespaceSelector"`
	MonitoringPodSelector       string `json:"monitoringPodSelector"`
}

// AuthPolicy decides where the password comes from.
type AuthPolicy struct {
	Enabled bool `json:"enabled"`
	// ExistingSecret names a Secret the team manages. It must hold the keys "password"
	// and "auth.conf" (see the README). Empty means the Secret <sts>-auth.
	ExistingSecret string `json:"existingSecret"`
}

// TLSPolicy turns TLS on: it is on when SecretName or Issuer is set.
type TLSPolicy struct {
	// Issuer is a cert-manager issuer, "Issuer/NAME", "ClusterIssuer/NAME" or "NAME"
	// (an Issuer).
	Issuer string `json:"issuer"`
	// SecretName is a kubernetes.io/tls Secret with tls.crt, tls.key and ca.crt.
	SecretName  string `json:"secretName"`
	AuthClients bool   `json:"authClients"`
	// ClusterDomain completes the DNS names of the Certificate.
	ClusterDomain string `json:"clusterDomain"`
}

// MetricsPolicy shapes the exporter sidecar.
type MetricsPolicy struct {
	Enabled bool   `json:"enabled"`
	Port    int    `json:"port"`
	Image   string `json:"image"`
}

// EnforcementPolicy decides what happens to Valkey clusters without the label.
type EnforcementPolicy struct {
	// Unlabeled is one of deny, warn or off.
	Unlabeled string `json:"unlabeled"`
}

// RolloutPolicy paces the rolls that a policy edit or an upgrade of valkey-webhook
// starts in existing clusters (controller/rollout.go).
type RolloutPolicy struct {
	// MaxClusters is how many clusters roll at the same time.
	MaxClusters int `json:"maxClusters"`
	// HealthTimeoutSeconds bounds the time a rolled cluster has to get healthy
	// again; past it, the rollout stops until it is.
	HealthTimeoutSeconds int `json:"healthTimeoutSeconds"`
	// RequireGo makes each such cluster wait for an explicit go before its
	// turn: its RolloutGoAnnotation set to the config checksum it would roll to.
	RequireGo bool `json:"requireGo"`
}

// Enforcement modes for EnforcementPolicy.Unlabeled.
const (
	EnforceDeny = "deny"
	EnforceWarn = "warn"
	EnforceOff  = "off"
)

// Scale guard modes for Policy.ScaleGuard: enforce refuses a scale-down that
// would remove pods that still serve slots (or the last replicas of a master), or
// that cannot be checked; warn checks and admits with a warning; off does not
// check.
const (
	ScaleGuardEnforce = "enforce"
	ScaleGuardWarn    = "warn"
	ScaleGuardOff     = "off"
)

// TLSEnabled reports whether TLS is configured.
func (p *Policy) TLSEnabled() bool {
	return p.TLS.Issuer != "" || p.TLS.SecretName != ""
}

// ShardSize is the number of pods per shard: one master and its replicas.
func (p *Policy) ShardSize() int {
	return 1 + p.Cluster.ReplicasPerMaster
}
