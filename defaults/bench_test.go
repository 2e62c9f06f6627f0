package defaults

import (
	"os"
	"path/filepath"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/valkey-webhook/valkey-webhook/config"
)

// The benchmarks below are not run by `make test` (go test runs no benchmark
// without -bench); docs/benchmarks.md records their output. Run them with
//
//	go test -run '^$' -bench . -benchmem ./defaults ./webhook

// benchInput reads testdata/<name>.input.yaml and its effective policy.
func benchInput(b *testing.B, name string) (*appsv1.StatefulSet, config.Policy) {
	b.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name+".input.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	sts := &appsv1.StatefulSet{}
	if err := yaml.UnmarshalStrict(data, sts); err != nil {
		b.Fatal(err)
	}
	p, errs := config.Effective(config.Default(), sts.Annotations, AnnotationsPath)
	if len(errs) > 0 {
		b.Fatal(errs.ToAggregate())
	}
	return sts, p
}

// benchCases are the golden inputs: the minimal StatefulSet, and ones with TLS from
// cert-manager and with the user's own choices.
var benchCases = []string{"minimal", "tls-issuer", "user-choices"}

// BenchmarkHarden hardens each input on CREATE. Each round hardens a fresh copy;
// the DeepCopy is part of the figure (see BenchmarkDeepCopyInput for it alone).
func BenchmarkHarden(b *testing.B) {
	for _, name := range benchCases {
		b.Run(name, func(b *testing.B) {
			sts, p := benchInput(b, name)
			b.ReportAllocs()
			for b.Loop() {
				Harden(sts.DeepCopy(), nil, &p)
			}
		})
	}
}

// BenchmarkDeepCopyInput is the copy BenchmarkHarden makes in each round.
func BenchmarkDeepCopyInput(b *testing.B) {
	sts, _ := benchInput(b, "minimal")
	b.ReportAllocs()
	for b.Loop() {
		_ = sts.DeepCopy()
	}
}

// BenchmarkHardenWithOverrides is the whole admission mutation of the minimal
// input: its annotations applied over the policy (config.Effective), then Harden.
func BenchmarkHardenWithOverrides(b *testing.B) {
	sts, _ := benchInput(b, "minimal")
	base := config.Default()
	b.ReportAllocs()
	for b.Loop() {
		if errs := HardenWithOverrides(sts.DeepCopy(), nil, base); len(errs) > 0 {
			b.Fatal(errs.ToAggregate())
		}
	}
}

// BenchmarkHardenSettledUpdate is an UPDATE that changes neither the pod template
// nor the overrides of a hardened StatefulSet (a scale): Harden leaves it alone.
func BenchmarkHardenSettledUpdate(b *testing.B) {
	old, p := benchInput(b, "minimal")
	Harden(old, nil, &p)
	sts := old.DeepCopy()
	sts.Spec.Replicas = new(int32(9))
	b.ReportAllocs()
	for b.Loop() {
		Harden(sts, old, &p)
	}
}

// BenchmarkValkeyConf renders the valkey.conf of each hardened input.
func BenchmarkValkeyConf(b *testing.B) {
	for _, name := range benchCases {
		b.Run(name, func(b *testing.B) {
			sts, p := benchInput(b, name)
			Harden(sts, nil, &p)
			b.ReportAllocs()
			for b.Loop() {
				_ = ValkeyConf(sts, &p)
			}
		})
	}
}

// BenchmarkChecksum hashes the minimal input's valkey.conf.
func BenchmarkChecksum(b *testing.B) {
	sts, p := benchInput(b, "minimal")
	conf := ValkeyConf(sts, &p)
	b.ReportAllocs()
	for b.Loop() {
		_ = Checksum(conf)
	}
}
