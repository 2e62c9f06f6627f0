package valkeyharness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// Kubelet plays the kubelet for the pods of one namespace of a test API server
// (envtest, where kube-controller-manager's StatefulSet controller creates the
// pods): it binds each new pod to one of its Kubernetes nodes, runs the pod's
// valkey container as a local valkey-server process on a new loopback address
// (its pod IP), and reports the pod Running with that IP. It runs the container's
// readiness probe command every ProbeInterval and reports the Ready condition.
// The container's command, arguments and $(POD_IP), and the files of its
// ConfigMap and Secret volumes, come from the pod and the objects in the API
// server, as a kubelet would mount them; the data directory is kept per pod name
// (the PersistentVolumeClaim), across pod incarnations.
//
// A pod being deleted is stopped (SIGTERM, as at the end of a pod's life) and
// then removed from the API server. A container that exits is started again in
// place, on the same IP, as a kubelet restarts it. Only the valkey container
// runs: sidecars (the metrics exporter) are not started and play no part in
// readiness.
type Kubelet struct {
	client    client.Client
	namespace string
	dir       string
	nodes     []string

	mu      sync.Mutex
	workers map[types.UID]*podWorker
	closed  atomic.Bool
	// holding keeps new pods from starting, until Release.
	holding atomic.Bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// ProbeInterval is how often the kubelet runs each pod's readiness probe.
const ProbeInterval = 500 * time.Millisecond

// kubeletTick is how often the kubelet lists the namespace's pods.
const kubeletTick = 100 * time.Millisecond

// StartKubelet creates a Kubernetes node for each zone (named kubelet-<zone>,
// labeled topology.kubernetes.io/zone) when it does not exist yet, and starts
// running the namespace's pods, bound round-robin to those nodes. Close stops it
// and every pod process.
func StartKubelet(ctx context.Context, c client.Client, namespace, dir string, zones ...string) (*Kubelet, error) {
	if len(zones) == 0 {
		return nil, errors.New("valkeyharness: give the kubelet at least one zone")
	}
	if _, err := exec.LookPath("valkey-server"); err != nil {
		return nil, fmt.Errorf("valkeyharness: valkey-server is not installed: %w", err)
	}
	k := &Kubelet{client: c, namespace: namespace, dir: dir, workers: map[types.UID]*podWorker{}}
	for _, zone := range zones {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name:   "kubelet-" + zone,
			Labels: map[string]string{corev1.LabelTopologyZone: zone},
		}}
		if err := c.Create(ctx, node); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("valkeyharness: creating node %s: %w", node.Name, err)
		}
		k.nodes = append(k.nodes, node.Name)
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	k.cancel = cancel
	k.wg.Go(func() { k.loop(loopCtx) })
	return k, nil
}

// Close stops the kubelet and kills every pod process it runs.
func (k *Kubelet) Close() {
	k.closed.Store(true)
	k.cancel()
	k.wg.Wait()
}

