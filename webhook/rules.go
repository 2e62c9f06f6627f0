package webhook

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// The rules below are pure: an object and its effective policy in, field errors out.
// Each detail says the rule and the fix; the field path and the value are added by
// field.Error.

// validateReplicas denies fewer pods than masters x (1 + replicas per master).
func validateReplicas(sts *appsv1.StatefulSet, p *config.Policy, path *field.Path) field.ErrorList {
	replicas := replicasOf(sts)
	need := p.Cluster.MinMasters * p.ShardSize()
	if int(replicas) >= need {
		return nil
	}
	return field.ErrorList{field.Invalid(path.Child("replicas"), replicas, fmt.Sprintf(
		"must be at least %d: %d masters x (1 + %d replicas per master); raise spec.replicas, or lower valkey-webhook.io/cluster.replicasPerMaster",
		need, p.Cluster.MinMasters, p.Cluster.ReplicasPerMaster))}
}

// validateDataVolume denies a data directory that does not survive a pod restart.
func validateDataVolume(sts *appsv1.StatefulSet, p *config.Policy, path *field.Path) field.ErrorList {
	if p.Persistence.AllowEphemeral {
		return nil
	}
	name := defaults.DataVolume
	if i := defaults.ValkeyContainerIndex(&sts.Spec.Template.Spec); i >= 0 {
		for _, m := range sts.Spec.Template.Spec.Containers[i].VolumeMounts {
			if m.MountPath == defaults.DataDir {
				name = m.Name
			}
		}
	}
	for _, t := range sts.Spec.VolumeClaimTemplates {
		if t.Name == name {
			return nil
		}
	}
	const fix = "Valkey's data and nodes.conf must survive a pod restart; use a volumeClaimTemplate named %q (the webhook adds one on CREATE when none is given), or set the annotation valkey-webhook.io/persistence.allowEphemeral: \"true\" for a cache that may lose its data"
	for i, v := range sts.Spec.Template.Spec.Volumes {
		if v.Name == name && v.PersistentVolumeClaim == nil {
			return field.ErrorList{field.Forbidden(path.Child("template", "spec", "volumes").Index(i), fmt.Sprintf(
				"volume %q holds %s and does not survive a pod restart: "+fix, name, defaults.DataDir, name))}
		}
	}
	if defaults.HasVolume(&sts.Spec.Template.Spec, name) {
		return nil
	}
	return field.ErrorList{field.Required(path.Child("volumeClaimTemplates"), fmt.Sprintf(fix, name)+
		"; volumeClaimTemplates cannot change after creation: delete the StatefulSet with --cascade=orphan and create it again with the claim template")}
}

// validatePodSecurity denies privileged or root containers, added capabilities,
// privilege escalation and host namespaces.
func validatePodSecurity(sts *appsv1.StatefulSet, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	spec := &sts.Spec.Template.Spec
	specPath := path.Child("template", "spec")
	hostNS := []struct {
		name string
		on   bool
	}{{"hostNetwork", spec.HostNetwork}, {"hostPID", spec.HostPID}, {"hostIPC", spec.HostIPC}}
	for _, h := range hostNS {
		if h.on {
			errs = append(errs, field.Forbidden(specPath.Child(h.name), "Valkey pods must not share the node's namespaces; remove "+h.name))
		}
	}
	if sc := spec.SecurityContext; sc != nil {
		scPath := specPath.Child("securityContext")
		if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			errs = append(errs, field.Invalid(scPath.Child("runAsUser"), 0, "must not be 0 (root); remove it to get the non-root default"))
		}
		if sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot {
			errs = append(errs, field.Invalid(scPath.Child("runAsNonRoot"), false, "must be true; remove it to get the default"))
		}
	}
	check := func(cs []corev1.Container, csPath *field.Path) {
		for i := range cs {
			sc := cs[i].SecurityContext
			if sc == nil {
				continue
			}
			scPath := csPath.Index(i).Child("securityContext")
			if sc.Privileged != nil && *sc.Privileged {
				errs = append(errs, field.Forbidden(scPath.Child("privileged"), "Valkey containers must not be privileged; remove privileged"))
			}
			if sc.AllowPrivilegeEscalation != nil && *sc.AllowPrivilegeEscalation {
				errs = append(errs, field.Forbidden(scPath.Child("allowPrivilegeEscalation"), "must be false; remove it to get the default"))
			}
			if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
				errs = append(errs, field.Invalid(scPath.Child("runAsUser"), 0, "must not be 0 (root); remove it to get the non-root default"))
			}
			if sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot {
				errs = append(errs, field.Invalid(scPath.Child("runAsNonRoot"), false, "must be true; remove it to get the default"))
			}
			if sc.Capabilities != nil && len(sc.Capabilities.Add) > 0 {
				errs = append(errs, field.Forbidden(scPath.Child("capabilities", "add"), "Valkey needs no Linux capabilities; remove capabilities.add"))
			}
		}
	}
	check(spec.InitContainers, specPath.Child("initContainers"))
	check(spec.Containers, specPath.Child("containers"))
	return errs
}

