package config_test

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/valkey-webhook/valkey-webhook/config"
)

// FuzzParse reads arbitrary bytes as a policy file. Parse never panics; what it
// accepts is a valid policy, the same on a second read, and written back as YAML it
// reads as the same policy. What it refuses, it refuses with a message.
//
// Seeds: f.Add below and testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	for _, doc := range []string{
		"",
		"{}",
		"cluster:\n  nodeTimeout: 15000\n  replicasPerMaster: 2\n",
		"valkey:\n  maxmemory: 2Gi\n  appendfsync: \"no\"\n  save: \"\"\n",
		"tls:\n  issuer: ClusterIssuer/internal-ca\n  authClients: true\n",
		"networkPolicy:\n  clientPodSelector: role in (api,web)\n",
		"enforcement: {unlabeled: deny}\n",
		"scaleGuard: warn\n",
		`{"metrics": {"port": 9200, "enabled": false}}`,
		"cluster.nodeTimeout: 1\n",
		"cluster: 5\n",
		"- a\n- b\n",
		"a: &a [*a, *a]\n",
	} {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := config.Parse(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("Parse(%q) failed with an empty message", data)
			}
			if p != (config.Policy{}) {
				t.Fatalf("Parse(%q) failed but returned a policy: %+v", data, p)
			}
			return
		}
		if errs := p.Validate(config.KeyPath); len(errs) > 0 {
			t.Fatalf("Parse(%q) accepted a policy that does not validate: %v", data, errs)
		}
		again, err := config.Parse(data)
		if err != nil || again != p {
			t.Fatalf("Parse(%q) is not deterministic: %+v, %v", data, again, err)
		}
		written, err := yaml.Marshal(p)
		if err != nil {
			t.Fatalf("marshalling %+v: %v", p, err)
		}
		back, err := config.Parse(written)
		if err != nil {
			t.Fatalf("the policy read from %q, written as\n%s\ndoes not read back: %v", data, written, err)
		}
		if diff := cmp.Diff(p, back); diff != "" {
			t.Fatalf("the policy read from %q, written as\n%s\nreads back differently (-first +second):\n%s", data, written, diff)
		}
	})
}

// FuzzEffective applies two arbitrary annotations over the built-in policy.
// Effective never panics and never changes its inputs; on error it returns the base
// policy and every error names an annotation or a policy key; on success the policy
// is valid, annotations without the valkey-webhook.io/ prefix change nothing, and the
// overridden values written back as annotations give the same policy.
//
// Seeds: f.Add below and testdata/fuzz/FuzzEffective.
func FuzzEffective(f *testing.F) {
	f.Add("valkey-webhook.io/cluster.nodeTimeout", "15000", "valkey-webhook.io/metrics.enabled", "false")
	f.Add("valkey-webhook.io/valkey.maxmemory", "512Mi", "valkey-webhook.io/tls.issuer", "ClusterIssuer/internal-ca")
	f.Add("valkey-webhook.io/tls.authClients", "true", "valkey-webhook.io/tls.secretName", "valkey-tls")
	f.Add("valkey-webhook.io/valkey.port", "9121", "example.com/other", "x")
	f.Add("valkey-webhook.io/foo", "bar", "valkey-webhook.io/enforcement.unlabeled", "off")
	f.Add("valkey-webhook.io/cluster.replicasPerMaster", " 2 ", "valkey-webhook.io/valkey.save", "")
	f.Add("valkey-webhook.io/networkPolicy.clientPodSelector", "role in (api", "valkey-webhook.io/persistence.size", "0")
	base := config.Default()
	annotationPrefix := "metadata.annotations[" + config.AnnotationPrefix
	policyKeys := map[string]bool{}
	for _, k := range config.Keys() {
		policyKeys[config.KeyPath(k).String()] = true
	}
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		annotations := map[string]string{k1: v1, k2: v2}
		before := maps.Clone(annotations)
		got, errs := config.Effective(base, annotations, annotationsPath)
		if !maps.Equal(before, annotations) {
			t.Fatalf("Effective changed its annotations: %v -> %v", before, annotations)
		}
		if base != config.Default() {
			t.Fatalf("Effective changed its base policy")
		}
		if len(errs) > 0 {
			if got != base {
				t.Fatalf("Effective(%v) failed with %v but did not return the base policy", annotations, errs)
			}
			for _, e := range errs {
				path := e.Field
				if !strings.HasPrefix(path, annotationPrefix) && !policyKeys[path] {
					t.Fatalf("Effective(%v): error %q names neither an annotation nor a policy key", annotations, e)
				}
			}
			return
		}
		if vErrs := got.Validate(config.KeyPath); len(vErrs) > 0 {
			t.Fatalf("Effective(%v) returned a policy that does not validate: %v", annotations, vErrs)
		}
		overrides := config.Overrides(annotations)
		if len(overrides) == 0 && got != base {
			t.Fatalf("Effective(%v) changed the policy without a valkey-webhook.io/ annotation", annotations)
		}
		// Write every overridden value back in its canonical form.
		canonical := map[string]string{"example.com/ignored": "x"}
		for name := range overrides {
			key := strings.TrimPrefix(name, config.AnnotationPrefix)
			v, ok := got.Get(key)
			if !ok {
				t.Fatalf("Effective(%v) accepted %q, which is not a policy key", annotations, name)
			}
			canonical[name] = v
		}
		back, errs := config.Effective(base, canonical, annotationsPath)
		if len(errs) > 0 {
			t.Fatalf("the canonical annotations %v of %v fail: %v", canonical, annotations, errs)
		}
		if diff := cmp.Diff(got, back); diff != "" {
			t.Fatalf("the canonical annotations %v of %v give another policy (-first +second):\n%s", canonical, annotations, diff)
		}
	})
}

// TestQuantityWithHugeExponent is the input FuzzEffective found hanging (its seed
// is testdata/fuzz/FuzzEffective/c1b7e8c8c17a0157): resource.ParseQuantity spends
// minutes on a decimal exponent of 13 digits, so an annotation could hold the
// webhook far past its timeout. Such a value is refused at once, by annotation and
// in a policy file, and an ordinary exponent still parses.
func TestQuantityWithHugeExponent(t *testing.T) {
	for _, value := range []string{".0000100E0008010000001000", "1e-2147483648", "1E+99999999999", "1" + strings.Repeat("0", 100) + "Gi"} {
		t.Run(value, func(t *testing.T) {
			done := make(chan field.ErrorList, 1)
			go func() {
				_, errs := config.Effective(config.Default(), map[string]string{"valkey-webhook.io/valkey.maxmemory": value}, annotationsPath)
				done <- errs
			}()
			select {
			case errs := <-done:
				want := field.ErrorList{field.Invalid(annotation("valkey.maxmemory"), value, "")}
				if diff := cmp.Diff(want, errs, ignoreDetail); diff != "" {
					t.Errorf("Effective() errors (-want +got):\n%s", diff)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("Effective() still runs after 10s")
			}
			if _, err := config.Parse([]byte("persistence:\n  size: \"" + value + "\"\n")); err == nil {
				t.Errorf("Parse() accepts persistence.size %q", value)
			}
		})
	}
	p, errs := config.Effective(config.Default(), map[string]string{"valkey-webhook.io/valkey.maxmemory": "3e9"}, annotationsPath)
	if len(errs) > 0 || p.Valkey.Maxmemory != "3e9" {
		t.Errorf("Effective() with maxmemory 3e9 = %q, %v; want it accepted", p.Valkey.Maxmemory, errs)
	}
}
