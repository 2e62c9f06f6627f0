// Package valkeyharness runs the pods of a hardened Valkey cluster StatefulSet as
// local valkey-server processes, for tests. Each pod runs exactly as the hardened
// container does: the valkey.conf defaults.ValkeyConf renders, the command and
// arguments defaults.Harden sets (valkey-server /etc/valkey/valkey.conf
// --cluster-announce-ip $(POD_IP)), the auth files defaults.AuthSecret renders.
// Only what a shared host forces is changed: every pod has a directory of its own
// standing in for its volumes (/data, /etc/valkey/auth, /etc/valkey/tls), and
// binds its own loopback address 127.0.x.y, its pod IP.
//
// A pod's data directory survives Restart, which stops every pod and starts it
// again on a new address: the full restart with new pod IPs of a Kubernetes
// cluster. Every wait is bounded; Close kills whatever still runs.
//
// Kubelet (kubelet.go) runs the pods of a test API server the same way, from the
// pods, ConfigMaps and Secrets there, and reports their IPs and readiness back.
package valkeyharness

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valkey-io/valkey-go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// Port is the client port every pod listens on (the policy's default); the bus
// port is Port + 10000.
const Port = 6379

// Timeouts of the harness's own waits.
const (
	startTimeout = 30 * time.Second
	stopTimeout  = 30 * time.Second
	pollInterval = 50 * time.Millisecond
)

// Options say what cluster to run.
type Options struct {
	// Pods is the number of pods (valkey-server processes).
	Pods int
	// Dir holds one directory per pod; a test's t.TempDir().
	Dir string
	// Auth turns auth.enabled on: a random password in the pods' auth files.
	Auth bool
	// TLS turns TLS on (as tls.secretName does), with a CA made for the run and a
	// certificate per pod for its address. TLSAuthClients sets tls.authClients.
	TLS            bool
	TLSAuthClients bool
	// Policy, when set, edits the policy (built-in defaults) before rendering.
	Policy func(*config.Policy)
	// ExtraArgs are appended to every pod's command, for a fault made on purpose
	// (--key-load-delay slows a load).
	ExtraArgs []string
}

// Cluster is the running pods of one StatefulSet.
type Cluster struct {
	// Password is the auth Secret's password; empty without auth.
	Password string
	// TLS holds the CA and a client certificate; nil without TLS.
	TLS  *TLSFiles
	Pods []*Pod

	opts    Options
	policy  config.Policy
	conf    string
	command []string
	auth    map[string][]byte
	closed  atomic.Bool
}

// Pod is one valkey-server process.
type Pod struct {
	Name, Namespace string
	// Dir stands in for the pod's volumes: data/, auth/, tls/, and valkey.conf.
	Dir string
	// IP is the pod IP, a loopback address; Addr is IP:Port.
	IP   string
	Addr string

	// conf is valkey.conf as rendered, with container paths; command the
	// container's command and arguments; files the other mounted files, by
	// container path, guarded by filesMu. start writes them into Dir.
	conf    string
	command []string
	filesMu sync.Mutex
	files   map[string][]byte
	// stopped tells a pod whose owner has closed not to start again.
	stopped *atomic.Bool

	c    *Cluster
	cmd  *exec.Cmd
	done chan struct{}
}

