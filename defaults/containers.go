package defaults

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	"github.com/valkey-webhook/valkey-webhook/config"
)

// PodIPEnv carries the pod IP into valkey-server's --cluster-announce-ip.
const PodIPEnv = "POD_IP"

func hardenValkeyContainer(sts *appsv1.StatefulSet, c *corev1.Container, p *config.Policy) {
	if len(c.Command) == 0 && len(c.Args) == 0 {
		c.Command, c.Args = valkeyCommand(sts, p)
	}
	if !hasEnv(c, PodIPEnv) {
		c.Env = append(c.Env, fieldEnv(PodIPEnv, "status.podIP"))
	}
	if p.TLSEnabled() {
		for _, e := range podNameEnv() {
			if !hasEnv(c, e.Name) {
				c.Env = append(c.Env, e)
			}
		}
	}
	addPort(c, ClientPortName, p.Valkey.Port)
	addPort(c, BusPortName, p.Valkey.Port+BusPortOffset)

	if c.LivenessProbe == nil {
		c.LivenessProbe = livenessProbe(p)
	}
	if c.ReadinessProbe == nil {
		c.ReadinessProbe = clusterReadinessProbe(p)
	}
	if c.Lifecycle == nil {
		c.Lifecycle = &corev1.Lifecycle{}
	}
	if c.Lifecycle.PreStop == nil {
		c.Lifecycle.PreStop = handoverHook(p, sts.Spec.Template.Spec.TerminationGracePeriodSeconds)
	}
	if c.StartupProbe == nil && p.StartupProbe.Enabled {
		c.StartupProbe = startupProbe(p)
	}

	if hasClaimTemplate(sts, DataVolume) || HasVolume(&sts.Spec.Template.Spec, DataVolume) {
		// On UPDATE no claim template can be added; without one, validation says
		// what to do instead of the API server refusing a mount of nothing.
		addMount(c, corev1.VolumeMount{Name: DataVolume, MountPath: DataDir})
	}
	addMount(c, corev1.VolumeMount{Name: ConfigVolume, MountPath: ConfigFile, SubPath: ConfigKey, ReadOnly: true})
	addMount(c, corev1.VolumeMount{Name: TmpVolume, MountPath: TmpDir})
	addResourceDefaults(c, p.Valkey.CPURequest, valkeyEphemeral)
	if p.TLSEnabled() {
		addMount(c, tlsMount)
	}
	if p.Auth.Enabled {
		addMount(c, authMount)
	}
}

// The mounts of the TLS and auth Secrets in the valkey container.
var (
	tlsMount  = corev1.VolumeMount{Name: TLSVolume, MountPath: TLSDir, ReadOnly: true}
	authMount = corev1.VolumeMount{Name: AuthVolume, MountPath: AuthDir, ReadOnly: true}
)

// valkeyCommand is the valkey container's command and arguments.
func valkeyCommand(sts *appsv1.StatefulSet, p *config.Policy) (command, args []string) {
	args = []string{ConfigFile, "--cluster-announce-ip", "$(" + PodIPEnv + ")"}
	if p.TLSEnabled() {
		// Redirects name the pod's DNS name, which the certificate covers, so
		// that a cluster client verifying certificates follows MOVED and ASK.
		args = append(args, "--cluster-announce-hostname", podDNSNameExpr(sts, p), "--cluster-preferred-endpoint-type", "hostname")
	}
	return []string{"valkey-server"}, args
}

func livenessProbe(p *config.Policy) *corev1.Probe {
	return execProbe(p, "ping", alivePattern, 10, 6)
}

func startupProbe(p *config.Policy) *corev1.Probe {
	return execProbe(p, "ping", alivePattern, int32(p.StartupProbe.PeriodSeconds), int32(p.StartupProbe.FailureThreshold))
}

// alivePattern is the answer to PING of a server that works: PONG, and LOADING
// and MASTERDOWN, for the startup probe as for liveness. A node loading a large
// dataset answers LOADING for as long as the load lasts, which may be far past
// the startup window; restarting it only starts the load again. Valkey answers
// during a load only from its loading loop, between the chunks it reads, so a
// load that hangs (a stuck disk) answers nothing and is restarted after the
// probe's failures. docs/design.md, "Startup and large datasets".
const alivePattern = "^(PONG|LOADING|MASTERDOWN)"

// execProbe sends command to the local server with valkey-cli and matches the
// reply's lines against pattern. TLS and auth aware: the password is read from the
// mounted Secret file into valkey-cli's environment, never put on a command line.
func execProbe(p *config.Policy, command, pattern string, period, failures int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{
			Exec: &corev1.ExecAction{Command: []string{"sh", "-c", cliCommand(p) + " " + command + " | grep -qE '" + pattern + "'"}},
		},
		TimeoutSeconds:   5,
		PeriodSeconds:    period,
		SuccessThreshold: 1,
		FailureThreshold: failures,
	}
}

