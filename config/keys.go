package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// leaf is one settable policy key: its dotted path and where it lives in Policy.
type leaf struct {
	key   string
	index []int
	kind  reflect.Kind
}

// leaves lists every policy key, sorted, derived once from the Policy type so that
// the set of known keys can never drift from the struct.
var leaves = func() []leaf {
	var out []leaf
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			key := prefix + name
			idx := append(append([]int(nil), index...), i)
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, key+".", idx)
				continue
			}
			out = append(out, leaf{key: key, index: idx, kind: f.Type.Kind()})
		}
	}
	walk(reflect.TypeOf(Policy{}), "", nil)
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}()

func lookup(key string) (leaf, bool) {
	i := sort.Search(len(leaves), func(i int) bool { return leaves[i].key >= key })
	if i < len(leaves) && leaves[i].key == key {
		return leaves[i], true
	}
	return leaf{}, false
}

// Keys returns every policy key in sorted order, e.g. "cluster.nodeTimeout".
func Keys() []string {
	out := make([]string, len(leaves))
	for i, l := range leaves {
		out[i] = l.key
	}
	return out
}

// Get returns the value of a policy key as it would be written in an annotation.
func (p *Policy) Get(key string) (string, bool) {
	l, ok := lookup(key)
	if !ok {
		return "", false
	}
	v := reflect.ValueOf(p).Elem().FieldByIndex(l.index)
	switch l.kind {
	case reflect.String:
		return v.String(), true
	case reflect.Bool:
		return strconv.FormatBool(v.Bool()), true
	default:
		return strconv.FormatInt(v.Int(), 10), true
	}
}

// setValue sets a key from a value decoded from YAML or JSON (string, bool, float64
// or int64). The error text is the detail of a field error, without the key.
func (p *Policy) setValue(l leaf, value any) error {
	v := reflect.ValueOf(p).Elem().FieldByIndex(l.index)
	switch l.kind {
	case reflect.String:
		s, ok := value.(string)
		if !ok {
			return fmt.Errorf("must be a string, not %s", describe(value))
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := value.(bool)
		if !ok {
			return fmt.Errorf("must be true or false, not %s", describe(value))
		}
		v.SetBool(b)
	default:
		n, ok := asInt(value)
		if !ok {
			return fmt.Errorf("must be a whole number, not %s", describe(value))
		}
		v.SetInt(n)
	}
	return nil
}

// setString sets a key from its text form, as written in an annotation.
func (p *Policy) setString(l leaf, s string) error {
	switch l.kind {
	case reflect.String:
		return p.setValue(l, s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("must be true or false")
		}
		return p.setValue(l, b)
	default:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 32)
		if err != nil {
			return fmt.Errorf("must be a whole number")
		}
		return p.setValue(l, n)
	}
}

func asInt(value any) (int64, bool) {
	switch n := value.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case float64:
		if n != float64(int64(n)) || n > 1<<31-1 || n < -(1<<31) {
			return 0, false
		}
		return int64(n), true
	}
	return 0, false
}

func describe(value any) string {
	switch value.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case float64, int64, int:
		return "a number"
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	}
	return fmt.Sprintf("%T", value)
}