// validateMaxmemory denies a maxmemory at or above the valkey container's memory
// limit: the kernel would kill Valkey before it ever evicts or refuses a write.
func validateMaxmemory(sts *appsv1.StatefulSet, p *config.Policy, path *field.Path) field.ErrorList {
	if p.Valkey.Maxmemory == "" {
		return nil // derived from the limit, always below it
	}
	limit, ok := defaults.MemoryLimit(sts)
	maxmemory, known := defaults.Maxmemory(sts, p)
	if !ok || !known || maxmemory < limit {
		return nil
	}
	i := defaults.ValkeyContainerIndex(&sts.Spec.Template.Spec)
	detail := fmt.Sprintf("maxmemory %s (%d bytes) must be below the valkey container's memory limit (%d bytes), with room for replication buffers and forks; lower valkey-webhook.io/valkey.maxmemory or raise the limit",
		p.Valkey.Maxmemory, maxmemory, limit)
	if name := config.AnnotationPrefix + "valkey.maxmemory"; sts.Annotations[name] != "" {
		return field.ErrorList{field.Invalid(field.NewPath("metadata", "annotations").Key(name), p.Valkey.Maxmemory, detail)}
	}
	limitPath := path.Child("template", "spec", "containers").Index(i).Child("resources", "limits").Key(string(corev1.ResourceMemory))
	return field.ErrorList{field.Invalid(limitPath, limit, detail)}
}

// passwordEnvName matches environment variable names that carry a password
// (VALKEY_PASSWORD, REDIS_PASS, ..._AUTH), but not those that name a file holding
// one (..._PASSWORD_FILE) or switch a feature (ALLOW_EMPTY_PASSWORD).
var passwordEnvName = regexp.MustCompile(`(?i)^(?:[A-Z0-9_]*_)?(PASSWORD|PASSWD|PASS|REQUIREPASS|MASTERAUTH|AUTH)$`)

func isPasswordEnv(name string) bool {
	return passwordEnvName.MatchString(name) && !strings.HasPrefix(strings.ToUpper(name), "ALLOW_")
}

// validateNoLiteralPassword denies a password written into the pod template: an
// env literal, or a password flag in a command line (the container's command and
// args, its probes and its lifecycle hooks). Anyone who can read the StatefulSet can
// read those, and command lines show up in process lists and logs.
func validateNoLiteralPassword(sts *appsv1.StatefulSet, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	spec := &sts.Spec.Template.Spec
	check := func(cs []corev1.Container, csPath *field.Path) {
		for i := range cs {
			c := &cs[i]
			cPath := csPath.Index(i)
			for j, e := range c.Env {
				if e.Value != "" && isPasswordEnv(e.Name) {
					errs = append(errs, field.Forbidden(cPath.Child("env").Index(j).Child("value"),
						fmt.Sprintf("%s looks like a password and must not be a literal value; use valueFrom.secretKeyRef, or let the webhook mount the auth Secret", e.Name)))
				}
			}
			for _, cl := range commandLines(c, cPath) {
				if flag, j := passwordFlag(cl.words); flag != "" && j >= cl.context {
					errs = append(errs, field.Forbidden(cl.path.Index(j-cl.context),
						fmt.Sprintf("%s puts a password on a command line; remove it: with auth on, the webhook mounts the password from the auth Secret and valkey-cli reads it from REDISCLI_AUTH", flag)))
				}
			}
		}
	}
	check(spec.InitContainers, path.Child("template", "spec", "initContainers"))
	check(spec.Containers, path.Child("template", "spec", "containers"))
	return errs
}

// commandLine is one command line of a container and where it is. The first
// context words are only there to tell which program runs (args follow command).
type commandLine struct {
	path    *field.Path
	words   []string
	context int
}

