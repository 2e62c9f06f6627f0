//go:build realnode

package realnode

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/valkey-io/valkey-go"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/cluster"
	"github.com/valkey-webhook/valkey-webhook/test/valkeyharness"
)

const valkeyPort = 6379

func readRepoFile(rel string) string {
	GinkgoHelper()
	b, err := os.ReadFile(filepath.Join(repo, rel))
	Expect(err).NotTo(HaveOccurred())
	return string(b)
}

// valkeyCluster is one labeled StatefulSet's cluster as the host sees it: by pod
// IP (the host never resolves cluster names), with the password of its Secret.
type valkeyCluster struct {
	ns, name string
	pods     int
	// masters is how many masters serve the slots; 3 unless a spec says.
	masters  int
	password string
	keys     int
	// tls, when set, is the client side of the cluster's TLS.
	tls *tls.Config
}

// podsByName are the StatefulSet's pods that are not being deleted.
func (c *valkeyCluster) podsByName(ctx context.Context) map[string]corev1.Pod {
	GinkgoHelper()
	list := &corev1.PodList{}
	Expect(k8s.List(ctx, list, client.InNamespace(c.ns))).To(Succeed())
	out := map[string]corev1.Pod{}
	for _, p := range list.Items {
		if p.DeletionTimestamp.IsZero() && strings.HasPrefix(p.Name, c.name+"-") && p.Labels["controller-revision-hash"] != "" {
			out[p.Name] = p
		}
	}
	return out
}

// addresses are the pods' IP:port, in ordinal order.
func (c *valkeyCluster) addresses(ctx context.Context) []string {
	GinkgoHelper()
	pods := c.podsByName(ctx)
	out := make([]string, c.pods)
	for i := range c.pods {
		p, ok := pods[fmt.Sprintf("%s-%d", c.name, i)]
		Expect(ok).To(BeTrue(), "pod %s-%d exists", c.name, i)
		Expect(p.Status.PodIP).NotTo(BeEmpty(), "pod %s has an IP", p.Name)
		out[i] = net.JoinHostPort(p.Status.PodIP, strconv.Itoa(valkeyPort))
	}
	return out
}

func (c *valkeyCluster) options() cluster.Options {
	return cluster.Options{Password: c.password, TLS: c.tls, Timeout: 20 * time.Second}
}

func (c *valkeyCluster) clientOption(addrs ...string) valkey.ClientOption {
	return valkey.ClientOption{
		InitAddress:  addrs,
		Password:     c.password,
		TLSConfig:    c.tls,
		DisableCache: true,
		Dialer:       net.Dialer{Timeout: 5 * time.Second},
		DialCtxFn:    valkeyharness.HostDialer(valkeyharness.APIPodIP(k8s, c.ns)),
	}
}

// status asks every pod, through the cluster package, how it sees the cluster.
func (c *valkeyCluster) status(ctx context.Context) (cluster.Report, error) {
	var nodes []cluster.Node
	for _, a := range c.addresses(ctx) {
		nodes = append(nodes, cluster.Node{Address: a})
	}
	return cluster.Status(ctx, nodes, c.options())
}

// expectHealthy waits until every pod is Ready with all its containers (the
// probes run by the kubelet) and every node reports the cluster ok with all
// slots served by c.masters masters (3 when unset), every other pod a replica.
func (c *valkeyCluster) expectHealthy(ctx context.Context) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		pods := c.podsByName(ctx)
		g.Expect(pods).To(HaveLen(c.pods))
		for name, p := range pods {
			g.Expect(p.Status.Phase).To(Equal(corev1.PodRunning), "%s runs", name)
			g.Expect(p.Status.ContainerStatuses).NotTo(BeEmpty())
			for _, cs := range p.Status.ContainerStatuses {
				g.Expect(cs.Ready).To(BeTrue(), "container %s of %s is Ready", cs.Name, name)
			}
		}
		report, err := c.status(ctx)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(report.State).To(Equal(cluster.StateOK), "cluster state: %+v", report)
		masters := c.masters
		if masters == 0 {
			masters = 3
		}
		g.Expect(report.Masters).To(Equal(masters))
		g.Expect(report.Replicas).To(Equal(c.pods - masters))
		g.Expect(report.SlotsCovered).To(Equal(cluster.SlotCount))
	}).WithContext(ctx).WithTimeout(settle).WithPolling(time.Second).Should(Succeed())
}

