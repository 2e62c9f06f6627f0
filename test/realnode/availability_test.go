//go:build realnode && availability

package realnode

// The availability benchmark (make bench-availability; docs/benchmarks.md,
// "Availability during planned operations"). It runs only with both build tags,
// and then only with -ginkgo.label-filter=availability, so `make test` and `make
// realnode` never run it. The writer (test/realnode/writer) runs in a pod and
// writes all along; each operation is one phase of it, and every key a phase
// wrote is read back once the cluster is healthy again.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/cluster"
	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/controller"
	"github.com/valkey-webhook/valkey-webhook/test/valkeyharness"
)

const (
	// availPlannedGoal is the longest stall a planned operation may cause.
	availPlannedGoal = 100 * time.Millisecond
	// availQuiet is how long the reference phase, with no operation, lasts.
	availQuiet = 30 * time.Second
	// availTail is how long each phase goes on after its operation is over and
	// the cluster is healthy, before its read-back.
	availTail = 3 * time.Second
	// availWriterPort is the writer's control endpoint.
	availWriterPort = 8080
	// availReportEnv names a file the results are also written to; make
	// bench-availability prints it last, so that its last line is the JSON.
	availReportEnv = "AVAILABILITY_REPORT"
)

// Operation kinds: what a result is held to.
const (
	availReference = "reference"
	availPlanned   = "planned"
	availUnplanned = "unplanned"
)

// availResult is one operation's row.
type availResult struct {
	Operation      string  `json:"operation"`
	Kind           string  `json:"kind"`
	Seconds        float64 `json:"seconds"`
	LongestStallMS float64 `json:"longest_stall_ms"`
	FailedAttempts int64   `json:"failed_attempts"`
	Writes         int64   `json:"writes"`
	Written        int     `json:"written"`
	ReadBackEqual  int     `json:"read_back_equal"`
	// GoalStallMS is the goal of the longest stall; zero for the reference.
	GoalStallMS float64 `json:"goal_stall_ms,omitempty"`
	// Met is whether the goals were met (stall and no key lost); nil for the
	// reference.
	Met *bool `json:"met,omitempty"`
	// PodsRestarted counts the cluster's pods replaced or with a container
	// restarted during the phase.
	PodsRestarted int    `json:"pods_restarted"`
	Note          string `json:"note,omitempty"`
	Error         string `json:"error,omitempty"`
	// Errors are the writer's failed attempts by error text (a sample).
	Errors map[string]int `json:"errors,omitempty"`
}

// availReport is a writer's report of a phase (test/realnode/writer, Report).
type availReport struct {
	Phase               string         `json:"phase"`
	Seconds             float64        `json:"seconds"`
	Writes              int64          `json:"writes"`
	FailedAttempts      int64          `json:"failedAttempts"`
	LongestStallMS      float64        `json:"longestStallMs"`
	LongestStallStartMS float64        `json:"longestStallStartMs"`
	Unfinished          bool           `json:"unfinished"`
	Errors              map[string]int `json:"errors"`
	ReadBack            *struct {
		Written    int `json:"written"`
		Equal      int `json:"equal"`
		Missing    int `json:"missing"`
		Wrong      int `json:"wrong"`
		Unreadable int `json:"unreadable"`
	} `json:"readBack"`
}

// availWriter is the writer pod's control endpoint, called from the host at the
// pod's IP (never through a proxy of the environment).
type availWriter struct {
	base string
	http *http.Client
}

func (w *availWriter) call(ctx context.Context, method, uri string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, w.base+uri, nil)
	if err != nil {
		return err
	}
	resp, err := w.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, uri, resp.Status, body)
	}
	return json.Unmarshal(body, out)
}

// report makes a control request that answers a phase's report.
func (w *availWriter) report(ctx context.Context, method, uri string) availReport {
	GinkgoHelper()
	var r availReport
	Expect(w.call(ctx, method, uri, &r)).To(Succeed())
	return r
}