// Kill kills the named pod's valkey-server with SIGKILL, as when its node dies,
// and starts it again in place (same IP and data) only after down. It returns
// once the process is dead.
func (k *Kubelet) Kill(ctx context.Context, name string, down time.Duration) error {
	k.mu.Lock()
	var w *podWorker
	for _, cand := range k.workers {
		if cand.name == name && !cand.gone.Load() {
			w = cand
		}
	}
	k.mu.Unlock()
	if w == nil {
		return fmt.Errorf("valkeyharness: no pod %s runs", name)
	}
	req := killRequest{down: down, done: make(chan error, 1)}
	select {
	case w.kill <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

type killRequest struct {
	down time.Duration
	done chan error
}

// SyncVolumes plays the kubelet's update of mounted volumes: it reads the
// ConfigMaps and Secrets of the named running pods (every running pod when none
// is named) again and writes what changed into their files in place, without
// a restart (Pod.UpdateFiles). As with a real kubelet, a file mounted with
// subPath (valkey.conf) is never updated. The real kubelet does this by itself,
// up to about a minute after the object changed; here the test says when.
func (k *Kubelet) SyncVolumes(ctx context.Context, names ...string) error {
	k.mu.Lock()
	var workers []*podWorker
	for _, w := range k.workers {
		if !w.gone.Load() && (len(names) == 0 || slices.Contains(names, w.name)) {
			workers = append(workers, w)
		}
	}
	k.mu.Unlock()
	var errs []error
	synced := map[string]bool{}
	for _, w := range workers {
		pod, p := w.latest.Load(), w.pod.Load()
		if pod == nil || p == nil || !p.Running() {
			continue
		}
		i := defaults.ValkeyContainerIndex(&pod.Spec)
		if i < 0 {
			continue
		}
		c := pod.Spec.Containers[i]
		files, err := k.mountedFiles(ctx, pod, c)
		if err == nil && files == nil {
			err = errors.New("a ConfigMap or Secret it mounts does not exist")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("valkeyharness: reading the volumes of %s: %w", pod.Name, err))
			continue
		}
		for _, m := range c.VolumeMounts {
			if m.SubPath != "" {
				delete(files, m.MountPath)
			}
		}
		if err := p.UpdateFiles(files); err != nil {
			errs = append(errs, fmt.Errorf("valkeyharness: updating the files of %s: %w", pod.Name, err))
			continue
		}
		synced[pod.Name] = true
	}
	for _, name := range names {
		if !synced[name] && len(errs) == 0 {
			errs = append(errs, fmt.Errorf("valkeyharness: no pod %s runs", name))
		}
	}
	return errors.Join(errs...)
}

// Hold keeps pods that are not running yet from starting, until Release: with
// the pods deleted meanwhile, every old process is gone before the first new one
// starts, as after a whole Kubernetes cluster went down (a full restart). Without
// it, the pods of a StatefulSet restart overlapping, and the first new ones find
// the old ones still up and learn their addresses by gossip.
func (k *Kubelet) Hold() { k.holding.Store(true) }

// Release lets the held pods start.
func (k *Kubelet) Release() { k.holding.Store(false) }

// Logs returns the end of every pod's log, for a failing test's output.
func (k *Kubelet) Logs() string {
	k.mu.Lock()
	var pods []*Pod
	for _, w := range k.workers {
		if p := w.pod.Load(); p != nil {
			pods = append(pods, p)
		}
	}
	k.mu.Unlock()
	slices.SortFunc(pods, func(a, b *Pod) int { return strings.Compare(a.Name, b.Name) })
	return logs(pods)
}

// loop hands each pod to its worker, and starts a worker for each new pod.
func (k *Kubelet) loop(ctx context.Context) {
	defer func() {
		k.mu.Lock()
		for _, w := range k.workers {
			w.cancel()
		}
		k.mu.Unlock()
	}()
	tick := time.NewTicker(kubeletTick)
	defer tick.Stop()
	bound := 0
	for {
		pods := &corev1.PodList{}
		if err := k.client.List(ctx, pods, client.InNamespace(k.namespace)); err == nil {
			seen := map[types.UID]bool{}
			k.mu.Lock()
			for i := range pods.Items {
				pod := pods.Items[i].DeepCopy()
				seen[pod.UID] = true
				w, ok := k.workers[pod.UID]
				if !ok {
					if !pod.DeletionTimestamp.IsZero() {
						continue
					}
					w = k.newWorker(ctx, pod, k.nodes[bound%len(k.nodes)])
					bound++
				}
				w.latest.Store(pod)
			}
			for uid, w := range k.workers {
				if !seen[uid] {
					w.latest.Store(nil)
					w.gone.Store(true)
				}
				if w.finished.Load() {
					delete(k.workers, uid)
				}
			}
			k.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// podWorker runs one pod incarnation (one UID).
type podWorker struct {
	k    *Kubelet
	name string
	uid  types.UID
	node string

	latest   atomic.Pointer[corev1.Pod]
	pod      atomic.Pointer[Pod]
	gone     atomic.Bool
	finished atomic.Bool
	kill     chan killRequest
	cancel   context.CancelFunc
}

func (k *Kubelet) newWorker(parent context.Context, pod *corev1.Pod, node string) *podWorker {
	ctx, cancel := context.WithCancel(parent)
	w := &podWorker{k: k, name: pod.Name, uid: pod.UID, node: node, kill: make(chan killRequest), cancel: cancel}
	w.latest.Store(pod)
	k.workers[pod.UID] = w
	k.wg.Go(func() {
		defer w.finished.Store(true)
		w.run(ctx)
	})
	return w
}

// run takes the pod from Pending to Running, keeps its Ready condition, restarts
// its container when it exits, and stops it when the pod is deleted.
func (w *podWorker) run(ctx context.Context) {
	defer func() {
		if p := w.pod.Load(); p != nil {
			p.kill()
		}
	}()
	tick := time.NewTicker(kubeletTick)
	defer tick.Stop()
	var (
		probe       []string
		ready       bool
		restarts    int32
		downUntil   time.Time
		lastProbe   time.Time
		statusDirty = true
	)
	for {
		pod := w.latest.Load()
		switch {
		case pod == nil:
			return // removed from the API server
		case !pod.DeletionTimestamp.IsZero():
			w.terminate(ctx, pod)
			return
		}
		switch p := w.pod.Load(); {
		case p == nil && w.k.holding.Load():
			// Held: stays Pending until Release.
		case p == nil:
			started, cmd, err := w.startPod(ctx, pod)
			if err == nil && started != nil {
				w.pod.Store(started)
				probe = cmd
				statusDirty = true
			}
		case !p.Running() && !time.Now().Before(downUntil):
			if err := p.start(); err == nil {
				restarts++
				ready, statusDirty = false, true
			}
		}
		if p := w.pod.Load(); p != nil && time.Since(lastProbe) >= ProbeInterval {
			lastProbe = time.Now()
			now := p.Running() && runProbe(ctx, p, probe)
			if now != ready {
				ready, statusDirty = now, true
			}
		}
		if p := w.pod.Load(); p != nil && statusDirty {
			if err := w.report(ctx, pod, p, ready, restarts); err == nil {
				statusDirty = false
			}
		}
		select {
		case <-ctx.Done():
			return
		case req := <-w.kill:
			p := w.pod.Load()
			if p == nil || !p.Running() {
				req.done <- fmt.Errorf("valkeyharness: pod %s does not run", w.name)
				continue
			}
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
			downUntil = time.Now().Add(req.down)
			req.done <- nil
		case <-tick.C:
		}
	}
}

// startPod binds the pod, reads its volumes and starts its valkey container.
// It returns nil while a volume's ConfigMap or Secret does not exist yet (the
// pod stays Pending, as in ContainerCreating).
func (w *podWorker) startPod(ctx context.Context, pod *corev1.Pod) (*Pod, []string, error) {
	k := w.k
	if pod.Spec.NodeName == "" {
		binding := &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace},
			Target:     corev1.ObjectReference{Kind: "Node", Name: w.node},
		}
		if err := k.client.SubResource("binding").Create(ctx, pod, binding); err != nil && !apierrors.IsConflict(err) {
			return nil, nil, err
		}
	}
	i := defaults.ValkeyContainerIndex(&pod.Spec)
	if i < 0 {
		return nil, nil, fmt.Errorf("valkeyharness: pod %s has no valkey container", pod.Name)
	}
	c := pod.Spec.Containers[i]
	files, err := k.mountedFiles(ctx, pod, c)
	if err != nil || files == nil {
		return nil, nil, err
	}
	p := &Pod{
		Name:      pod.Name,
		Namespace: pod.Namespace,
		Dir:       filepath.Join(k.dir, pod.Name),
		conf:      string(files[defaults.ConfigFile]),
		command:   append(append([]string{}, c.Command...), c.Args...),
		files:     files,
		stopped:   &k.closed,
	}
	delete(files, defaults.ConfigFile)
	unlock, next, err := lockAddresses()
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	ip, err := next.free(nil)
	if err != nil {
		return nil, nil, err
	}
	p.IP, p.Addr = ip, net.JoinHostPort(ip, strconv.Itoa(Port))
	if err := p.start(); err != nil {
		release(ip)
		return nil, nil, err
	}
	var probe []string
	if c.ReadinessProbe != nil && c.ReadinessProbe.Exec != nil {
		probe = c.ReadinessProbe.Exec.Command
	}
	return p, probe, nil
}

// mountedFiles reads the files of the container's ConfigMap and Secret volume
// mounts, by container path. It returns nil, nil while an object is missing.
func (k *Kubelet) mountedFiles(ctx context.Context, pod *corev1.Pod, c corev1.Container) (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, m := range c.VolumeMounts {
		var data map[string][]byte
		var items []corev1.KeyToPath
		for _, v := range pod.Spec.Volumes {
			if v.Name != m.Name {
				continue
			}
			switch {
			case v.ConfigMap != nil:
				cm := &corev1.ConfigMap{}
				if err := k.client.Get(ctx, types.NamespacedName{Namespace: pod.Namespace, Name: v.ConfigMap.Name}, cm); err != nil {
					return nil, client.IgnoreNotFound(err)
				}
				data = map[string][]byte{}
				for key, value := range cm.Data {
					data[key] = []byte(value)
				}
				items = v.ConfigMap.Items
			case v.Secret != nil:
				s := &corev1.Secret{}
				if err := k.client.Get(ctx, types.NamespacedName{Namespace: pod.Namespace, Name: v.Secret.SecretName}, s); err != nil {
					return nil, client.IgnoreNotFound(err)
				}
				data, items = s.Data, v.Secret.Items
			}
		}
		if data == nil {
			continue // emptyDir or claim: a directory of the pod
		}
		paths := map[string]string{}
		for key := range data {
			paths[key] = key
		}
		if len(items) > 0 {
			paths = map[string]string{}
			for _, it := range items {
				paths[it.Key] = it.Path
			}
		}
		for key, path := range paths {
			switch {
			case m.SubPath == "":
				files[m.MountPath+"/"+path] = data[key]
			case m.SubPath == path:
				files[m.MountPath] = data[key]
			}
		}
	}
	if files[defaults.ConfigFile] == nil {
		return nil, fmt.Errorf("valkeyharness: pod %s mounts no %s", pod.Name, defaults.ConfigFile)
	}
	return files, nil
}

// runProbe runs the readiness probe command with the pod's paths and address.
// No probe: ready while the process runs.
func runProbe(ctx context.Context, p *Pod, command []string) bool {
	if len(command) == 0 {
		return true
	}
	args := make([]string, len(command))
	for i, a := range command {
		a = strings.ReplaceAll(a, "-h 127.0.0.1", "-h "+p.IP)
		args[i] = p.rewritePaths(a)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, args[0], args[1:]...).Run() == nil
}

// report writes the pod's status: Running on its IP, with the Ready condition.
func (w *podWorker) report(ctx context.Context, pod *corev1.Pod, p *Pod, ready bool, restarts int32) error {
	status := func(ok bool) corev1.ConditionStatus {
		if ok {
			return corev1.ConditionTrue
		}
		return corev1.ConditionFalse
	}
	now := metav1.Now()
	updated := pod.DeepCopy()
	updated.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    "127.0.0.1",
		HostIPs:   []corev1.HostIP{{IP: "127.0.0.1"}},
		PodIP:     p.IP,
		PodIPs:    []corev1.PodIP{{IP: p.IP}},
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: status(ready), LastTransitionTime: now},
			{Type: corev1.PodReady, Status: status(ready), LastTransitionTime: now},
		},
	}
	if pod.Status.StartTime != nil {
		updated.Status.StartTime = pod.Status.StartTime
	}
	for _, c := range pod.Spec.Containers {
		cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: c.Image, Ready: ready, Started: ptr.To(true)}
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: now}
		if c.Name == defaults.ValkeyContainer {
			cs.RestartCount = restarts
		}
		updated.Status.ContainerStatuses = append(updated.Status.ContainerStatuses, cs)
	}
	return w.k.client.Status().Update(ctx, updated)
}

// terminate stops the pod's process and removes the pod from the API server.
func (w *podWorker) terminate(ctx context.Context, pod *corev1.Pod) {
	if p := w.pod.Load(); p != nil {
		_ = p.Stop()
	}
	uid := pod.UID
	_ = w.k.client.Delete(ctx, pod, client.GracePeriodSeconds(0), client.Preconditions{UID: &uid})
}
