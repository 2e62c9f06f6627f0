package config

import (
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// AnnotationPrefix starts every per-object override: valkey-webhook.io/<key>.
const AnnotationPrefix = "valkey-webhook.io/"

// clusterWideOnly are the keys that make no sense on one object and so cannot be
// overridden by an annotation.
const clusterWideOnly = "enforcement."

// AnnotationKeys returns the policy keys that an annotation may override, sorted.
func AnnotationKeys() []string {
	var out []string
	for _, l := range leaves {
		if !strings.HasPrefix(l.key, clusterWideOnly) {
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
		if strings.HasPrefix(name, AnnotationPrefix) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		key := strings.TrimPrefix(name, AnnotationPrefix)
		path := annotationsPath.Key(name)
		l, ok := lookup(key)
		if !ok || strings.HasPrefix(key, clusterWideOnly) {
			errs = append(errs, field.NotSupported(path, name, knownAnnotations()))
			continue
		}
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

// Overrides returns the valkey-webhook.io/ annotations of an object, for comparing
// two versions of it.
func Overrides(annotations map[string]string) map[string]string {
	out := map[string]string{}
	for name, v := range annotations {
		if strings.HasPrefix(name, AnnotationPrefix) {
			out[name] = v
		}
	}
	return out
}

func knownAnnotations() []string {
	keys := AnnotationKeys()
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = AnnotationPrefix + k
	}
	return out
}