var _ = Describe("availability during planned operations (make bench-availability)", Label("availability"), Ordered, func() {
	c := &valkeyCluster{ns: "availability", name: "cache", pods: 6}
	headless := fmt.Sprintf("%s-headless.%s.svc.cluster.local", c.name, c.ns)
	podDNS := func(pod string) string { return pod + "." + headless }
	var (
		files       *valkeyharness.TLSFiles
		tlsNames    []string
		writer      *availWriter
		nodeTimeout time.Duration
		results     []availResult
	)
	// operations are the rows, in the order of the specs; phase names the
	// writer's phase.
	operations := []struct{ phase, name, kind string }{
		{"quiet", "quiet (no operation, 30 s)", availReference},
		{"roll", "(a) config roll of the 6 pods", availPlanned},
		{"cert", "(b) certificate renewal (TLS)", availPlanned},
		{"drain", "(c) drain: each pod evicted in turn", availPlanned},
		{"webhook", "(d) rollout restart of valkey-webhook", availPlanned},
		{"kill", "(e) master killed (--grace-period=0 --force)", availUnplanned},
	}

	BeforeAll(func(ctx SpecContext) {
		Expect(images["availability-writer"]).NotTo(BeEmpty(), "hack/node/up.sh printed no image availability-writer (hack/node/images)")
		mustRun(ctx, "", "create", "namespace", c.ns)

		By("a TLS Secret the test issues for the pods' DNS names (server and client use), auth on as by default")
		var err error
		files, err = valkeyharness.NewTLSFiles(GinkgoT().TempDir())
		Expect(err).NotTo(HaveOccurred())
		tlsNames = []string{"*." + headless, fmt.Sprintf("%s.%s.svc.cluster.local", c.name, c.ns)}
		data, err := files.SecretData(c.name, tlsNames)
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, Name: c.name + "-tls"},
			Type:       corev1.SecretTypeTLS,
			Data:       data,
		})).To(Succeed())

		By("the minimal example with valkey-webhook.io/tls.secretName")
		manifest := strings.Replace(minimalExample(c.ns), "  labels:\n    valkey-webhook.io/cluster: enabled\n",
			"  labels:\n    valkey-webhook.io/cluster: enabled\n  annotations:\n    valkey-webhook.io/tls.secretName: "+c.name+"-tls\n", 1)
		Expect(manifest).To(ContainSubstring("tls.secretName"))
		mustRun(ctx, manifest, "apply", "-f", "-")
		c.readPassword(ctx)
		c.tls = files.ClientConfig()
		c.tls.ServerName = podDNS(c.name + "-0")
		c.expectEvent(ctx, controller.ReasonClusterFormed)
		mustRun(ctx, "", "-n", c.ns, "rollout", "status", "statefulset/"+c.name, "--timeout=5m")
		c.expectHealthy(ctx)

		By("cluster-node-timeout from the policy in use (the node's policy over the built-in defaults, then the StatefulSet's annotations)")
		policy, err := config.Parse([]byte(node.Policy()))
		Expect(err).NotTo(HaveOccurred())
		sts := &appsv1.StatefulSet{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: c.ns, Name: c.name}, sts)).To(Succeed())
		effective, errs := config.Effective(policy, sts.Annotations, field.NewPath("metadata", "annotations"))
		Expect(errs).To(BeEmpty())
		nodeTimeout = time.Duration(effective.Cluster.NodeTimeout) * time.Millisecond
		Expect(availConfigGet(ctx, c, c.addresses(ctx)[0], "cluster-node-timeout")).To(Equal(strconv.Itoa(effective.Cluster.NodeTimeout)),
			"the node runs the policy's cluster-node-timeout")

		By("the writer in a pod: names through CoreDNS, every node's certificate verified for the name it announces")
		writers := 8
		if s := os.Getenv("AVAILABILITY_WRITERS"); s != "" {
			writers, err = strconv.Atoi(s)
			Expect(err).NotTo(HaveOccurred(), "AVAILABILITY_WRITERS")
		}
		// The seed is the client Service, as an application's is: valkey-go asks
		// its seeds again at every slot-map refresh, and a pod's name can still
		// resolve to an IP a roll took away (CoreDNS's TTL), whose dial then
		// waits out a timeout.
		service := fmt.Sprintf("%s.%s.svc.cluster.local", c.name, c.ns)
		seeds := []string{net.JoinHostPort(service, strconv.Itoa(valkeyPort))}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, Name: "writer", Labels: map[string]string{"app": "availability-writer"}},
			Spec: corev1.PodSpec{
				RestartPolicy:                 corev1.RestartPolicyNever,
				TerminationGracePeriodSeconds: new(int64),
				Containers: []corev1.Container{{
					Name:  "writer",
					Image: images["availability-writer"],
					Args: []string{"-seed", strings.Join(seeds, ","), "-ca", "/tls/ca.crt", "-password-file", "/auth/password",
						"-writers", strconv.Itoa(writers), "-listen", fmt.Sprintf(":%d", availWriterPort)},
					Ports:        []corev1.ContainerPort{{Name: "control", ContainerPort: availWriterPort}},
					VolumeMounts: []corev1.VolumeMount{{Name: "tls", MountPath: "/tls"}, {Name: "auth", MountPath: "/auth"}},
				}},
				Volumes: []corev1.Volume{
					{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: c.name + "-tls", Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}}},
					{Name: "auth", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: c.name + "-auth", Items: []corev1.KeyToPath{{Key: "password", Path: "password"}}}}},
				},
			},
		}
		Expect(k8s.Create(ctx, pod)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(pod), pod)).To(Succeed())
			g.Expect(pod.Status.Phase).To(Equal(corev1.PodRunning), "the writer runs")
			g.Expect(pod.Status.PodIP).NotTo(BeEmpty())
		}).WithContext(ctx).WithTimeout(settle).Should(Succeed())
		writer = &availWriter{
			base: "http://" + net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(availWriterPort)),
			// Proxy nil: the pod IP is reached directly, whatever the environment says.
			http: &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 6 * time.Minute},
		}
		Eventually(func(g Gomega) {
			var r availReport
			g.Expect(writer.call(ctx, http.MethodGet, "/report", &r)).To(Succeed())
			g.Expect(r.Writes).To(BeNumerically(">", 0), "the writer writes: %+v", r)
		}).WithContext(ctx).WithTimeout(settle).WithPolling(2*time.Second).Should(Succeed(), func() string {
			return kubectl(ctx, "-n", c.ns, "logs", "writer", "--tail=40")
		})
		var names []struct {
			Name        string `json:"name"`
			Connections int    `json:"connections"`
		}
		Expect(writer.call(ctx, http.MethodGet, "/tls", &names)).To(Succeed())
		pods := 0
		for _, n := range names {
			Expect(n.Name).To(Or(HaveSuffix("."+headless), Equal(service)), "the writer verified every node's certificate for the name it dialed: %+v", names)
			if strings.HasSuffix(n.Name, "."+headless) {
				pods++
			}
		}
		Expect(pods).To(BeNumerically(">=", 3), "the writer followed the slots to every master by its announced pod name: %+v", names)
		AddReportEntry("names the writer verified", fmt.Sprint(names))
	}, NodeTimeout(20*time.Minute))

	AfterAll(func() {
		for _, op := range operations[len(results):] {
			results = append(results, availResult{Operation: op.name, Kind: op.kind, Error: "did not complete (see the failed spec)"})
		}
		out := availTable(results, nodeTimeout)
		AddReportEntry("availability", out)
		GinkgoWriter.Print(out)
		if path := os.Getenv(availReportEnv); path != "" {
			Expect(os.WriteFile(path, []byte(out), 0o644)).To(Succeed())
		}
	})

	// measure runs one operation as a phase of the writer: the phase starts, op
	// runs (and returns once the cluster is healthy again, with a note), the
	// phase goes on for availTail and ends with the read-back of every key it
	// wrote.
	measure := func(ctx context.Context, op func() string) {
		GinkgoHelper()
		o := operations[len(results)]
		before := availPodStates(ctx, c)
		start := time.Now()
		writer.report(ctx, http.MethodPost, "/phase?name="+o.phase)
		note := op()
		time.Sleep(availTail)
		r := writer.report(ctx, http.MethodGet, "/report?final=1&next=after-"+o.phase)
		Expect(r.ReadBack).NotTo(BeNil())
		res := availResult{
			Operation:      o.name,
			Kind:           o.kind,
			Seconds:        time.Since(start).Seconds(),
			LongestStallMS: r.LongestStallMS,
			FailedAttempts: r.FailedAttempts,
			Writes:         r.Writes,
			Written:        r.ReadBack.Written,
			ReadBackEqual:  r.ReadBack.Equal,
			PodsRestarted:  availRestarted(before, availPodStates(ctx, c)),
			Note:           note,
			Errors:         r.Errors,
		}
		if rb := r.ReadBack; rb.Missing+rb.Wrong+rb.Unreadable > 0 {
			res.Note += fmt.Sprintf("; read back: %d missing, %d wrong, %d unreadable", rb.Missing, rb.Wrong, rb.Unreadable)
		}
		if r.Unfinished {
			res.Note += "; the longest stall was of a write still failing at the phase's end"
		}
		var goal time.Duration
		switch o.kind {
		case availPlanned:
			goal = availPlannedGoal
		case availUnplanned:
			goal = nodeTimeout + time.Second
		}
		if goal > 0 {
			res.GoalStallMS = float64(goal.Milliseconds())
			met := !r.Unfinished && res.LongestStallMS <= res.GoalStallMS && res.Written > 0 && res.ReadBackEqual == res.Written
			res.Met = &met
		}
		results = append(results, res)
		AddReportEntry(o.name, fmt.Sprintf("%+v", res))
	}

	It("measures a quiet phase, for reference", func(ctx SpecContext) {
		measure(ctx, func() string {
			time.Sleep(availQuiet)
			return ""
		})
	}, NodeTimeout(5*time.Minute))

	It("(a) rolls a change of valkey.conf through all six pods", func(ctx SpecContext) {
		measure(ctx, func() string {
			old := c.podsByName(ctx)
			By("valkey-webhook.io/valkey.maxmemoryPolicy: volatile-lru (keys without a TTL are never evicted), which changes valkey.conf")
			mustRun(ctx, "", "-n", c.ns, "annotate", "statefulset", c.name, config.AnnotationPrefix+"valkey.maxmemoryPolicy=volatile-lru")
			mustRun(ctx, "", "-n", c.ns, "rollout", "status", "statefulset/"+c.name, "--timeout=20m")
			c.expectHealthy(ctx)
			for name, p := range c.podsByName(ctx) {
				Expect(p.UID).NotTo(Equal(old[name].UID), "%s was rolled", name)
				Expect(availConfigGet(ctx, c, net.JoinHostPort(p.Status.PodIP, strconv.Itoa(valkeyPort)), "maxmemory-policy")).
					To(Equal("volatile-lru"), "%s runs the new valkey.conf", name)
			}
			return "maxmemory-policy noeviction -> volatile-lru"
		})
	}, NodeTimeout(30*time.Minute))

	It("(b) renews the TLS certificate: a new key and certificate from the same CA in the Secret", func(ctx SpecContext) {
		measure(ctx, func() string {
			data, err := files.SecretData(c.name, tlsNames)
			Expect(err).NotTo(HaveOccurred())
			block, _ := pem.Decode(data["tls.crt"])
			Expect(block).NotTo(BeNil())
			renewed := block.Bytes
			secret := &corev1.Secret{}
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: c.ns, Name: c.name + "-tls"}, secret)).To(Succeed())
			patch := client.MergeFrom(secret.DeepCopy())
			secret.Data["tls.crt"], secret.Data["tls.key"] = data["tls.crt"], data["tls.key"]
			Expect(k8s.Patch(ctx, secret, patch)).To(Succeed())
			changed := time.Now()

			By("every node serves the new certificate (TLS from the host to each pod IP, verified for the pod's DNS name)")
			Eventually(func(g Gomega) {
				pods := c.podsByName(ctx)
				g.Expect(pods).To(HaveLen(c.pods))
				for name, p := range pods {
					served, err := availServedCert(ctx, c, p.Status.PodIP, podDNS(name))
					g.Expect(err).NotTo(HaveOccurred(), name)
					g.Expect(bytes.Equal(served.Raw, renewed)).To(BeTrue(), "%s serves the new certificate (it serves serial %s)", name, served.SerialNumber)
				}
			}).WithContext(ctx).WithTimeout(10 * time.Minute).WithPolling(time.Second).Should(Succeed())
			servedAfter := time.Since(changed)
			mustRun(ctx, "", "-n", c.ns, "rollout", "status", "statefulset/"+c.name, "--timeout=20m")
			c.expectHealthy(ctx)
			return fmt.Sprintf("every node served the new certificate %.0f s after the Secret changed", servedAfter.Seconds())
		})
	}, NodeTimeout(30*time.Minute))

	It("(c) drains every pod in turn through the Eviction API, as kubectl drain does", func(ctx SpecContext) {
		measure(ctx, func() string {
			refused := 0
			for i := range c.pods {
				name := fmt.Sprintf("%s-%d", c.name, i)
				old := c.podsByName(ctx)[name]
				Expect(old.UID).NotTo(BeEmpty(), "%s exists", name)
				By("evicting " + name + " (a 429 from the PodDisruptionBudget is retried every 5 s)")
				refused += availEvict(ctx, c.ns, name)
				Eventually(func(g Gomega) {
					p := &corev1.Pod{}
					g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: c.ns, Name: name}, p)).To(Succeed())
					g.Expect(p.UID).NotTo(Equal(old.UID), "%s re-created", name)
					g.Expect(podReady(p)).To(BeTrue(), "%s Ready", name)
				}).WithContext(ctx).WithTimeout(settle).WithPolling(time.Second).Should(Succeed())
				c.expectHealthy(ctx)
			}
			return fmt.Sprintf("%d evictions; %d answers 429 (the PodDisruptionBudget), each retried", c.pods, refused)
		})
	}, NodeTimeout(45*time.Minute))

	It("(d) restarts valkey-webhook's own Deployment", func(ctx SpecContext) {
		measure(ctx, func() string {
			keepWebhookLogs(ctx)
			mustRun(ctx, "", "-n", webhookNS, "rollout", "restart", "deployment/valkey-webhook")
			mustRun(ctx, "", "-n", webhookNS, "rollout", "status", "deployment/valkey-webhook", "--timeout=5m")
			c.expectHealthy(ctx)
			return ""
		})
	}, NodeTimeout(15*time.Minute))

	It("(e) kills a master: the unplanned reference", func(ctx SpecContext) {
		measure(ctx, func() string {
			report, err := c.status(ctx)
			Expect(err).NotTo(HaveOccurred())
			var master string
			for _, n := range report.Nodes {
				if n.Role == cluster.RoleMaster && n.Slots > 0 {
					master = n.Address
					break
				}
			}
			Expect(master).NotTo(BeEmpty(), "a master: %+v", report)
			ip, _, err := net.SplitHostPort(master)
			Expect(err).NotTo(HaveOccurred())
			var victim corev1.Pod
			for _, p := range c.podsByName(ctx) {
				if p.Status.PodIP == ip {
					victim = p
				}
			}
			Expect(victim.Name).NotTo(BeEmpty(), "the pod of master %s", master)
			By("kubectl delete pod " + victim.Name + " --grace-period=0 --force")
			mustRun(ctx, "", "-n", c.ns, "delete", "pod", victim.Name, "--grace-period=0", "--force", "--wait=false")
			Eventually(func(g Gomega) {
				p := &corev1.Pod{}
				g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: c.ns, Name: victim.Name}, p)).To(Succeed())
				g.Expect(p.UID).NotTo(Equal(victim.UID), "%s re-created", victim.Name)
				g.Expect(podReady(p)).To(BeTrue(), "%s Ready", victim.Name)
			}).WithContext(ctx).WithTimeout(settle).WithPolling(time.Second).Should(Succeed())
			c.expectHealthy(ctx)
			return fmt.Sprintf("killed %s, a master; goal: cluster-node-timeout %d ms + 1 s", victim.Name, nodeTimeout.Milliseconds())
		})
	}, NodeTimeout(15*time.Minute))
})

