package config

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Allowed values of the enumerated keys.
var (
	maxmemoryPolicies = []string{"allkeys-lfu", "allkeys-lru", "allkeys-random", "noeviction", "volatile-lfu", "volatile-lru", "volatile-random", "volatile-ttl"}
	appendFsyncModes  = []string{"always", "everysec", "no"}
	unsatisfiable     = []string{"DoNotSchedule", "ScheduleAnyway"}
	enforcementModes  = []string{EnforceDeny, EnforceOff, EnforceWarn}
	scaleGuardModes   = []string{ScaleGuardEnforce, ScaleGuardOff, ScaleGuardWarn}
	issuerKinds       = []string{"ClusterIssuer", "Issuer"}
)

// Validate checks every value of the policy. pathOf gives the field path to report
// for a key: KeyPath for a policy file, the annotation for a per-object override.
func (p *Policy) Validate(pathOf func(key string) *field.Path) field.ErrorList {
	var errs field.ErrorList
	atLeast := func(key string, v, min int, why string) {
		if v < min {
			errs = append(errs, field.Invalid(pathOf(key), v, fmt.Sprintf("must be at least %d%s", min, why)))
		}
	}
	oneOf := func(key, v string, allowed []string) {
		for _, a := range allowed {
			if v == a {
				return
			}
		}
		errs = append(errs, field.NotSupported(pathOf(key), v, allowed))
	}
	required := func(key, v string) {
		if v == "" {
			errs = append(errs, field.Required(pathOf(key), "must not be empty"))
		}
	}
	positiveQuantity := func(key, v string) {
		q, err := parseQuantity(v)
		if err != nil {
			errs = append(errs, field.Invalid(pathOf(key), v, "must be a quantity such as 8Gi or 512Mi"))
		} else if q.Sign() <= 0 {
			errs = append(errs, field.Invalid(pathOf(key), v, "must be greater than zero"))
		}
	}
	objectName := func(key, v string) {
		if v == "" {
			return
		}
		for _, msg := range validation.IsDNS1123Subdomain(v) {
			errs = append(errs, field.Invalid(pathOf(key), v, msg))
		}
	}

	required("image.valkey", p.Image.Valkey)

	atLeast("cluster.minMasters", p.Cluster.MinMasters, 3, ": a Valkey cluster needs 3 masters to elect a failover")
	atLeast("cluster.replicasPerMaster", p.Cluster.ReplicasPerMaster, 0, "")
	atLeast("cluster.nodeTimeout", p.Cluster.NodeTimeout, 100, " (milliseconds)")
	atLeast("cluster.replicaValidityFactor", p.Cluster.ReplicaValidityFactor, 0, "")

	if p.Valkey.Port < 1 || p.Valkey.Port > 55535 {
		errs = append(errs, field.Invalid(pathOf("valkey.port"), p.Valkey.Port, "must be between 1 and 55535, so that the cluster bus port (port + 10000) is a valid port"))
	}
	if p.Valkey.Maxmemory != "" {
		positiveQuantity("valkey.maxmemory", p.Valkey.Maxmemory)
	}
	if p.Valkey.CPURequest != "" {
		positiveQuantity("valkey.cpuRequest", p.Valkey.CPURequest)
	}
	if p.Valkey.MaxmemoryPercent < 1 || p.Valkey.MaxmemoryPercent > 95 {
		errs = append(errs, field.Invalid(pathOf("valkey.maxmemoryPercent"), p.Valkey.MaxmemoryPercent, "must be between 1 and 95: Valkey needs headroom below the memory limit for replication buffers and forks"))
	}
	oneOf("valkey.maxmemoryPolicy", p.Valkey.MaxmemoryPolicy, maxmemoryPolicies)
	oneOf("valkey.appendfsync", p.Valkey.AppendFsync, appendFsyncModes)
	if err := validateSave(p.Valkey.Save); err != "" {
		errs = append(errs, field.Invalid(pathOf("valkey.save"), p.Valkey.Save, err))
	}

	positiveQuantity("persistence.size", p.Persistence.Size)
	objectName("persistence.storageClassName", p.Persistence.StorageClassName)

	atLeast("security.runAsUser", p.Security.RunAsUser, 1, ": Valkey must not run as root")
	atLeast("security.fsGroup", p.Security.FSGroup, 1, "")

	atLeast("podDisruptionBudget.maxUnavailable", p.PodDisruptionBudget.MaxUnavailable, 1,
		": a PodDisruptionBudget with maxUnavailable 0 never allows an eviction, so every node drain hangs; use 1")

	if p.TopologySpreadConstraints.Enabled {
		for _, msg := range validation.IsQualifiedName(p.TopologySpreadConstraints.TopologyKey) {
			errs = append(errs, field.Invalid(pathOf("topologySpreadConstraints.topologyKey"), p.TopologySpreadConstraints.TopologyKey, msg))
		}
	}
	atLeast("topologySpreadConstraints.maxSkew", p.TopologySpreadConstraints.MaxSkew, 1, "")
	oneOf("topologySpreadConstraints.whenUnsatisfiable", p.TopologySpreadConstraints.WhenUnsatisfiable, unsatisfiable)

	atLeast("startupProbe.periodSeconds", p.StartupProbe.PeriodSeconds, 1, "")
	atLeast("startupProbe.failureThreshold", p.StartupProbe.FailureThreshold, 1, "")

	for _, key := range []string{"networkPolicy.clientPodSelector", "networkPolicy.clientNamespaceSelector", "networkPolicy.monitoringNamespaceSelector", "networkPolicy.monitoringPodSelector"} {
		v, _ := p.Get(key)
		if _, err := metav1.ParseToLabelSelector(v); err != nil {
			errs = append(errs, field.Invalid(pathOf(key), v, "must be a label selector such as role=api or tier in (web,batch): "+err.Error()))
		}
	}

	objectName("auth.existingSecret", p.Auth.ExistingSecret)

	if p.TLS.Issuer != "" && p.TLS.SecretName != "" {
		errs = append(errs, field.Forbidden(pathOf("tls.secretName"), "may not be set together with tls.issuer: the issuer's Certificate writes the Secret <name>-tls; set only one"))
	}
	if p.TLS.Issuer != "" {
		kind, name := ParseIssuer(p.TLS.Issuer)
		if kind != "Issuer" && kind != "ClusterIssuer" {
			errs = append(errs, field.NotSupported(pathOf("tls.issuer"), kind, issuerKinds))
		}
		for _, msg := range validation.IsDNS1123Subdomain(name) {
			errs = append(errs, field.Invalid(pathOf("tls.issuer"), p.TLS.Issuer, "issuer name: "+msg))
		}
	}
	objectName("tls.secretName", p.TLS.SecretName)
	for _, msg := range validation.IsDNS1123Subdomain(p.TLS.ClusterDomain) {
		errs = append(errs, field.Invalid(pathOf("tls.clusterDomain"), p.TLS.ClusterDomain, msg))
	}
	if p.TLS.AuthClients && !p.TLSEnabled() {
		errs = append(errs, field.Forbidden(pathOf("tls.authClients"), "requires TLS: set tls.issuer or tls.secretName"))
	}

	if p.Metrics.Port < 1 || p.Metrics.Port > 65535 {
		errs = append(errs, field.Invalid(pathOf("metrics.port"), p.Metrics.Port, "must be between 1 and 65535"))
	} else if p.Metrics.Enabled && (p.Metrics.Port == p.Valkey.Port || p.Metrics.Port == p.Valkey.Port+10000) {
		errs = append(errs, field.Invalid(pathOf("metrics.port"), p.Metrics.Port, "must differ from the client port and the cluster bus port"))
	}
	if p.Metrics.Enabled {
		required("metrics.image", p.Metrics.Image)
	}

	oneOf("enforcement.unlabeled", p.Enforcement.Unlabeled, enforcementModes)
	atLeast("rollout.maxClusters", p.Rollout.MaxClusters, 1, ": at 0 no existing cluster would ever get a new policy")
	atLeast("rollout.healthTimeoutSeconds", p.Rollout.HealthTimeoutSeconds, 1, "")
	oneOf("scaleGuard", p.ScaleGuard, scaleGuardModes)
	return errs
}