// readPassword takes the password from the StatefulSet's auth Secret.
func (c *valkeyCluster) readPassword(ctx context.Context) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		s := &corev1.Secret{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: c.ns, Name: c.name + "-auth"}, s)).To(Succeed())
		g.Expect(s.Data["password"]).NotTo(BeEmpty())
		c.password = string(s.Data["password"])
	}).WithContext(ctx).WithTimeout(settle).Should(Succeed())
}

func key(i int) string { return fmt.Sprintf("key:%d", i) }

// writeKeys writes c.keys keys through a valkey-go cluster client at the pod IPs,
// then waits until every master's replicas have acknowledged them.
func (c *valkeyCluster) writeKeys(ctx context.Context) {
	GinkgoHelper()
	addrs := c.addresses(ctx)
	cl, err := valkey.NewClient(c.clientOption(addrs...))
	Expect(err).NotTo(HaveOccurred())
	defer cl.Close()
	cmds := make(valkey.Commands, 0, c.keys)
	for i := range c.keys {
		cmds = append(cmds, cl.B().Set().Key(key(i)).Value(strconv.Itoa(i)).Build())
	}
	for i, res := range cl.DoMulti(ctx, cmds...) {
		Expect(res.Error()).NotTo(HaveOccurred(), "SET %s", key(i))
	}
	for _, addr := range addrs {
		Eventually(func() (bool, error) { return c.replicated(ctx, addr) }).WithContext(ctx).WithTimeout(settle).
			Should(BeTrue(), "the replicas of %s (if a master) have every write", addr)
	}
}

// replicated reports whether the node at addr is a replica, or a master whose
// replicas have all acknowledged its whole replication stream.
func (c *valkeyCluster) replicated(ctx context.Context, addr string) (bool, error) {
	o := c.clientOption(addr)
	o.ForceSingleClient = true
	cl, err := valkey.NewClient(o)
	if err != nil {
		return false, err
	}
	defer cl.Close()
	info, err := cl.Do(ctx, cl.B().Info().Section("replication").Build()).ToString()
	if err != nil {
		return false, err
	}
	fields := cluster.ParseInfo(info)
	if fields["role"] != "master" {
		return true, nil
	}
	n, _ := strconv.Atoi(fields["connected_slaves"])
	if n == 0 {
		return false, nil
	}
	for i := range n {
		if !strings.Contains(fields[fmt.Sprintf("slave%d", i)], "offset="+fields["master_repl_offset"]+",") {
			return false, nil
		}
	}
	return true, nil
}

// readKeys reads every key back through a new cluster client at the current pod
// IPs; the cluster may still be settling, so each try reads them all again.
func (c *valkeyCluster) readKeys(ctx context.Context) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		var addrs []string
		for _, p := range c.podsByName(ctx) {
			if p.Status.PodIP != "" {
				addrs = append(addrs, net.JoinHostPort(p.Status.PodIP, strconv.Itoa(valkeyPort)))
			}
		}
		cl, err := valkey.NewClient(c.clientOption(addrs...))
		g.Expect(err).NotTo(HaveOccurred())
		defer cl.Close()
		cmds := make(valkey.Commands, 0, c.keys)
		for i := range c.keys {
			cmds = append(cmds, cl.B().Get().Key(key(i)).Build())
		}
		missing := 0
		for i, res := range cl.DoMulti(ctx, cmds...) {
			if v, err := res.ToString(); err != nil || v != strconv.Itoa(i) {
				missing++
			}
		}
		g.Expect(missing).To(BeZero(), "keys not read back (of %d)", c.keys)
	}).WithContext(ctx).WithTimeout(settle).WithPolling(time.Second).Should(Succeed())
}