// Start writes each pod's files and starts every pod on a free loopback address,
// then waits until each answers PING.
func Start(opts Options) (*Cluster, error) {
	if opts.Pods < 1 || opts.Dir == "" {
		return nil, errors.New("valkeyharness: Pods and Dir must be set")
	}
	if _, err := exec.LookPath("valkey-server"); err != nil {
		return nil, fmt.Errorf("valkeyharness: valkey-server is not installed: %w", err)
	}
	policy := config.Default()
	policy.Auth.Enabled = opts.Auth
	if opts.TLS {
		policy.TLS.SecretName = "cache-tls"
		policy.TLS.AuthClients = opts.TLSAuthClients
	}
	if opts.Policy != nil {
		opts.Policy(&policy)
	}
	sts := minimalStatefulSet()
	hardened := sts.DeepCopy()
	defaults.Harden(hardened, nil, &policy)
	i := defaults.ValkeyContainerIndex(&hardened.Spec.Template.Spec)
	if i < 0 {
		return nil, errors.New("valkeyharness: the hardened StatefulSet has no valkey container")
	}
	vc := hardened.Spec.Template.Spec.Containers[i]
	c := &Cluster{
		opts:    opts,
		policy:  policy,
		conf:    defaults.ValkeyConf(sts, &policy),
		command: slices.Concat(vc.Command, vc.Args, opts.ExtraArgs),
	}
	if opts.Auth {
		c.Password = randomPassword()
		c.auth = defaults.AuthSecret(sts, &policy, c.Password).Data
	}
	if opts.TLS {
		files, err := newTLSFiles(filepath.Join(opts.Dir, "client"))
		if err != nil {
			return nil, err
		}
		c.TLS = files
	}
	for i := range opts.Pods {
		name := fmt.Sprintf("%s-%d", sts.Name, i)
		c.Pods = append(c.Pods, &Pod{Name: name, Namespace: sts.Namespace, Dir: filepath.Join(opts.Dir, name), conf: c.conf, command: c.command, stopped: &c.closed, c: c})
	}
	if err := c.startAll(nil); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// debianValkeyImage names what this harness really runs: Debian's valkey-server
// 8.0.1 of this machine (named as on the real node), not the example's image.
const debianValkeyImage = "localhost/valkey-webhook-node/valkey-debian:8.0.1"

// minimalStatefulSet is examples/minimal-statefulset.yaml, with debianValkeyImage.
func minimalStatefulSet() *appsv1.StatefulSet {
	replicas := int32(6)
	labels := map[string]string{"app": "cache"}
	return &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: metav1.ObjectMeta{Name: "cache", Namespace: "team-a", Labels: map[string]string{defaults.ClusterLabel: defaults.ClusterLabelEnabled}},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:  defaults.ValkeyContainer,
					Image: debianValkeyImage,
					Resources: corev1.ResourceRequirements{
						Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
					},
				}}},
			},
		},
	}
}

func randomPassword() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Addresses are the pods' current host:port addresses, in pod order.
func (c *Cluster) Addresses() []string {
	out := make([]string, len(c.Pods))
	for i, p := range c.Pods {
		out[i] = p.Addr
	}
	return out
}

// ClientTLS is the TLS configuration a client of the cluster uses: the CA, and
// the client certificate. Nil without TLS.
func (c *Cluster) ClientTLS() *tls.Config {
	if c.TLS == nil {
		return nil
	}
	return c.TLS.ClientConfig()
}

// ClientOption is a valkey-go option for the given addresses with the cluster's
// password and TLS.
func (c *Cluster) ClientOption(addrs ...string) valkey.ClientOption {
	return valkey.ClientOption{
		InitAddress:  addrs,
		Password:     c.Password,
		TLSConfig:    c.ClientTLS(),
		DisableCache: true,
		Dialer:       net.Dialer{Timeout: 5 * time.Second},
		DialCtxFn: HostDialer(func(pod string) (string, bool) {
			for _, p := range c.Pods {
				if p.Name == pod {
					return p.IP, true
				}
			}
			return "", false
		}),
	}
}

// NodeClient connects to one pod alone.
func (c *Cluster) NodeClient(addr string) (valkey.Client, error) {
	o := c.ClientOption(addr)
	o.ForceSingleClient = true
	cl, err := valkey.NewClient(o)
	if err != nil && cl != nil {
		cl.Close()
	}
	return cl, err
}

// Restart stops every pod, then starts each again, with its data directory, on a
// loopback address none of them had: the full restart with new pod IPs.
func (c *Cluster) Restart() error {
	old := map[string]bool{}
	for _, p := range c.Pods {
		old[p.IP] = true
	}
	if err := c.StopAll(); err != nil {
		return err
	}
	return c.startAll(old)
}