// availEvict evicts the pod through the Eviction API (policy/v1), retrying every
// 5 s while the PodDisruptionBudget refuses it (429), as kubectl drain does, for
// at most settle; it returns how many times it was refused.
func availEvict(ctx context.Context, ns, name string) int {
	GinkgoHelper()
	refused := 0
	deadline := time.Now().Add(settle)
	for {
		err := k8s.SubResource("eviction").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
			&policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})
		if err == nil {
			return refused
		}
		Expect(apierrors.IsTooManyRequests(err)).To(BeTrue(), "eviction of %s: %v", name, err)
		refused++
		Expect(time.Now().Before(deadline)).To(BeTrue(), "eviction of %s still refused after %s: %v", name, settle, err)
		select {
		case <-ctx.Done():
			Fail("interrupted while evicting " + name)
		case <-time.After(5 * time.Second):
		}
	}
}

// availConfigGet is CONFIG GET of one parameter at the node at addr.
func availConfigGet(ctx context.Context, c *valkeyCluster, addr, param string) string {
	GinkgoHelper()
	cl := c.nodeClient(addr)
	defer cl.Close()
	kv, err := cl.Do(ctx, cl.B().ConfigGet().Parameter(param).Build()).AsStrMap()
	Expect(err).NotTo(HaveOccurred())
	return kv[param]
}