// expectEvent waits for an Event of the reason on the StatefulSet.
func (c *valkeyCluster) expectEvent(ctx context.Context, reason string) {
	GinkgoHelper()
	Eventually(func() ([]string, error) { return c.events(ctx) }).WithContext(ctx).WithTimeout(settle).
		Should(ContainElement(HavePrefix(reason + ": ")))
}

// events are the StatefulSet's Events as "Reason: note", sorted.
func (c *valkeyCluster) events(ctx context.Context) ([]string, error) {
	list := &eventsv1.EventList{}
	if err := k8s.List(ctx, list, client.InNamespace(c.ns)); err != nil {
		return nil, err
	}
	var reasons []string
	for _, e := range list.Items {
		if e.Regarding.Kind == "StatefulSet" && e.Regarding.Name == c.name {
			reasons = append(reasons, e.Reason+": "+e.Note)
		}
	}
	slices.Sort(reasons)
	return reasons, nil
}

// nodeClient is a client of the one node at addr.
func (c *valkeyCluster) nodeClient(addr string) valkey.Client {
	GinkgoHelper()
	o := c.clientOption(addr)
	o.ForceSingleClient = true
	cl, err := valkey.NewClient(o)
	Expect(err).NotTo(HaveOccurred())
	return cl
}

// role is the first field of ROLE at the node: master or slave.
func (c *valkeyCluster) role(ctx context.Context, addr string) (string, error) {
	o := c.clientOption(addr)
	o.ForceSingleClient = true
	cl, err := valkey.NewClient(o)
	if err != nil {
		return "", err
	}
	defer cl.Close()
	role, err := cl.Do(ctx, cl.B().Role().Build()).ToArray()
	if err != nil {
		return "", err
	}
	return role[0].ToString()
}

// createTLSSecret issues a certificate for the pods' DNS names under c's
// headless Service and its client Service (server and client use, as the
// cluster bus needs), from a CA of its own, and stores it as the Secret
// <name>-tls. It returns the TLS files, for a client that verifies them.
func createTLSSecret(ctx context.Context, c *valkeyCluster) *valkeyharness.TLSFiles {
	GinkgoHelper()
	files, err := valkeyharness.NewTLSFiles(GinkgoT().TempDir())
	Expect(err).NotTo(HaveOccurred())
	headless := fmt.Sprintf("%s-headless.%s.svc.cluster.local", c.name, c.ns)
	data, err := files.SecretData(c.name, []string{"*." + headless, fmt.Sprintf("%s.%s.svc.cluster.local", c.name, c.ns)})
	Expect(err).NotTo(HaveOccurred())
	Expect(k8s.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, Name: c.name + "-tls"},
		Type:       corev1.SecretTypeTLS,
		Data:       data,
	})).To(Succeed())
	return files
}

// createNamespace creates ns and deletes it when the container or spec that
// called it ends: a labeled cluster left behind would be part of the fleet a
// later spec rolls, and hold the node's memory.
func createNamespace(ctx context.Context, ns string) {
	GinkgoHelper()
	mustRun(ctx, "", "create", "namespace", ns)
	DeferCleanup(func(ctx SpecContext) { mustRun(ctx, "", "delete", "namespace", ns, "--wait=false") })
}

// execIn runs a shell command in a container and returns its stdout and error.
func execIn(ctx context.Context, ns, pod, container, script string) (string, error) {
	out, errOut, err := run(ctx, "", "-n", ns, "exec", pod, "-c", container, "--", "sh", "-c", script)
	if err != nil {
		return out, fmt.Errorf("%w: %s", err, errOut)
	}
	return out, nil
}