// ParseIssuer splits "KIND/NAME" into its kind and name; a bare name is an Issuer.
func ParseIssuer(s string) (kind, name string) {
	if k, n, ok := strings.Cut(s, "/"); ok {
		return k, n
	}
	return "Issuer", s
}

// validateSave checks RDB save rules: pairs of "seconds changes", both positive.
func validateSave(s string) string {
	fields := strings.Fields(s)
	if len(fields)%2 != 0 {
		return `must be pairs of "seconds changes", such as "3600 1 300 100"`
	}
	for _, f := range fields {
		if n, err := strconv.Atoi(f); err != nil || n < 1 {
			return `must be pairs of positive whole numbers "seconds changes", such as "3600 1 300 100"`
		}
	}
	return ""
}

// parseQuantity is resource.ParseQuantity for the quantities of a policy, which an
// annotation can set: it first refuses a value longer than any real quantity, and
// a decimal exponent out of range. ParseQuantity truncates the exponent of
// ".00001E8010000001000" to 32 bits and then spends minutes rounding a number of
// millions of digits, which would hold the webhook far past its timeout.
func parseQuantity(s string) (resource.Quantity, error) {
	if len(s) > 64 {
		return resource.Quantity{}, resource.ErrFormatWrong
	}
	suffix := strings.TrimLeft(s, "+-0123456789.")
	if len(suffix) > 1 && (suffix[0] == 'e' || suffix[0] == 'E') && suffix != "Ei" {
		exponent, err := strconv.Atoi(suffix[1:])
		if err != nil || exponent < -30 || exponent > 30 {
			return resource.Quantity{}, resource.ErrFormatWrong
		}
	}
	return resource.ParseQuantity(s)
}