// availServedCert is the certificate the node at ip serves, verified against the
// test's CA for the pod's DNS name (the host dials the IP; it never resolves
// cluster names).
func availServedCert(ctx context.Context, c *valkeyCluster, ip, name string) (*x509.Certificate, error) {
	cfg := c.tls.Clone()
	cfg.ServerName = name
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := d.DialContext(dctx, "tcp", net.JoinHostPort(ip, strconv.Itoa(valkeyPort)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

// availPodState is what tells a pod replaced or restarted.
type availPodState struct {
	uid      types.UID
	restarts int32
}

func availPodStates(ctx context.Context, c *valkeyCluster) map[string]availPodState {
	GinkgoHelper()
	out := map[string]availPodState{}
	for name, p := range c.podsByName(ctx) {
		s := availPodState{uid: p.UID}
		for _, cs := range p.Status.ContainerStatuses {
			s.restarts += cs.RestartCount
		}
		out[name] = s
	}
	return out
}

// availRestarted counts the pods of before that are gone, replaced, or had a
// container restarted since.
func availRestarted(before, after map[string]availPodState) int {
	n := 0
	for name, b := range before {
		if a, ok := after[name]; !ok || a.uid != b.uid || a.restarts != b.restarts {
			n++
		}
	}
	return n
}

// availTable is the results as a table, the verdicts, and last the JSON line.
func availTable(results []availResult, nodeTimeout time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "availability: a valkey-go cluster client in a pod, every write retried every 10 ms until it succeeds; cluster-node-timeout %d ms\n", nodeTimeout.Milliseconds())
	header := []string{"operation", "longest stall", "failed attempts", "writes", "keys read back / written", "verdict"}
	rows := [][]string{header}
	allMet := true
	for _, r := range results {
		verdict := "reference"
		switch {
		case r.Error != "":
			verdict, allMet = "NOT MEASURED: "+r.Error, false
		case r.Met == nil:
		case *r.Met:
			verdict = fmt.Sprintf("met (<= %.0f ms, no key lost)", r.GoalStallMS)
		default:
			allMet = false
			var why []string
			if r.LongestStallMS > r.GoalStallMS {
				why = append(why, fmt.Sprintf("stall over %.0f ms", r.GoalStallMS))
			}
			if r.ReadBackEqual != r.Written {
				why = append(why, fmt.Sprintf("%d keys lost", r.Written-r.ReadBackEqual))
			}
			if len(why) == 0 {
				why = append(why, "the longest write had not succeeded at the phase's end")
			}
			verdict = "MISSED: " + strings.Join(why, ", ")
		}
		row := []string{r.Operation, "", "", "", "", verdict}
		if r.Error == "" {
			row[1] = fmt.Sprintf("%.1f ms", r.LongestStallMS)
			row[2] = strconv.FormatInt(r.FailedAttempts, 10)
			row[3] = strconv.FormatInt(r.Writes, 10)
			row[4] = fmt.Sprintf("%d / %d", r.ReadBackEqual, r.Written)
		}
		rows = append(rows, row)
	}
	widths := make([]int, len(header))
	for _, row := range rows {
		for i, cell := range row {
			widths[i] = max(widths[i], len(cell))
		}
	}
	for _, row := range rows {
		cells := make([]string, len(row))
		for i, cell := range row {
			if i == 0 || i == len(row)-1 {
				cells[i] = fmt.Sprintf("%-*s", widths[i], cell)
			} else {
				cells[i] = fmt.Sprintf("%*s", widths[i], cell)
			}
		}
		fmt.Fprintln(&b, strings.TrimRight(strings.Join(cells, " | "), " "))
	}
	for _, r := range results {
		var notes []string
		if r.Note != "" {
			notes = append(notes, strings.TrimPrefix(r.Note, "; "))
		}
		if r.Error == "" {
			notes = append(notes, fmt.Sprintf("%.0f s, pods restarted or replaced: %d", r.Seconds, r.PodsRestarted))
		}
		for _, e := range slices.Sorted(maps.Keys(r.Errors)) {
			notes = append(notes, fmt.Sprintf("%dx %q", r.Errors[e], e))
		}
		if len(notes) > 0 {
			fmt.Fprintf(&b, "  %s: %s\n", r.Operation, strings.Join(notes, "; "))
		}
	}
	fmt.Fprintf(&b, "goals: planned operations (a-d) at most %d ms longest stall and no key lost; the unplanned kill (e) within cluster-node-timeout + 1 s (%d ms) and no key lost: ",
		availPlannedGoal.Milliseconds(), (nodeTimeout + time.Second).Milliseconds())
	if allMet {
		fmt.Fprintln(&b, "met")
	} else {
		fmt.Fprintln(&b, "NOT met")
	}
	enc := json.NewEncoder(&b) // one line, ended by a newline
	enc.SetEscapeHTML(false)
	_ = enc.Encode(struct {
		Bench    string        `json:"bench"`
		Results  []availResult `json:"results"`
		GoalsMet bool          `json:"goals_met"`
	}{"availability", results, allMet})
	return b.String()
}
