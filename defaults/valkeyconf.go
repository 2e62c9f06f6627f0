package defaults

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/valkey-webhook/valkey-webhook/config"
)

// ValkeyConf renders the valkey.conf a hardened StatefulSet runs with. It depends
// only on the effective policy and the valkey container's memory limit, so the
// companion ConfigMap and the checksum in the pod template always agree.
func ValkeyConf(sts *appsv1.StatefulSet, p *config.Policy) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	yesNo := func(v bool) string {
		if v {
			return "yes"
		}
		return "no"
	}

	line("# Rendered by valkey-webhook from its policy and the StatefulSet's")
	line("# valkey-webhook.io/ annotations. Change those, not this file.")
	line("bind * -::*")
	line("protected-mode no")
	if p.TLSEnabled() {
		line("port 0")
		line("tls-port %d", p.Valkey.Port)
		line("tls-cluster yes")
		line("tls-replication yes")
		line("tls-cert-file %s/tls.crt", TLSDir)
		line("tls-key-file %s/tls.key", TLSDir)
		line("tls-ca-cert-file %s/ca.crt", TLSDir)
		line("tls-auth-clients %s", yesNo(p.TLS.AuthClients))
	} else {
		line("port %d", p.Valkey.Port)
	}
	line("daemonize no")
	line(`logfile ""`)
	line("dir %s", DataDir)

	line("cluster-enabled yes")
	line("cluster-config-file %s/nodes.conf", DataDir)
	line("cluster-node-timeout %d", p.Cluster.NodeTimeout)
	line("cluster-require-full-coverage %s", yesNo(p.Cluster.RequireFullCoverage))
	line("cluster-allow-reads-when-down %s", yesNo(p.Cluster.AllowReadsWhenDown))
	line("cluster-replica-validity-factor %d", p.Cluster.ReplicaValidityFactor)

	line("appendonly %s", yesNo(p.Valkey.AppendOnly))
	line("appendfsync %s", p.Valkey.AppendFsync)
	if save := strings.Join(strings.Fields(p.Valkey.Save), " "); save != "" {
		line("save %s", save)
	} else {
		line(`save ""`)
	}

	if maxmemory, ok := Maxmemory(sts, p); ok {
		line("maxmemory %d", maxmemory)
	}
	line("maxmemory-policy %s", p.Valkey.MaxmemoryPolicy)

	if p.Auth.Enabled {
		line("include %s/%s", AuthDir, AuthConfigKey)
	}
	return b.String()
}

// Checksum is the value of the config-checksum pod-template annotation: a hash
// of the settings valkey.conf makes, not of its text, so that it changes when,
// and only when, what Valkey reads changes. Comments, blank lines, spacing and
// the order of different directives do not count (Valkey reads them the same);
// the order of one directive's repeated lines does (settings).
func Checksum(conf string) string {
	return hash(settings(conf))
}

// LegacyChecksum is the config checksum that releases up to b60e576 wrote: a
// hash of valkey.conf's whole text, comments included. It is recognized on the
// objects they stored, never written (docs/design.md, "What the pods run with").
func LegacyChecksum(conf string) string {
	return hash(conf)
}

// AsksFor reports whether a pod template's config checksum is that of conf, in
// this release's form or the form earlier releases wrote: its pods run with conf
// (or are rolling to it), so conf needs no roll. The controller's checksum patch,
// its rollout gate and the plan decide by it.
func AsksFor(tpl corev1.PodTemplateSpec, conf string) bool {
	stored := tpl.Annotations[ChecksumAnnotation]
	return stored == Checksum(conf) || stored == LegacyChecksum(conf)
}

// AwaitsGo reports whether, under rollout.requireGo, a StatefulSet whose pods
// are to roll to conf's settings and p's pod template still awaits its go, and
// the value of config.RolloutGoAnnotation that gives it: a hash of the two, so
// that a go is for one change. The controller waits by it and the plan prints
// it.
func AwaitsGo(sts *appsv1.StatefulSet, p *config.Policy, conf string) (string, bool) {
	want := hash(Checksum(conf) + " " + hardenedWith(p))
	return want, p.Rollout.RequireGo && sts.Annotations[config.RolloutGoAnnotation] != want
}

func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// settings is what conf tells Valkey: its directive lines, spacing normalized,
// grouped by directive name (case folded, as Valkey reads names) in sorted
// order, each group's lines in file order.
func settings(conf string) string {
	groups := map[string][]string{}
	for _, line := range strings.Split(conf, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		name := strings.ToLower(f[0])
		groups[name] = append(groups[name], name+" "+strings.Join(f[1:], " "))
	}
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(groups)) {
		for _, l := range groups[name] {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// SameSettings reports whether two valkey.conf texts tell Valkey the same.
func SameSettings(a, b string) bool { return settings(a) == settings(b) }

// SettingsDiff is the directive lines (spacing normalized, names case folded)
// that to drops from from, and those it adds, each in settings order. Both are
// empty when only the order of a repeated directive's lines differs.
func SettingsDiff(from, to string) (removed, added []string) {
	a, b := strings.Split(settings(from), "\n"), strings.Split(settings(to), "\n")
	missing := func(lines, in []string) []string {
		var out []string
		for _, l := range lines {
			if l != "" && !slices.Contains(in, l) {
				out = append(out, l)
			}
		}
		return out
	}
	return missing(a, b), missing(b, a)
}

// Maxmemory is the maxmemory in bytes: valkey.maxmemory when set, otherwise
// valkey.maxmemoryPercent of the valkey container's memory limit. ok is false when
// neither is known, and Valkey runs without a maxmemory.
func Maxmemory(sts *appsv1.StatefulSet, p *config.Policy) (bytes int64, ok bool) {
	if p.Valkey.Maxmemory != "" {
		q, err := resource.ParseQuantity(p.Valkey.Maxmemory)
		if err != nil {
			return 0, false
		}
		return q.Value(), true
	}
	limit, ok := MemoryLimit(sts)
	if !ok {
		return 0, false
	}
	return limit * int64(p.Valkey.MaxmemoryPercent) / 100, true
}

// MemoryLimit returns the valkey container's memory limit in bytes.
func MemoryLimit(sts *appsv1.StatefulSet) (int64, bool) {
	i := ValkeyContainerIndex(&sts.Spec.Template.Spec)
	if i < 0 {
		return 0, false
	}
	q, ok := sts.Spec.Template.Spec.Containers[i].Resources.Limits[corev1.ResourceMemory]
	if !ok {
		return 0, false
	}
	return q.Value(), true
}

// ValkeyContainerIndex returns the index of the container named valkey, or -1.
func ValkeyContainerIndex(spec *corev1.PodSpec) int {
	for i := range spec.Containers {
		if spec.Containers[i].Name == ValkeyContainer {
			return i
		}
	}
	return -1
}

// FindContainer is the container of cs named name, or nil.
func FindContainer(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}
