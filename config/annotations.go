package config

import (
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// AnnotationPrefix starts every per-object override: valkey-webhook.io/<key>.
const AnnotationPrefix = "valkey-webhook.io/"

// HardenedWithAnnotation is not an override: valkey-webhook writes it on each
// labeled StatefulSet it hardens, with the settings its pod template was
// hardened with (defaults.HardenWithOverrides), so that an UPDATE can tell what
// it injected from what a user set. Overrides, Effective and the unknown-key
// checks pass it over.
const HardenedWithAnnotation = AnnotationPrefix + "hardened-with"

// RolloutGoAnnotation is not an override either: with rollout.requireGo, a user
// sets it on a StatefulSet to the config checksum that its paced roll would
// write (the RolloutAwaitingGo Event and `plan` give it), as the go for that
// one roll. A go for an earlier change approves no later one.
const RolloutGoAnnotation = AnnotationPrefix + "rollout-go"

// clusterWideOnly are the prefixes of the keys that make no sense on one object
// and so cannot be overridden by an annotation.
var clusterWideOnly = []string{"enforcement.", "rollout."}

func isClusterWideOnly(key string) bool {
	for _, prefix := range clusterWideOnly {
		if strings.HasPrefix(key, prefix) {
			return true
		}
	}
	return false
}

// AnnotationKeys returns the policy keys that an annotation may override, sorted.
func AnnotationKeys() []string {
	var out []string
	for _, l := range leaves {
		if !isClusterWideOnly(l.key) {
			out = append(out, l.key)
		}
	}
	return out
}

// Effective returns the policy for one object: base with the object's
// valkey-webhook.io/<key> annotations applied. annotationsPath is where the
// annotations live (metadata.annotations); errors name the annotation. An unknown key
// under the prefix is an error listing the known ones.
func Effective(base Policy, annotations map[string]string, annotationsPath *field.Path) (Policy, field.ErrorList) {
	p := base
	var errs field.ErrorList
	overridden := map[string]string{}
	names := make([]string, 0, len(annotations))
	for name := range annotations {
		if isOverride(name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		key := strings.TrimPrefix(name, AnnotationPrefix)
		path := annotationsPath.Key(name)
		if !knownAnnotation(name) {
			errs = append(errs, field.NotSupported(path, name, knownAnnotations()))
			continue
		}
		l, _ := lookup(key)
		if err := p.setString(l, annotations[name]); err != nil {
			errs = append(errs, field.Invalid(path, annotations[name], err.Error()))
			continue
		}
		overridden[key] = name
	}
	if len(errs) > 0 {
		return base, errs
	}
	errs = p.Validate(func(key string) *field.Path {
		if name, ok := overridden[key]; ok {
			return annotationsPath.Key(name)
		}
		return KeyPath(key)
	})
	if len(errs) > 0 {
		return base, errs
	}
	return p, nil
}

// WithoutInheritedUnknown drops from annotations the valkey-webhook.io/ keys that
// are not known (to this release, or at all) and that the stored object (old)
// already carries with the same value, and returns them by name. An UPDATE that
// did not add such a key is not refused for it: a key renamed or dropped by a
// later release must not block every update of the objects that carry it. The
// input map is not changed.
func WithoutInheritedUnknown(annotations, old map[string]string) (map[string]string, []string) {
	var dropped []string
	for name, v := range annotations {
		if !isOverride(name) || knownAnnotation(name) {
			continue
		}
		if ov, ok := old[name]; ok && ov == v {
			dropped = append(dropped, name)
		}
	}
	if len(dropped) == 0 {
		return annotations, nil
	}
	sort.Strings(dropped)
	out := make(map[string]string, len(annotations))
	for name, v := range annotations {
		out[name] = v
	}
	for _, name := range dropped {
		delete(out, name)
	}
	return out, dropped
}

func knownAnnotation(name string) bool {
	key := strings.TrimPrefix(name, AnnotationPrefix)
	_, ok := lookup(key)
	return ok && !isClusterWideOnly(key)
}

// Overrides returns the valkey-webhook.io/ annotations of an object, for comparing
// two versions of it.
func Overrides(annotations map[string]string) map[string]string {
	out := map[string]string{}
	for name, v := range annotations {
		if isOverride(name) {
			out[name] = v
		}
	}
	return out
}

// isOverride reports whether an annotation is under the prefix and meant as an
// override (known or not): every name there but the record valkey-webhook
// writes and a rollout's go.
func isOverride(name string) bool {
	return strings.HasPrefix(name, AnnotationPrefix) && name != HardenedWithAnnotation && name != RolloutGoAnnotation
}

func knownAnnotations() []string {
	keys := AnnotationKeys()
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = AnnotationPrefix + k
	}
	return out
}