// readinessScript is ready when the local server should receive traffic and a
// roll may go on to the next pod: no slot is assigned yet (a cluster not formed,
// so that no probe holds back the pods that must start before it can form), or
// this node's view of the cluster is ok and it is a master, or a replica whose
// link to its master is up with the initial sync done (a roll must not stop the
// next pod while the replica that just restarted has no copy of the data yet).
// It asks the server each time: nothing is cached in a file, so a node that loses
// its cluster (peers at stale addresses after a full restart) turns unready at
// once. @CLI@ is cliCommand.
const readinessScript = `i=$(@CLI@ cluster info && @CLI@ info replication) || exit 1
i=$(echo "$i" | tr -d '\r')
has() { echo "$i" | grep -qx "$1"; }
has cluster_slots_assigned:0 && exit 0
has cluster_state:ok || exit 1
has role:master && exit 0
has master_link_status:up && has master_sync_in_progress:0
`

func clusterReadinessProbe(p *config.Policy) *corev1.Probe {
	script := strings.ReplaceAll(readinessScript, "@CLI@", cliCommand(p))
	return &corev1.Probe{
		ProbeHandler:     corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", script}}},
		TimeoutSeconds:   5,
		PeriodSeconds:    5,
		SuccessThreshold: 1,
		FailureThreshold: 3,
	}
}

// cliCommand is the valkey-cli invocation that reaches the local server.
func cliCommand(p *config.Policy) string {
	auth := ""
	if p.Auth.Enabled {
		auth = fmt.Sprintf(`REDISCLI_AUTH="$(cat %s/%s)" `, AuthDir, PasswordKey)
	}
	return fmt.Sprintf("%svalkey-cli -h 127.0.0.1 -p %d%s", auth, p.Valkey.Port, cliTLSFlags(p))
}

// cliTLSFlags are valkey-cli's TLS and client-certificate flags, after a space;
// empty without TLS.
func cliTLSFlags(p *config.Policy) string {
	if !p.TLSEnabled() {
		return ""
	}
	flags := fmt.Sprintf(" --tls --cacert %s/ca.crt", TLSDir)
	if p.TLS.AuthClients {
		flags += fmt.Sprintf(" --cert %s/tls.crt --key %s/tls.key", TLSDir, TLSDir)
	}
	return flags
}

// metricsContainer is the exporter sidecar. It reaches Valkey inside the pod and,
// with TLS, verifies the server's certificate against the CA and the host of its
// address (the exporter has no separate server name): 127.0.0.1, which the
// companion Certificate of tls.issuer names, or else the pod's own DNS name, which
// a certificate of tls.secretName must name already (the lifecycle controller
// verifies it too). That name resolves to the pod's IP, and the connection stays
// in the pod.
func metricsContainer(sts *appsv1.StatefulSet, p *config.Policy) corev1.Container {
	env := []corev1.EnvVar{{Name: "REDIS_ADDR", Value: fmt.Sprintf("redis://127.0.0.1:%d", p.Valkey.Port)}}
	switch {
	case p.TLS.Issuer != "":
		env[0].Value = fmt.Sprintf("rediss://127.0.0.1:%d", p.Valkey.Port)
	case p.TLSEnabled():
		// Kubernetes expands $(VAR) from the variables defined before it.
		env = append(podNameEnv(), corev1.EnvVar{Name: "REDIS_ADDR", Value: fmt.Sprintf("rediss://%s:%d", podDNSNameExpr(sts, p), p.Valkey.Port)})
	}
	c := corev1.Container{
		Name:  MetricsContainer,
		Image: p.Metrics.Image,
		Env: append(env,
			corev1.EnvVar{Name: "REDIS_EXPORTER_WEB_LISTEN_ADDRESS", Value: fmt.Sprintf(":%d", p.Metrics.Port)},
		),
		Ports: []corev1.ContainerPort{{Name: MetricsPortName, ContainerPort: int32(p.Metrics.Port), Protocol: corev1.ProtocolTCP}},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:              resource.MustParse("10m"),
				corev1.ResourceMemory:           resource.MustParse("32Mi"),
				corev1.ResourceEphemeralStorage: resource.MustParse(metricsEphemeral.request),
			},
			// A CPU limit bounds a runaway exporter; it serves no client.
			Limits: corev1.ResourceList{
				corev1.ResourceCPU:              resource.MustParse("100m"),
				corev1.ResourceMemory:           resource.MustParse("64Mi"),
				corev1.ResourceEphemeralStorage: resource.MustParse(metricsEphemeral.limit),
			},
		},
	}
	if p.Auth.Enabled {
		c.Env = append(c.Env, corev1.EnvVar{
			Name: "REDIS_PASSWORD",
			ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: AuthSecretName(sts, p)},
				Key:                  PasswordKey,
			}},
		})
	}
	if p.TLSEnabled() {
		c.Env = append(c.Env,
			corev1.EnvVar{Name: "REDIS_EXPORTER_TLS_CA_CERT_FILE", Value: TLSDir + "/ca.crt"},
		)
		if p.TLS.AuthClients {
			c.Env = append(c.Env,
				corev1.EnvVar{Name: "REDIS_EXPORTER_TLS_CLIENT_CERT_FILE", Value: TLSDir + "/tls.crt"},
				corev1.EnvVar{Name: "REDIS_EXPORTER_TLS_CLIENT_KEY_FILE", Value: TLSDir + "/tls.key"},
			)
		}
		c.VolumeMounts = []corev1.VolumeMount{tlsMount}
	}
	return c
}

