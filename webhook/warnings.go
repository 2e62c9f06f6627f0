package webhook

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// Warning texts, after the field path.
const (
	warnNoMemoryLimit = "not set: Valkey runs without maxmemory and the node can be OOM-killed under load; set a memory limit on the valkey container"
	warnMutableTag    = "%q is untagged or :latest: pods may run different Valkey versions after a restart; pin a version tag or a digest"
	warnShardSize     = "%d is not a multiple of the shard size %d (1 master + %d replicas): some master gets fewer replicas than the policy wants"
	warnOnDelete      = "OnDelete: pods pick up a new spec only when deleted by hand; a config change does not reach them"
	warnShortGrace    = "%d leaves a master %d s to hand its slots to a replica before its pod stops (the hand-over takes up to 5 s, and valkey-server keeps %d s for its shutdown): its clients wait out cluster-node-timeout instead; set at least %d"
)

// minHandover is the hand-over time below which a short grace period warns:
// CLUSTER FAILOVER waits up to 5 s for the replica to catch up.
const minHandover = 5

// ruleWarning is an admission warning and the rule that gave it, by which
// valkey_webhook_admission_warnings_total counts it.
type ruleWarning struct {
	rule, text string
}

// texts are the warnings as the API server hands them to the client.
func texts(ws []ruleWarning) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.text)
	}
	return out
}

// statefulSetWarnings returns the admission warnings for a labeled StatefulSet:
// things that are allowed but probably not what the team wants.
func statefulSetWarnings(sts *appsv1.StatefulSet, p *config.Policy, path *field.Path) []ruleWarning {
	var out []ruleWarning
	warn := func(rule string, at *field.Path, format string, args ...any) {
		out = append(out, ruleWarning{rule, at.String() + ": " + fmt.Sprintf(format, args...)})
	}
	spec := &sts.Spec.Template.Spec
	containers := path.Child("template", "spec", "containers")
	if i := defaults.ValkeyContainerIndex(spec); i >= 0 {
		if _, ok := defaults.MemoryLimit(sts); !ok && p.Valkey.Maxmemory == "" {
			warn("memoryLimit", containers.Index(i).Child("resources", "limits").Key(string(corev1.ResourceMemory)), warnNoMemoryLimit)
		}
	}
	for i, c := range spec.Containers {
		if mutableTag(c.Image) {
			warn("imageTag", containers.Index(i).Child("image"), warnMutableTag, c.Image)
		}
	}
	if r := int(replicasOf(sts)); r%p.ShardSize() != 0 {
		warn("shardSize", path.Child("replicas"), warnShardSize, r, p.ShardSize(), p.Cluster.ReplicasPerMaster)
	}
	if sts.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
		warn("onDelete", path.Child("updateStrategy", "type"), warnOnDelete)
	}
	if grace := spec.TerminationGracePeriodSeconds; grace != nil && defaults.HandoverSeconds(grace) < minHandover {
		warn("gracePeriod", path.Child("template", "spec", "terminationGracePeriodSeconds"), warnShortGrace,
			*grace, defaults.HandoverSeconds(grace), defaults.ShutdownReserve, defaults.ShutdownReserve+minHandover)
	}
	return out
}

// mutableTag reports whether an image reference has no tag or the :latest tag, and
// no digest.
func mutableTag(image string) bool {
	if strings.Contains(image, "@") {
		return false
	}
	name := image[strings.LastIndex(image, "/")+1:]
	_, tag, ok := strings.Cut(name, ":")
	return !ok || tag == "latest"
}
