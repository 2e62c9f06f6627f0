package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
	"github.com/valkey-webhook/valkey-webhook/test/framework"
)

// The paced rollout, on a real kube-apiserver. No StatefulSet controller or
// kubelet runs here, so the spec writes each StatefulSet's status as the
// StatefulSet controller would once every pod of the new revision is ready: that
// is the health the gate waits for, and the spec decides when it comes. The
// real pods' readiness is the real-node suite's.
var _ = Describe("A policy edit under running clusters rolls them one at a time", Ordered, func() {
	const ns = "team-r"
	names := []string{"alpha", "bravo", "charlie"}
	key := func(name string) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: name} }
	// probe7, a key only the pod template reads, stays in the policy from the
	// spec that rolls it on, so that later specs change the settings only.
	const probe7 = "startupProbe:\n  periodSeconds: 7\n"

	// markHealthy writes the status of a StatefulSet whose roll is over and
	// whose pods are all ready, for its current generation.
	markHealthy := func(ctx context.Context, name string) {
		GinkgoHelper()
		sts := get(ctx, ns, name)
		sts.Status = appsv1.StatefulSetStatus{
			ObservedGeneration: sts.Generation, Replicas: *sts.Spec.Replicas, ReadyReplicas: *sts.Spec.Replicas,
			UpdatedReplicas: *sts.Spec.Replicas, CurrentReplicas: *sts.Spec.Replicas, AvailableReplicas: *sts.Spec.Replicas,
			CurrentRevision: fmt.Sprintf("%s-%d", name, sts.Generation), UpdateRevision: fmt.Sprintf("%s-%d", name, sts.Generation),
		}
		Expect(k8s.Status().Update(ctx, sts)).To(Succeed())
	}
	checksum := func(ctx context.Context, name string) string {
		return get(ctx, ns, name).Spec.Template.Annotations[defaults.ChecksumAnnotation]
	}
	conf := func(ctx context.Context, name string) string {
		cm := &corev1.ConfigMap{}
		if err := k8s.Get(ctx, key(name+"-config"), cm); err != nil {
			return ""
		}
		return cm.Data[defaults.ConfigKey]
	}
	writePolicy := func(text string) string {
		path := filepath.Join(GinkgoT().TempDir(), "policy.yaml")
		Expect(os.WriteFile(path, []byte(text), 0o600)).To(Succeed())
		return path
	}
	before := map[string]string{}
	// serveWith replaces serve for the rest of the container: each spec
	// builds on the rollout the one before left, and serve's default policy
	// between two specs would begin to roll the clusters back.
	var kubeconfig string
	serveWith := func(policy string) {
		GinkgoHelper()
		replaceServe(kubeconfig, "--config", writePolicy(policy))
	}

	BeforeAll(func(ctx SpecContext) {
		kubeconfig = serveKubeconfig()
		DeferCleanup(func() { replaceServe(kubeconfig) })
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		for _, name := range names {
			sts := minimal(ns)
			sts.Name = name
			Expect(k8s.Create(ctx, sts)).To(Succeed())
		}
		DeferCleanup(func(ctx SpecContext) {
			Expect(k8s.DeleteAllOf(ctx, &appsv1.StatefulSet{}, client.InNamespace(ns))).To(Succeed())
		})
		for _, name := range names {
			Eventually(func() string { return conf(ctx, name) }).WithContext(ctx).WithTimeout(30*time.Second).WithPolling(100*time.Millisecond).
				Should(ContainSubstring("cluster-node-timeout 5000"), "%s gets its ConfigMap", name)
			markHealthy(ctx, name)
			before[name] = checksum(ctx, name)
		}
	}, NodeTimeout(2*time.Minute))

	// oneAtATime watches the rollout every 100 ms until every cluster has
	// rolled: never two started (started) and not yet marked healthy; each one
	// started, its template and ConfigMap are what it rolls to (arrived), and
	// the spec marks it healthy, which lets the next start.
	oneAtATime := func(ctx context.Context, started func(name string) bool, arrived func(g Gomega, name string)) {
		GinkgoHelper()
		rolled := map[string]bool{}
		deadline := time.Now().Add(3 * time.Minute)
		ticker := time.NewTicker(100 * time.Millisecond)
		defer ticker.Stop()
		for len(rolled) < len(names) {
			Expect(time.Now().Before(deadline)).To(BeTrue(), "the rollout did not reach every cluster in time; rolled: %v", rolled)
			var rolling []string
			for _, name := range names {
				if !rolled[name] && started(name) {
					rolling = append(rolling, name)
				}
			}
			Expect(len(rolling)).To(BeNumerically("<=", 1), "two clusters rolling at once: %v", rolling)
			if len(rolling) == 1 {
				name := rolling[0]
				By(name + " rolls, alone; its pods become ready")
				Eventually(func(g Gomega) { arrived(g, name) }).WithContext(ctx).WithTimeout(30*time.Second).WithPolling(100*time.Millisecond).
					Should(Succeed(), "%s gets what it rolls to", name)
				rolled[name] = true
				markHealthy(ctx, name)
			}
			select {
			case <-ctx.Done():
				Fail("interrupted")
			case <-ticker.C:
			}
		}
	}

	It("starts the next cluster only once the one before is healthy, and keeps the waiting ones' ConfigMaps as they were", func(ctx SpecContext) {
		serveWith("cluster:\n  nodeTimeout: 6000\n")
		// Started: its ConfigMap has the new settings (written first) or its
		// template the new checksum. A waiting one has neither.
		oneAtATime(ctx, func(name string) bool {
			return checksum(ctx, name) != before[name] || !strings.Contains(conf(ctx, name), "cluster-node-timeout 5000")
		}, func(g Gomega, name string) {
			g.Expect(checksum(ctx, name)).NotTo(Equal(before[name]), "the template of %s asks for the new settings", name)
			g.Expect(conf(ctx, name)).To(ContainSubstring("cluster-node-timeout 6000"))
		})
		for _, name := range names {
			before[name] = checksum(ctx, name)
		}
	}, SpecTimeout(4*time.Minute))

	It("rolls a policy edit of a key only the pod template reads the same way, one cluster at a time, its settings as they were", func(ctx SpecContext) {
		serveWith("cluster:\n  nodeTimeout: 6000\n" + probe7)
		period := func(name string) int32 {
			c := defaults.FindContainer(get(ctx, ns, name).Spec.Template.Spec.Containers, defaults.ValkeyContainer)
			if c == nil || c.StartupProbe == nil {
				return 0
			}
			return c.StartupProbe.PeriodSeconds
		}
		oneAtATime(ctx, func(name string) bool { return period(name) == 7 }, func(g Gomega, name string) {
			// The checksum of the 6000 settings, which the first spec left.
			g.Expect(checksum(ctx, name)).To(Equal(before[name]), "the settings of %s stay", name)
			g.Expect(conf(ctx, name)).To(ContainSubstring("cluster-node-timeout 6000"))
			sts := get(ctx, ns, name)
			g.Expect(sts.Annotations[config.HardenedWithAnnotation]).To(ContainSubstring(`"startupProbe.periodSeconds":"7"`), "the record of %s", name)
		})
		By("each cluster's RollingPods Event names the key")
		Eventually(func(g Gomega) {
			named := map[string]bool{}
			for _, e := range eventsWithReason(ctx, g, ns, "RollingPods") {
				if strings.Contains(e.Note, "what the policy keys startupProbe.periodSeconds inject") {
					named[e.Regarding.Name] = true
				}
			}
			g.Expect(named).To(HaveLen(len(names)))
		}).WithContext(ctx).WithTimeout(30 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
	}, SpecTimeout(4*time.Minute))

	It("holds the rollout behind a cluster that does not get healthy, with a warning Event", func(ctx SpecContext) {
		for _, name := range names {
			before[name] = checksum(ctx, name)
		}
		serveWith("cluster:\n  nodeTimeout: 7000\nrollout:\n  healthTimeoutSeconds: 2\n" + probe7)

		var first string
		Eventually(func() bool {
			for _, name := range names {
				if checksum(ctx, name) != before[name] {
					first = name
					return true
				}
			}
			return false
		}).WithContext(ctx).WithTimeout(time.Minute).WithPolling(100 * time.Millisecond).Should(BeTrue())

		By(first + " rolls and never gets healthy: a RolloutStalled Event, and no other cluster starts")
		Eventually(func(g Gomega) []string {
			var out []string
			for _, e := range eventsWithReason(ctx, g, ns, "RolloutStalled") {
				if e.Regarding.Name == first {
					out = append(out, e.Note)
				}
			}
			return out
		}).WithContext(ctx).WithTimeout(time.Minute).WithPolling(250 * time.Millisecond).Should(ContainElement(ContainSubstring("the rollout to the other clusters waits")))
		Consistently(func() []string {
			var started []string
			for _, name := range names {
				if name != first && checksum(ctx, name) != before[name] {
					started = append(started, name)
				}
			}
			return started
		}).WithContext(ctx).WithTimeout(25 * time.Second).WithPolling(250 * time.Millisecond).Should(BeEmpty())

		By("once " + first + " is healthy, the next one starts")
		markHealthy(ctx, first)
		Eventually(func() int {
			n := 0
			for _, name := range names {
				if name != first && checksum(ctx, name) != before[name] {
					n++
				}
			}
			return n
		}).WithContext(ctx).WithTimeout(time.Minute).WithPolling(250 * time.Millisecond).Should(Equal(1))
	}, SpecTimeout(4*time.Minute))

	It("is what `plan --kubeconfig` says before: the cluster still waiting rolls, the others are unchanged", func(ctx SpecContext) {
		var waiting []string
		for _, name := range names {
			if strings.Contains(conf(ctx, name), "cluster-node-timeout 6000") {
				waiting = append(waiting, name)
			}
		}
		Expect(waiting).To(HaveLen(1), "one cluster still waits behind the one that is not healthy")
		kubeconfig, err := cp.Kubeconfig(GinkgoT().TempDir(), "")
		Expect(err).NotTo(HaveOccurred())
		bin, err := framework.Binary()
		Expect(err).NotTo(HaveOccurred())
		cmd := exec.CommandContext(ctx, bin, "plan", "--kubeconfig", kubeconfig, "-n", ns,
			"--config", writePolicy("cluster:\n  nodeTimeout: 7000\nrollout:\n  healthTimeoutSeconds: 2\n"+probe7))
		out, err := cmd.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "%s", out)
		var want strings.Builder
		for _, name := range names {
			if name == waiting[0] {
				want.WriteString(ns + "/" + name + ": rolls its pods, in its turn of the paced rollout: valkey.conf settings change\n" +
					"    - cluster-node-timeout 6000\n    + cluster-node-timeout 7000\n  its pod template changes:\n" +
					"    replace /spec/template/metadata/annotations/valkey-webhook.io~1config-checksum\n")
			} else {
				want.WriteString(ns + "/" + name + ": unchanged\n")
			}
		}
		want.WriteString("3 labeled StatefulSets: 1 roll their pods (paced: rollout.maxClusters at a time), 0 change at their next template update, 2 unchanged\n")
		Expect(string(out)).To(Equal(want.String()))
	}, SpecTimeout(2*time.Minute))

	It("with rollout.requireGo, rolls a cluster only once its go annotation names the change it would roll to", func(ctx SpecContext) {
		confs := map[string]string{}
		for _, name := range names {
			before[name], confs[name] = checksum(ctx, name), conf(ctx, name)
		}
		serveWith("cluster:\n  nodeTimeout: 9000\nrollout:\n  requireGo: true\n" + probe7)
		unchanged := func(g Gomega) {
			for _, name := range names {
				g.Expect(checksum(ctx, name)).To(Equal(before[name]), "the checksum of %s", name)
				g.Expect(conf(ctx, name)).To(Equal(confs[name]), "the ConfigMap of %s", name)
			}
		}

		By("each cluster gets one RolloutAwaitingGo Event with the command that gives its go, and none rolls")
		const command = "kubectl annotate statefulset -n " + ns + " %s valkey-webhook.io/rollout-go="
		gos := map[string]string{}
		Eventually(func(g Gomega) {
			for _, e := range eventsWithReason(ctx, g, ns, "RolloutAwaitingGo") {
				_, rest, ok := strings.Cut(e.Note, fmt.Sprintf(command, e.Regarding.Name))
				g.Expect(ok).To(BeTrue(), "the Event gives the command: %s", e.Note)
				gos[e.Regarding.Name], _, _ = strings.Cut(rest, " ")
			}
			g.Expect(gos).To(HaveLen(len(names)))
		}).WithContext(ctx).WithTimeout(30 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
		Consistently(unchanged).WithContext(ctx).WithTimeout(12 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())

		giveGo := func(name, value string) {
			GinkgoHelper()
			patch := fmt.Sprintf(`{"metadata":{"annotations":{"valkey-webhook.io/rollout-go":%q}}}`, value)
			sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
			Expect(k8s.Patch(ctx, sts, client.RawPatch(types.MergePatchType, []byte(patch)))).To(Succeed(), "the go is admitted")
			Expect(sts.Spec.Template.Annotations[defaults.ChecksumAnnotation]).To(Equal(before[name]), "admission leaves the template as stored")
		}
		By("a go for another checksum (an earlier change's) approves nothing")
		giveGo(names[0], "sha256:"+strings.Repeat("0", 64))
		Consistently(unchanged).WithContext(ctx).WithTimeout(12 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())

		By("the go the Event named: " + names[0] + " rolls to the settings it was for, alone")
		giveGo(names[0], gos[names[0]])
		Eventually(func() string { return conf(ctx, names[0]) }).WithContext(ctx).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).
			Should(ContainSubstring("cluster-node-timeout 9000"))
		Eventually(func() string { return checksum(ctx, names[0]) }).WithContext(ctx).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).
			Should(Equal(defaults.Checksum(conf(ctx, names[0]))))
		for _, name := range names[1:] {
			Expect(checksum(ctx, name)).To(Equal(before[name]), "%s has no go", name)
		}
	}, SpecTimeout(3*time.Minute))

	It("holds a policy edit that turns TLS on while the pods run, with the way in its Event, and rolls a cluster once it is OnDelete", func(ctx SpecContext) {
		confs := map[string]string{}
		for _, name := range names {
			before[name], confs[name] = checksum(ctx, name), conf(ctx, name)
			Expect(get(ctx, ns, name).Status.Replicas).To(BeNumerically(">", 0), "%s has pods, as its status says", name)
		}
		serveWith("cluster:\n  nodeTimeout: 9000\ntls:\n  secretName: fleet-tls\n" + probe7)

		By("each cluster gets one RolloutNeedsRestart Event with the way, and keeps its settings and its template")
		Eventually(func(g Gomega) {
			held := map[string]int{}
			for _, e := range eventsWithReason(ctx, g, ns, "RolloutNeedsRestart") {
				g.Expect(e.Type).To(Equal(corev1.EventTypeWarning))
				g.Expect(e.Note).To(ContainSubstring("the policy turns TLS on while the pods run"))
				g.Expect(e.Note).To(ContainSubstring(`kubectl patch statefulset -n ` + ns + ` ` + e.Regarding.Name + ` --type merge -p '{"spec":{"updateStrategy":{"type":"OnDelete","rollingUpdate":null}}}'`))
				held[e.Regarding.Name]++
			}
			g.Expect(held).To(HaveLen(len(names)))
		}).WithContext(ctx).WithTimeout(30 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
		Consistently(func(g Gomega) {
			for _, name := range names {
				g.Expect(checksum(ctx, name)).To(Equal(before[name]), "the checksum of %s", name)
				g.Expect(conf(ctx, name)).To(Equal(confs[name]), "the ConfigMap of %s", name)
			}
		}).WithContext(ctx).WithTimeout(12 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())

		By("the way the Event gives: " + names[1] + " set to OnDelete gets the TLS settings and template, its pods left to be deleted together")
		sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: names[1]}}
		Expect(k8s.Patch(ctx, sts, client.RawPatch(types.MergePatchType,
			[]byte(`{"spec":{"updateStrategy":{"type":"OnDelete","rollingUpdate":null}}}`)))).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(conf(ctx, names[1])).To(ContainSubstring("tls-port"))
			c := defaults.FindContainer(get(ctx, ns, names[1]).Spec.Template.Spec.Containers, defaults.ValkeyContainer)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.ReadinessProbe.Exec.Command).To(ContainElement(ContainSubstring("--tls")), "the probes speak TLS")
		}).WithContext(ctx).WithTimeout(30 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
		for _, name := range []string{names[0], names[2]} {
			Expect(conf(ctx, name)).To(Equal(confs[name]), "%s, still RollingUpdate, holds", name)
		}
	}, SpecTimeout(3*time.Minute))
})

// eventsWithReason are the Events of namespace ns with reason.
func eventsWithReason(ctx context.Context, g Gomega, ns, reason string) []eventsv1.Event {
	list := &eventsv1.EventList{}
	g.Expect(k8s.List(ctx, list, client.InNamespace(ns))).To(Succeed())
	return slices.DeleteFunc(list.Items, func(e eventsv1.Event) bool { return e.Reason != reason })
}