// RestartInPlace stops the pod (SIGTERM, as Stop) and starts its process again
// on the same address with its data directory, as a container restart does, and
// returns without waiting for it to answer: a caller probes it while it loads.
func (p *Pod) RestartInPlace() error {
	if err := p.Stop(); err != nil {
		return err
	}
	claim(p.IP)
	return p.start()
}

// StopAll stops every pod as Kubernetes does (SIGTERM, then SIGKILL after a
// bounded wait).
func (c *Cluster) StopAll() error {
	errs := make([]error, len(c.Pods))
	var wg sync.WaitGroup
	for i, p := range c.Pods {
		wg.Go(func() { errs[i] = p.Stop() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close kills every pod that still runs and frees the addresses. Safe to call
// more than once.
func (c *Cluster) Close() {
	c.closed.Store(true)
	for _, p := range c.Pods {
		p.kill()
	}
}

// Logs returns the end of every pod's log, for a failing test's output.
func (c *Cluster) Logs() string { return logs(c.Pods) }

func logs(pods []*Pod) string {
	var b strings.Builder
	for _, p := range pods {
		b.WriteString(p.Log())
	}
	return b.String()
}

// Log returns the end of the pod's log.
func (p *Pod) Log() string {
	data, _ := os.ReadFile(filepath.Join(p.Dir, "valkey.log"))
	if len(data) > 16000 {
		data = data[len(data)-16000:]
	}
	return fmt.Sprintf("==> %s (%s) <==\n%s\n", p.Name, p.Addr, data)
}

// startAll picks a free loopback address for every pod, outside avoid, writes its
// files and starts it. Address choice and start are serialized across test
// processes by a lock file, so that two test binaries never pick the same
// address.
func (c *Cluster) startAll(avoid map[string]bool) error {
	unlock, next, err := lockAddresses()
	if err != nil {
		return err
	}
	defer unlock()
	for _, p := range c.Pods {
		ip, err := next.free(avoid)
		if err != nil {
			return err
		}
		p.IP, p.Addr = ip, net.JoinHostPort(ip, strconv.Itoa(Port))
		if avoid == nil {
			avoid = map[string]bool{}
		}
		avoid[ip] = true
		if err := c.issueFiles(p); err != nil {
			return err
		}
		if err := p.start(); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	errs := make([]error, len(c.Pods))
	var wg sync.WaitGroup
	for i, p := range c.Pods {
		wg.Go(func() { errs[i] = p.waitReady(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Loopback addresses are handed out in turn from 127.0.0.10 up to 127.0.255.250
// (the last octet 10 to 250), the position kept in a file beside the lock, by
// every process that uses this package. An address is not handed out again
// until the turn comes round, some 60,000 addresses later: nodes that were
// restarted on new addresses keep calling their old ones (as after a full
// restart of a Kubernetes cluster), and must not find another test's nodes
// there.
const (
	firstHost, lastHost = 10, 250
	hostsPerNet         = lastHost - firstHost + 1
	addressCount        = 256 * hostsPerNet
)

// addressTurn is the position of the next address to hand out.
type addressTurn struct{ file *os.File }

func addressOf(i int) string {
	return fmt.Sprintf("127.0.%d.%d", i/hostsPerNet, firstHost+i%hostsPerNet)
}

// lockAddresses takes an exclusive lock shared by every process on the machine
// that uses this package, and returns the turn it guards.
func lockAddresses() (unlock func(), next *addressTurn, err error) {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "valkeyharness.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("valkeyharness: lock file: %w", err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); _ = f.Close() }, &addressTurn{file: f}, nil
		}
		if time.Now().After(deadline) {
			_ = f.Close()
			return nil, nil, fmt.Errorf("valkeyharness: waiting for the address lock: %w", err)
		}
		time.Sleep(pollInterval)
	}
}

// free hands out the next loopback address on which both the client and the bus
// port are free, outside avoid, and moves the turn past it.
func (t *addressTurn) free(avoid map[string]bool) (string, error) {
	buf := make([]byte, 32)
	n, _ := t.file.ReadAt(buf, 0)
	pos, _ := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	for range addressCount {
		pos = (pos + 1) % addressCount
		ip := addressOf(pos)
		if avoid[ip] || inUse(ip) {
			continue
		}
		if bindable(ip, Port) && bindable(ip, Port+defaults.BusPortOffset) {
			claim(ip)
			if err := t.file.Truncate(0); err != nil {
				return "", err
			}
			if _, err := t.file.WriteAt([]byte(strconv.Itoa(pos)), 0); err != nil {
				return "", err
			}
			return ip, nil
		}
	}
	return "", errors.New("valkeyharness: no free loopback address in 127.0.0.10 to 127.0.255.250 (ports 6379 and 16379)")
}

var (
	claimedMu sync.Mutex
	claimed   = map[string]bool{}
)

func inUse(ip string) bool {
	claimedMu.Lock()
	defer claimedMu.Unlock()
	return claimed[ip]
}

func claim(ip string) {
	claimedMu.Lock()
	defer claimedMu.Unlock()
	claimed[ip] = true
}

func release(ip string) {
	claimedMu.Lock()
	defer claimedMu.Unlock()
	delete(claimed, ip)
}

func bindable(ip string, port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// issueFiles sets the pod's auth files and, with TLS, a certificate for its
// current address.
func (c *Cluster) issueFiles(p *Pod) error {
	files := map[string][]byte{}
	for name, data := range c.auth {
		files[defaults.AuthDir+"/"+name] = data
	}
	if c.TLS != nil {
		// The pod's DNS name too, which the nodes announce with TLS.
		dns := fmt.Sprintf("%s.%s.%s.svc.%s", p.Name, defaults.HeadlessServiceName(minimalStatefulSet()), p.Namespace, c.policy.TLS.ClusterDomain)
		tlsFiles, err := c.TLS.serverFiles(p.Name, p.IP, dns)
		if err != nil {
			return err
		}
		for name, data := range tlsFiles {
			files[defaults.TLSDir+"/"+name] = data
		}
	}
	p.filesMu.Lock()
	p.files = files
	p.filesMu.Unlock()
	return nil
}

// writeFiles writes valkey.conf with the pod's paths and address, and every
// mounted file at its place in the pod's directory. The data directory is
// created once and kept.
func (p *Pod) writeFiles() error {
	for _, d := range []string{"data", "auth", "tls"} {
		if err := os.MkdirAll(filepath.Join(p.Dir, d), 0o700); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(p.Dir, "valkey.conf"), []byte(p.podConf()), 0o600); err != nil {
		return err
	}
	p.filesMu.Lock()
	defer p.filesMu.Unlock()
	for path, data := range p.files {
		local, err := p.localPath(path)
		if err != nil {
			return err
		}
		if err := os.WriteFile(local, data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// localPath is where a container path is in the pod's directory.
func (p *Pod) localPath(path string) (string, error) {
	local := p.rewritePaths(path)
	if local == path {
		return "", fmt.Errorf("valkeyharness: %s: no place in the pod directory for %s", p.Name, path)
	}
	return local, nil
}

// UpdateFiles replaces mounted files in place, by container path, as the
// kubelet updates a Secret volume mounted without subPath: the process runs on
// untouched, and a later restart of the container finds the new files. Each
// file is written beside its place and renamed over it, all of them after every
// new file is written; the kubelet swaps a whole volume at once, so only here
// could a reader find a new tls.crt beside the old tls.key, for the
// microseconds between two renames (Valkey then refuses to load the pair and
// keeps what it had).
func (p *Pod) UpdateFiles(files map[string][]byte) error {
	p.filesMu.Lock()
	defer p.filesMu.Unlock()
	staged := map[string]string{}
	for path, data := range files {
		local, err := p.localPath(path)
		if err != nil {
			return err
		}
		tmp := local + ".new"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			return err
		}
		staged[tmp] = local
	}
	for tmp, local := range staged {
		if err := os.Rename(tmp, local); err != nil {
			return err
		}
	}
	for path, data := range files {
		p.files[path] = data
	}
	return nil
}

// podConf is the rendered valkey.conf with the container paths moved into the
// pod's directory and bind set to the pod's address.
func (p *Pod) podConf() string {
	var out []string
	for _, line := range strings.Split(p.conf, "\n") {
		if strings.HasPrefix(line, "bind ") {
			line = "bind " + p.IP
		}
		line = p.rewritePaths(line)
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

// rewritePaths moves every container path to the pod's directory.
func (p *Pod) rewritePaths(s string) string {
	for _, m := range []struct{ from, to string }{
		{defaults.ConfigFile, filepath.Join(p.Dir, "valkey.conf")},
		{defaults.AuthDir, filepath.Join(p.Dir, "auth")},
		{defaults.TLSDir, filepath.Join(p.Dir, "tls")},
		{defaults.DataDir, filepath.Join(p.Dir, "data")},
	} {
		s = replacePath(s, m.from, m.to)
	}
	return s
}

// replacePath replaces the path from, as a whole path or a prefix ending at "/".
func replacePath(s, from, to string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, from)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		end := i + len(from)
		whole := (i == 0 || s[i-1] == ' ' || s[i-1] == '"') && (end == len(s) || strings.ContainsRune("/ \"", rune(s[end])))
		b.WriteString(s[:i])
		if whole {
			b.WriteString(to)
		} else {
			b.WriteString(from)
		}
		s = s[end:]
	}
}

// args is the hardened container's command with the pod's paths and the
// variables it refers to: $(POD_IP), and with TLS $(POD_NAME) and $(POD_NAMESPACE).
func (p *Pod) args() []string {
	vars := strings.NewReplacer("$("+defaults.PodIPEnv+")", p.IP, "$(POD_NAME)", p.Name, "$(POD_NAMESPACE)", p.Namespace)
	out := make([]string, len(p.command))
	for i, a := range p.command {
		out[i] = p.rewritePaths(vars.Replace(a))
	}
	return out
}

// start writes the pod's files and starts its process.
func (p *Pod) start() error {
	if p.stopped.Load() {
		return errors.New("valkeyharness: closed")
	}
	if err := p.writeFiles(); err != nil {
		return err
	}
	log, err := os.OpenFile(filepath.Join(p.Dir, "valkey.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	args := p.args()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = p.Dir
	cmd.Stdout, cmd.Stderr = log, log
	// The pods die with the test process, even when it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return fmt.Errorf("valkeyharness: starting %s: %w", p.Name, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	done := p.done
	go func() {
		_ = cmd.Wait()
		_ = log.Close()
		close(done)
	}()
	return nil
}

// Running reports whether the pod's process runs.
func (p *Pod) Running() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// waitReady waits until the pod answers PING with PONG.
func (p *Pod) waitReady(ctx context.Context) error {
	var last error
	for {
		if !p.Running() {
			return fmt.Errorf("valkeyharness: %s exited at start; its log:\n%s", p.Name, p.Log())
		}
		last = p.ping(ctx)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("valkeyharness: %s at %s did not answer PING within %s: %w", p.Name, p.Addr, startTimeout, last)
		case <-time.After(pollInterval):
		}
	}
}

func (p *Pod) ping(ctx context.Context) error {
	cl, err := p.c.NodeClient(p.Addr)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return cl.Do(ctx, cl.B().Ping().Build()).Error()
}

// Stop stops the pod: SIGTERM, which makes valkey-server save and exit, then
// SIGKILL if it has not exited within a bounded wait.
//
// NOTE: valkey-server drops a SIGTERM that arrives while a replica writes its
// initial AOF after a full sync ("Writing initial AOF, can't exit"); in
// Kubernetes such a pod is killed at the end of its grace period. Stop sends
// SIGTERM again every second, so that the pod saves and exits as soon as it can,
// instead of being killed.
func (p *Pod) Stop() error {
	if !p.Running() {
		return nil
	}
	deadline := time.After(stopTimeout)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			release(p.IP)
			return nil
		case <-deadline:
			p.kill()
			return fmt.Errorf("valkeyharness: %s did not stop within %s of SIGTERM; killed", p.Name, stopTimeout)
		case <-tick.C:
		}
	}
}

func (p *Pod) kill() {
	if p.Running() {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	if p.IP != "" {
		release(p.IP)
	}
}