// commandLines lists a container's command lines: command plus args, and the exec
// actions of its probes and lifecycle hooks.
func commandLines(c *corev1.Container, cPath *field.Path) []commandLine {
	out := []commandLine{}
	if len(c.Command) > 0 {
		out = append(out, commandLine{cPath.Child("command"), c.Command, 0})
	}
	if len(c.Args) > 0 {
		out = append(out, commandLine{cPath.Child("args"), append(append([]string(nil), c.Command...), c.Args...), len(c.Command)})
	}
	probes := []struct {
		name  string
		probe *corev1.Probe
	}{{"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}, {"startupProbe", c.StartupProbe}}
	for _, pr := range probes {
		if pr.probe != nil && pr.probe.Exec != nil {
			out = append(out, commandLine{cPath.Child(pr.name, "exec", "command"), pr.probe.Exec.Command, 0})
		}
	}
	if c.Lifecycle != nil {
		hooks := []struct {
			name string
			h    *corev1.LifecycleHandler
		}{{"postStart", c.Lifecycle.PostStart}, {"preStop", c.Lifecycle.PreStop}}
		for _, h := range hooks {
			if h.h != nil && h.h.Exec != nil {
				out = append(out, commandLine{cPath.Child("lifecycle", h.name, "exec", "command"), h.h.Exec.Command, 0})
			}
		}
	}
	return out
}

// passwordFlag returns the password flag a command line passes, if any, and the
// index of the word that holds it: the server's --requirepass and --masterauth, and
// valkey-cli's (or redis-cli's) -a and --pass. Words are split on spaces as well,
// for "sh -c" scripts.
func passwordFlag(words []string) (string, int) {
	cli := false
	for _, w := range words {
		if strings.Contains(w, "valkey-cli") || strings.Contains(w, "redis-cli") {
			cli = true
		}
	}
	for i, w := range words {
		for _, t := range strings.Fields(w) {
			name, _, _ := strings.Cut(t, "=")
			switch {
			case name == "--requirepass" || name == "--masterauth":
				return name, i
			case cli && (name == "-a" || name == "--pass"):
				return name, i
			}
		}
	}
	return "", -1
}

// validateRollingUpdate denies a rolling update that may take down more than one
// pod at a time: with one replica per master, two pods down can be a whole shard.
func validateRollingUpdate(sts *appsv1.StatefulSet, path *field.Path) field.ErrorList {
	ru := sts.Spec.UpdateStrategy.RollingUpdate
	if ru == nil || ru.MaxUnavailable == nil {
		return nil
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(ru.MaxUnavailable, int(replicasOf(sts)), true)
	if err == nil && n <= 1 {
		return nil
	}
	return field.ErrorList{field.Invalid(path.Child("updateStrategy", "rollingUpdate", "maxUnavailable"), ru.MaxUnavailable.String(),
		"must be 1: a rolling update that takes down more than one pod at a time can take a master and its replica together and lose their slots; remove it or set 1")}
}

func replicasOf(sts *appsv1.StatefulSet) int32 {
	if sts.Spec.Replicas == nil {
		return 1 // the API server's default
	}
	return *sts.Spec.Replicas
}

// validatePortNames denies a Valkey or exporter port that goes by another name
// than the one the companion objects reach it by, or that name on another number:
// the Services' target ports and the NetworkPolicy's ports name them, so that a
// valkey.port change reaches each pod at the port it runs with, mid-roll too, and
// a port under another name would get no traffic at all. A port that is absent is
// not denied: the mutation adds it.
func validatePortNames(sts *appsv1.StatefulSet, p *config.Policy, path *field.Path) field.ErrorList {
	type named struct {
		container, name, what string
		port                  int
	}
	want := []named{
		{defaults.ValkeyContainer, defaults.ClientPortName, "Valkey's client port (valkey.port)", p.Valkey.Port},
		{defaults.ValkeyContainer, defaults.BusPortName, "the cluster bus port (valkey.port + 10000)", p.Valkey.Port + defaults.BusPortOffset},
	}
	if p.Metrics.Enabled {
		want = append(want, named{defaults.MetricsContainer, defaults.MetricsPortName, "the exporter's port (metrics.port)", p.Metrics.Port})
	}
	var errs field.ErrorList
	containers := sts.Spec.Template.Spec.Containers
	for _, w := range want {
		i := slices.IndexFunc(containers, func(c corev1.Container) bool { return c.Name == w.container })
		if i < 0 {
			continue
		}
		portsPath := path.Child("template", "spec", "containers").Index(i).Child("ports")
		for j, cp := range containers[i].Ports {
			switch {
			case cp.ContainerPort == int32(w.port) && cp.Name != w.name:
				errs = append(errs, field.Invalid(portsPath.Index(j).Child("name"), cp.Name, fmt.Sprintf(
					"port %d is %s: name it %q, by which the companion Services and NetworkPolicy reach it, or leave the port out: the webhook adds it",
					w.port, w.what, w.name)))
			case cp.Name == w.name && cp.ContainerPort != int32(w.port):
				errs = append(errs, field.Invalid(portsPath.Index(j).Child("containerPort"), cp.ContainerPort, fmt.Sprintf(
					"the port named %q must be %d, %s, on which the container listens: set %d, or leave the port out: the webhook adds it",
					w.name, w.port, w.what, w.port)))
			}
		}
	}
	return errs
}
