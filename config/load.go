package config

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// Load reads a policy file. Keys it does not set keep their built-in defaults.
// An unknown key, a value of the wrong type or a bad value is an error that names
// the file and the key's path.
func Load(path string) (Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Policy{}, fmt.Errorf("reading policy file: %w", err)
	}
	p, err := Parse(data)
	if err != nil {
		return Policy{}, fmt.Errorf("policy file %s: %w", path, err)
	}
	return p, nil
}

// Parse reads a policy document over the built-in defaults and validates the result.
func Parse(data []byte) (Policy, error) {
	p := Default()
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return Policy{}, fmt.Errorf("not valid YAML: %w", err)
	}
	var doc any
	if err := json.Unmarshal(js, &doc); err != nil {
		return Policy{}, fmt.Errorf("not valid YAML: %w", err)
	}
	var errs field.ErrorList
	switch d := doc.(type) {
	case nil: // an empty file: the defaults
	case map[string]any:
		errs = p.merge(d, "", nil)
	default:
		return Policy{}, fmt.Errorf("the policy must be a mapping of keys, not %s", describe(doc))
	}
	if len(errs) == 0 {
		errs = p.Validate(KeyPath)
	}
	if len(errs) > 0 {
		return Policy{}, errs.ToAggregate()
	}
	return p, nil
}

// KeyPath is the field path of a policy key as written in a policy file.
func KeyPath(key string) *field.Path {
	parts := strings.Split(key, ".")
	return field.NewPath(parts[0], parts[1:]...)
}

// merge sets every key of m (a decoded YAML mapping at prefix) and reports unknown
// keys and values of the wrong type, with their paths.
func (p *Policy) merge(m map[string]any, prefix string, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		key := prefix + name
		child := path.Child(name)
		if path == nil {
			child = field.NewPath(name)
		}
		value := m[name]
		if strings.Contains(name, ".") {
			// Dotted keys are for annotations; in a file, sections nest, so that
			// one key cannot be written twice.
			errs = append(errs, field.NotSupported(child, name, namesUnder(prefix)))
			continue
		}
		if l, ok := lookup(key); ok {
			if err := p.setValue(l, value); err != nil {
				errs = append(errs, field.Invalid(child, value, err.Error()))
			}
			continue
		}
		if children := keysUnder(key + "."); len(children) > 0 {
			sub, ok := value.(map[string]any)
			if !ok {
				errs = append(errs, field.Invalid(child, value, fmt.Sprintf("must be a mapping of %s", strings.Join(children, ", "))))
				continue
			}
			errs = append(errs, p.merge(sub, key+".", child)...)
			continue
		}
		errs = append(errs, field.NotSupported(child, name, namesUnder(prefix)))
	}
	return errs
}

// keysUnder returns the full keys that start with prefix.
func keysUnder(prefix string) []string {
	var out []string
	for _, l := range leaves {
		if strings.HasPrefix(l.key, prefix) {
			out = append(out, l.key)
		}
	}
	return out
}

// namesUnder returns the names that may appear in the mapping at prefix: leaf names
// and section names, each once, sorted.
func namesUnder(prefix string) []string {
	seen := map[string]bool{}
	var out []string
	for _, key := range keysUnder(prefix) {
		name, _, _ := strings.Cut(strings.TrimPrefix(key, prefix), ".")
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