// addVolumes adds the pod volumes the mounts refer to, unless the user has volumes
// of those names.
func addVolumes(sts *appsv1.StatefulSet, p *config.Policy) {
	spec := &sts.Spec.Template.Spec
	add := func(v corev1.Volume) {
		if !HasVolume(spec, v.Name) {
			spec.Volumes = append(spec.Volumes, v)
		}
	}
	add(corev1.Volume{Name: ConfigVolume, VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: ConfigMapName(sts)},
			DefaultMode:          ptr.To(int32(0o444)),
		},
	}})
	add(corev1.Volume{Name: TmpVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(resource.MustParse(TmpSizeLimit))}}})
	if p.TLSEnabled() {
		add(secretVolume(TLSVolume, TLSSecretName(sts, p)))
	}
	if p.Auth.Enabled {
		add(secretVolume(AuthVolume, AuthSecretName(sts, p)))
	}
}

// secretVolume is the pod volume of the TLS or the auth Secret: readable by the
// pod's group (fsGroup) only.
func secretVolume(name, secret string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
		Secret: &corev1.SecretVolumeSource{SecretName: secret, DefaultMode: ptr.To(int32(0o440))},
	}}
}

func hasEnv(c *corev1.Container, name string) bool {
	for _, e := range c.Env {
		if e.Name == name {
			return true
		}
	}
	return false
}

// addPort adds a TCP container port unless the container already exposes that
// number or that name.
func addPort(c *corev1.Container, name string, port int) {
	for _, cp := range c.Ports {
		if cp.ContainerPort == int32(port) || cp.Name == name {
			return
		}
	}
	c.Ports = append(c.Ports, corev1.ContainerPort{Name: name, ContainerPort: int32(port), Protocol: corev1.ProtocolTCP})
}

// addMount adds a volume mount unless something is already mounted at that path or
// that volume is already mounted.
func addMount(c *corev1.Container, m corev1.VolumeMount) {
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == m.MountPath || vm.Name == m.Name {
			return
		}
	}
	c.VolumeMounts = append(c.VolumeMounts, m)
}

// podNameEnv are the pod's name and namespace, which podDNSNameExpr refers to.
func podNameEnv() []corev1.EnvVar {
	return []corev1.EnvVar{fieldEnv("POD_NAME", "metadata.name"), fieldEnv("POD_NAMESPACE", "metadata.namespace")}
}

// podDNSNameExpr is the pod's own DNS name under the governing headless Service,
// in terms of the variables of podNameEnv, for Kubernetes to expand.
func podDNSNameExpr(sts *appsv1.StatefulSet, p *config.Policy) string {
	return PodDNSName(sts, p, "$(POD_NAME)", "$(POD_NAMESPACE)")
}

// fieldEnv is a variable of the downward API: a field of the pod (apiVersion v1,
// as the API server stores it).
func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}}
}

// Resources a hardened pod gets when its template says nothing of them. A CPU
// request (valkey.cpuRequest) lets the scheduler place Valkey's main thread;
// there is no CPU limit, whose throttling would stall every client of the node
// (docs/design.md). The ephemeral storage bounds are the containers' logs (the
// kubelet keeps up to 50 MiB of a container's logs by default) and the /tmp
// emptyDir, whose size limit is TmpSizeLimit.
const (
	// TmpSizeLimit bounds the /tmp emptyDir (nothing of Valkey's data is there).
	TmpSizeLimit = "64Mi"
)

type ephemeralStorage struct{ request, limit string }

var (
	valkeyEphemeral  = ephemeralStorage{request: "128Mi", limit: "1Gi"}
	metricsEphemeral = ephemeralStorage{request: "16Mi", limit: "128Mi"}
)

// addResourceDefaults fills a CPU request (none when cpuRequest is empty) and
// ephemeral-storage bounds the user's container does not set; a limit alone counts as set (Kubernetes then requests
// the limit), so no default can exceed a limit the user chose.
func addResourceDefaults(c *corev1.Container, cpuRequest string, eph ephemeralStorage) {
	set := func(name corev1.ResourceName) bool {
		_, req := c.Resources.Requests[name]
		_, lim := c.Resources.Limits[name]
		return req || lim
	}
	if cpuRequest != "" && !set(corev1.ResourceCPU) {
		if c.Resources.Requests == nil {
			c.Resources.Requests = corev1.ResourceList{}
		}
		c.Resources.Requests[corev1.ResourceCPU] = resource.MustParse(cpuRequest)
	}
	if !set(corev1.ResourceEphemeralStorage) {
		if c.Resources.Requests == nil {
			c.Resources.Requests = corev1.ResourceList{}
		}
		if c.Resources.Limits == nil {
			c.Resources.Limits = corev1.ResourceList{}
		}
		c.Resources.Requests[corev1.ResourceEphemeralStorage] = resource.MustParse(eph.request)
		c.Resources.Limits[corev1.ResourceEphemeralStorage] = resource.MustParse(eph.limit)
	}
}
