package webhook

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// RunsValkeyCluster reports whether an unlabeled StatefulSet runs Valkey in cluster
// mode, and names the container that gave it away. A container counts when its image
// is a Valkey image (the last path element starts with "valkey") and it shows cluster
// mode: a "valkey-cluster" image, a cluster-enabled argument, or an environment
// variable named VALKEY_CLUSTER* (as the common images use) or whose value passes
// cluster-enabled.
func RunsValkeyCluster(sts *appsv1.StatefulSet) (container string, ok bool) {
	for _, c := range sts.Spec.Template.Spec.Containers {
		repo := c.Image
		if i := strings.IndexAny(repo, "@"); i >= 0 {
			repo = repo[:i]
		}
		repo = repo[strings.LastIndex(repo, "/")+1:]
		repo, _, _ = strings.Cut(repo, ":")
		if !strings.HasPrefix(repo, "valkey") {
			continue
		}
		if strings.Contains(repo, "cluster") {
			return c.Name, true
		}
		for _, a := range append(append([]string(nil), c.Command...), c.Args...) {
			if strings.Contains(a, "cluster-enabled") {
				return c.Name, true
			}
		}
		for _, e := range c.Env {
			if strings.HasPrefix(strings.ToUpper(e.Name), "VALKEY_CLUSTER") || strings.Contains(e.Value, "cluster-enabled") {
				return c.Name, true
			}
		}
	}
	return "", false
}

// Enforce is the cluster-wide check of StatefulSets without the label: a Valkey
// cluster must opt in so that it is hardened. Per enforcement.unlabeled it denies,
// warns or does nothing.
func Enforce(sts *appsv1.StatefulSet, p config.Policy) (field.ErrorList, []string) {
	errs, warnings := enforce(sts, p)
	return errs, texts(warnings)
}

// enforce is Enforce, its error and warning under the rule "unlabeled".
func enforce(sts *appsv1.StatefulSet, p config.Policy) (field.ErrorList, []ruleWarning) {
	if defaults.IsLabeled(sts) || p.Enforcement.Unlabeled == config.EnforceOff {
		return nil, nil
	}
	container, ok := RunsValkeyCluster(sts)
	if !ok {
		return nil, nil
	}
	path := field.NewPath("metadata", "labels").Key(defaults.ClusterLabel)
	detail := fmt.Sprintf("container %q runs Valkey in cluster mode; label the StatefulSet %s=%s so that valkey-webhook hardens it (policy enforcement.unlabeled is %q)",
		container, defaults.ClusterLabel, defaults.ClusterLabelEnabled, p.Enforcement.Unlabeled)
	if p.Enforcement.Unlabeled == config.EnforceDeny {
		return field.ErrorList{field.Required(path, detail).WithOrigin("unlabeled")}, nil
	}
	return nil, []ruleWarning{{"unlabeled", path.String() + ": " + detail}}
}

// enforceUpdate is Enforce of an UPDATE: the stored object does not change what
// the new one is checked for (the ratchet compares the two).
func enforceUpdate(sts, _ *appsv1.StatefulSet, p config.Policy) (field.ErrorList, []ruleWarning) {
	return enforce(sts, p)
}
