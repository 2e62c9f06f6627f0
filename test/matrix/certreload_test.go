package matrix

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/cluster"
	"github.com/valkey-webhook/valkey-webhook/controller"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

var _ = Describe("a certificate renewed by cert-manager", Ordered, func() {
	var r *run
	BeforeAll(func(ctx SpecContext) {
		r = startRun(ctx, "certreload", mode{name: "tls.issuer", tls: true, issuer: true}, 3)
		r.keys = 100 // enough to show the cluster serves clients after the reload
	})

	It("is loaded by every node in place once the kubelet has updated its files: the same processes, no pod restarted, no roll", func(ctx SpecContext) {
		r.expectEvent(ctx, controller.ReasonClusterFormed)
		r.expectHealthy(ctx)
		r.writeKeys(ctx)

		type podFacts struct {
			uid   string
			runID string
			sets  int
			leaf  *x509.Certificate
		}
		before := map[string]podFacts{}
		for name, pod := range r.podsByName(ctx) {
			addr := r.addressOf(ctx, name)
			before[name] = podFacts{uid: string(pod.UID), runID: r.serverInfo(ctx, addr)["run_id"], sets: r.configSets(ctx, addr), leaf: r.servedLeaf(ctx, name)}
		}
		sts := &appsv1.StatefulSet{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(r.sts), sts)).To(Succeed())
		generation := sts.Generation
		renewedAt := time.Now()

		By("cert-manager renews: the Secret, then the Certificate's revision; the kubelet has not updated the pods' files yet")
		renewed := r.issue(ctx)
		// The new revision wakes the lifecycle controller at once; each look
		// sends every node a CONFIG SET, which reads the old files again. Two
		// looks: it asks again, 10 s later, and not in a loop.
		Eventually(func(g Gomega) {
			for name, was := range before {
				g.Expect(r.configSets(ctx, r.addressOf(ctx, name))).To(BeNumerically(">=", was.sets+2), "%s was asked twice", name)
			}
		}).WithContext(ctx).WithTimeout(45 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
		Expect(time.Since(renewedAt)).To(BeNumerically(">=", 9*time.Second), "the second look comes some 10 s after the first")
		for name, was := range before {
			Expect(r.configSets(ctx, r.addressOf(ctx, name))).To(BeNumerically("<=", was.sets+3), "%s: looks paced, not a storm", name)
			Expect(r.servedLeaf(ctx, name).Equal(was.leaf)).To(BeTrue(), "%s still serves the old certificate: its files are old", name)
		}
		Expect(r.eventsSince(ctx, renewedAt, corev1.EventTypeWarning)).To(BeEmpty(), "no Warning while the files are old")

		By("the kubelet updates the volumes of three pods, then of the other three")
		first, rest := []string{"cache-0", "cache-1", "cache-2"}, []string{"cache-3", "cache-4", "cache-5"}
		Expect(r.kubelet.SyncVolumes(ctx, first...)).To(Succeed())
		Eventually(func(g Gomega) {
			for _, name := range first {
				g.Expect(r.servedLeaf(ctx, name).Equal(renewed)).To(BeTrue(), "%s serves the renewed certificate", name)
			}
		}).WithContext(ctx).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
		for _, name := range rest {
			Expect(r.servedLeaf(ctx, name).Equal(before[name].leaf)).To(BeTrue(), "%s still has its old files", name)
		}
		Expect(r.kubelet.SyncVolumes(ctx, rest...)).To(Succeed())
		Eventually(func(g Gomega) {
			for name := range before {
				g.Expect(r.servedLeaf(ctx, name).Equal(renewed)).To(BeTrue(), "%s serves the renewed certificate", name)
			}
		}).WithContext(ctx).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())

		By("the same processes and pods: nothing restarted, nothing rolled")
		for name, pod := range r.podsByName(ctx) {
			Expect(string(pod.UID)).To(Equal(before[name].uid), "%s is the same pod", name)
			for _, c := range pod.Status.ContainerStatuses {
				Expect(c.RestartCount).To(BeZero(), "%s/%s never restarted", name, c.Name)
			}
			Expect(r.serverInfo(ctx, r.addressOf(ctx, name))["run_id"]).To(Equal(before[name].runID), "%s runs the same valkey-server", name)
		}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(r.sts), sts)).To(Succeed())
		Expect(sts.Generation).To(Equal(generation), "the StatefulSet was not changed")
		Expect(sts.Spec.Template.Annotations).NotTo(HaveKey(defaults.TLSChecksumAnnotation))

		By("one Event, once every node serves it, that says what was loaded where")
		serial := fmt.Sprintf("%X", renewed.SerialNumber.Bytes())
		Eventually(func() ([]string, error) { return r.notes(ctx, controller.ReasonCertificateReloaded) }).
			WithContext(ctx).WithTimeout(10 * time.Second).Should(ConsistOf(And(
			ContainSubstring("Secret certreload/cache-tls (serial "+serial+", valid until "+renewed.NotAfter.UTC().Format(time.RFC3339)+")"),
			ContainSubstring("in place on 6 node(s), cache-0, cache-1, cache-2, cache-3, cache-4, cache-5, with CONFIG SET: no pod restarted; all 6 nodes serve it"),
			MatchRegexp(`\(\d+ look\(s\) over \d+s found nodes whose mounted Secret the kubelet had not updated yet\)`),
		)))
		notes, err := r.notes(ctx, controller.ReasonCertificateReloaded)
		Expect(err).NotTo(HaveOccurred())
		AddReportEntry("CertificateReloaded Event", strings.Join(notes, "\n"))
		Expect(r.eventsSince(ctx, renewedAt, corev1.EventTypeWarning)).To(BeEmpty())

		By("the cluster, its bus now on the renewed certificates, serves every key")
		r.expectHealthy(ctx)
		r.readKeys(ctx)
	})
})

