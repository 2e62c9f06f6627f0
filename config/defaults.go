package config

// Default returns the built-in policy: the seed chart's production values.
func Default() Policy {
	return Policy{
		Image: ImagePolicy{Valkey: "docker.io/valkey/valkey:8.0.7"},
		Cluster: ClusterPolicy{
			MinMasters:            3,
			ReplicasPerMaster:     1,
			NodeTimeout:           5000,
			RequireFullCoverage:   false,
			AllowReadsWhenDown:    false,
			ReplicaValidityFactor: 10,
		},
		Valkey: ValkeyPolicy{
			Port:             6379,
			MaxmemoryPercent: 75,
			MaxmemoryPolicy:  "noeviction",
			AppendOnly:       true,
			AppendFsync:      "everysec",
			Save:             "3600 1 300 100 60 10000",
			CPURequest:       "100m",
		},
		Persistence:         PersistencePolicy{Size: "8Gi"},
		Security:            SecurityPolicy{RunAsUser: 999, FSGroup: 999},
		PodDisruptionBudget: PodDisruptionBudgetPolicy{Enabled: true, MaxUnavailable: 1},
		TopologySpreadConstraints: TopologySpreadPolicy{
			Enabled:           true,
			TopologyKey:       "topology.kubernetes.io/zone",
			MaxSkew:           1,
			WhenUnsatisfiable: "ScheduleAnyway",
		},
		StartupProbe: StartupProbePolicy{Enabled: true, PeriodSeconds: 10, FailureThreshold: 30},
		NetworkPolicy: NetworkPolicyPolicy{
			Enabled:                     true,
			MonitoringNamespaceSelector: "kubernetes.io/metadata.name=monitoring",
		},
		TLS:  TLSPolicy{ClusterDomain: "cluster.local"},
		Auth: AuthPolicy{Enabled: true},
		Metrics: MetricsPolicy{
			Enabled: true,
			Port:    9121,
			Image:   "docker.io/oliver006/redis_exporter:v1.67.0",
		},
		Enforcement: EnforcementPolicy{Unlabeled: EnforceWarn},
		Rollout:     RolloutPolicy{MaxClusters: 1, HealthTimeoutSeconds: 1800},
		ScaleGuard:  ScaleGuardEnforce,
	}
}
