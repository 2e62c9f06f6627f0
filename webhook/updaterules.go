package webhook

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// validateSettingsChange refuses an UPDATE whose new settings (p) cannot reach a
// stored StatefulSet in place, each with the way to make the change instead:
//   - an override of a key fixed at CREATE (defaults.FixedAtCreate) changed by
//     this update;
//   - TLS or auth turned on or off while the pods run, for a template that rolls
//     them one at a time: each rolled pod could not talk to its peers (the
//     cluster bus, or replication), and the roll would stall at the first one
//     (defaults.TransportChanges).
//
// The settings the stored object was hardened with are defaults.StoredPolicy's.
func validateSettingsChange(sts, old *appsv1.StatefulSet, base config.Policy, p *config.Policy) field.ErrorList {
	if !defaults.IsLabeled(old) {
		return nil
	}
	was, ok := defaults.StoredPolicy(old, base)
	if !ok {
		return nil
	}
	var errs field.ErrorList
	for _, key := range defaults.FixedAtCreate {
		name := config.AnnotationPrefix + key
		before, _ := was.Get(key)
		after, _ := p.Get(key)
		if old.Annotations[name] == sts.Annotations[name] || before == after {
			continue
		}
		errs = append(errs, field.Forbidden(defaults.AnnotationsPath.Key(name), fmt.Sprintf("%s cannot change from %q to %q on a StatefulSet that exists: %s; set it back to %q",
			key, before, after, fixedReason(key), before)))
	}

	rolls := sts.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType &&
		!equality.Semantic.DeepEqual(old.Spec.Template, sts.Spec.Template)
	if old.Status.Replicas == 0 || !rolls {
		return errs
	}
	for _, t := range defaults.TransportChanges(&was, p) {
		errs = append(errs, field.Forbidden(changedPath(sts, old, &was, p, t.Keys...), transportMessage(t.Change, t.Why)))
	}
	return errs
}

func fixedReason(key string) string {
	if strings.HasPrefix(key, "persistence.") {
		return "the API server keeps a StatefulSet's volumeClaimTemplates as created, so the new value would reach no volume (to grow the volumes, expand each PersistentVolumeClaim where its StorageClass allows it; for another class, create a new StatefulSet and move the data)"
	}
	return "the files on the data volumes belong to the UID and group the pods were created with, and a pod under another could not write them (to change it, create a new StatefulSet and move the data)"
}

// changedPath is where the first of keys whose value differs between the
// settings was and p is set: its annotation, when this update changed that, or
// else the policy key (a policy edit since the object was hardened).
func changedPath(sts, old *appsv1.StatefulSet, was, p *config.Policy, keys ...string) *field.Path {
	for _, key := range keys {
		before, _ := was.Get(key)
		if after, _ := p.Get(key); before == after {
			continue
		}
		if name := config.AnnotationPrefix + key; old.Annotations[name] != sts.Annotations[name] {
			return defaults.AnnotationsPath.Key(name)
		}
		return config.KeyPath(key)
	}
	return config.KeyPath(keys[0])
}

func transportMessage(change, why string) string {
	return fmt.Sprintf("%s while the pods run: rolled one at a time, the first new pod %s, and the roll stalls with it unready. "+
		"To switch, restart every pod at once: in this same update set spec.updateStrategy.type: OnDelete, then delete all the pods together "+
		"(they come back with their data; the cluster is unavailable until they are up), and set RollingUpdate back afterwards. "+
		"If a policy edit made the change, keep this StatefulSet as it is by pinning the stored value with its valkey-webhook.io/ annotation",
		change, why)
}