// issue plays cert-manager's issuance of the companion Certificate: a new key
// and certificate of its names, signed by the run's CA, written to its Secret,
// then a new revision in its status. It returns the new leaf.
func (r *run) issue(ctx context.Context) *x509.Certificate {
	GinkgoHelper()
	cert := &cmapi.Certificate{}
	key := client.ObjectKey{Namespace: r.ns, Name: r.sts.Name + "-tls"}
	Eventually(func() error { return k8s.Get(ctx, key, cert) }).WithContext(ctx).WithTimeout(settle).Should(Succeed())
	var ips []net.IP
	for _, ip := range cert.Spec.IPAddresses {
		ips = append(ips, net.ParseIP(ip))
	}
	data, err := r.files.SecretData(r.sts.Name, cert.Spec.DNSNames, ips...)
	Expect(err).NotTo(HaveOccurred())
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: r.ns, Name: cert.Spec.SecretName}}
	err = k8s.Get(ctx, client.ObjectKeyFromObject(secret), secret)
	switch {
	case apierrors.IsNotFound(err):
		secret.Type = corev1.SecretTypeTLS
		secret.Labels = cert.Spec.SecretTemplate.Labels
		secret.Data = data
		Expect(k8s.Create(ctx, secret)).To(Succeed())
	default:
		Expect(err).NotTo(HaveOccurred())
		secret.Data = data
		Expect(k8s.Update(ctx, secret)).To(Succeed())
	}
	revision := 1
	if cert.Status.Revision != nil {
		revision = *cert.Status.Revision + 1
	}
	cert.Status.Revision = ptr.To(revision)
	cert.Status.Conditions = []cmapi.CertificateCondition{{Type: cmapi.CertificateConditionReady, Status: cmmeta.ConditionTrue, Reason: "Ready"}}
	Expect(k8s.Status().Update(ctx, cert)).To(Succeed())
	block, _ := pem.Decode(data["tls.crt"])
	Expect(block).NotTo(BeNil())
	leaf, err := x509.ParseCertificate(block.Bytes)
	Expect(err).NotTo(HaveOccurred())
	return leaf
}

// servedLeaf is the leaf certificate a pod presents to a new TLS handshake at
// its IP, verified against its DNS name, as the lifecycle controller dials it.
func (r *run) servedLeaf(ctx context.Context, pod string) *x509.Certificate {
	GinkgoHelper()
	cfg := r.tls.Clone()
	cfg.ServerName = fmt.Sprintf("%s.%s.%s.svc.cluster.local", pod, defaults.HeadlessServiceName(r.sts), r.ns)
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", r.addressOf(ctx, pod))
	Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0]
}

// serverInfo is a node's INFO server: its run_id changes when it restarts.
func (r *run) serverInfo(ctx context.Context, addr string) map[string]string {
	GinkgoHelper()
	cl, err := r.nodeClient(addr)
	Expect(err).NotTo(HaveOccurred())
	defer cl.Close()
	info, err := cl.Do(ctx, cl.B().Info().Section("server").Build()).ToString()
	Expect(err).NotTo(HaveOccurred())
	return cluster.ParseInfo(info)
}

// configSets is how many CONFIG SET commands a node has run.
func (r *run) configSets(ctx context.Context, addr string) int {
	GinkgoHelper()
	cl, err := r.nodeClient(addr)
	Expect(err).NotTo(HaveOccurred())
	defer cl.Close()
	info, err := cl.Do(ctx, cl.B().Info().Section("commandstats").Build()).ToString()
	Expect(err).NotTo(HaveOccurred())
	stat, ok := cluster.ParseInfo(info)["cmdstat_config|set"]
	if !ok {
		return 0
	}
	calls, _, _ := strings.Cut(strings.TrimPrefix(stat, "calls="), ",")
	n, err := strconv.Atoi(calls)
	Expect(err).NotTo(HaveOccurred(), "cmdstat_config|set: %s", stat)
	return n
}

// notes are the notes of the StatefulSet's Events of a reason.
func (r *run) notes(ctx context.Context, reason string) ([]string, error) {
	list := &eventsv1.EventList{}
	if err := k8s.List(ctx, list, client.InNamespace(r.ns)); err != nil {
		return nil, err
	}
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Kind == "StatefulSet" && e.Regarding.Name == r.sts.Name && e.Reason == reason {
			out = append(out, e.Note)
		}
	}
	return out, nil
}

// eventsSince lists the StatefulSet's Events of a type made after t, as
// "reason: note".
func (r *run) eventsSince(ctx context.Context, t time.Time, eventType string) []string {
	GinkgoHelper()
	list := &eventsv1.EventList{}
	Expect(k8s.List(ctx, list, client.InNamespace(r.ns))).To(Succeed())
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Kind == "StatefulSet" && e.Regarding.Name == r.sts.Name && e.Type == eventType && !e.CreationTimestamp.Time.Before(t.Truncate(time.Second)) {
			out = append(out, e.Reason+": "+e.Note)
		}
	}
	return out
}
