//go:build realnode

package realnode

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/controller"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// variantComment is in the first line of the valkey.conf that the test variant
// valkey-webhook:comment-changed renders (hack/node/images): this checkout with
// only that comment changed, standing for a release that words its rendering
// differently and makes the same settings.
const variantComment = "(test variant: comment changed)"

// leaseName is serve's leader-election Lease (cmd/valkey-webhook/serve.go).
const leaseName = "valkey-webhook.valkey-webhook.io"

var _ = Describe("day 2 across a fleet: a webhook upgrade that renders the same settings, a policy edit, TLS turned on", Ordered, func() {
	const ns = "fleet"
	var clusters []*valkeyCluster
	for _, name := range []string{"alpha", "bravo", "charlie"} {
		clusters = append(clusters, &valkeyCluster{ns: ns, name: name, pods: 6, keys: 300})
	}

	BeforeAll(func(ctx SpecContext) {
		By("no namespace of an earlier spec still terminating: the fleet is these three clusters")
		Eventually(func(g Gomega) {
			list := &corev1.NamespaceList{}
			g.Expect(k8s.List(ctx, list)).To(Succeed())
			for _, n := range list.Items {
				g.Expect(n.Status.Phase).NotTo(Equal(corev1.NamespaceTerminating), "namespace %s", n.Name)
			}
		}).WithContext(ctx).WithTimeout(2 * settle).WithPolling(time.Second).Should(Succeed())

		// The namespace goes before the webhook's image is put back
		// (DeferCleanup runs last in, first out).
		DeferCleanup(setWebhookImage, images["valkey-webhook"])
		createNamespace(ctx, ns)
		for _, c := range clusters {
			// A quarter of the example's memory: the node runs other specs'
			// clusters too, and these three hold a few keys each.
			manifest := strings.ReplaceAll(minimalExample(ns), "cache", c.name)
			manifest = strings.Replace(manifest, "memory: 1Gi", "memory: 256Mi", 1)
			Expect(manifest).To(ContainSubstring("memory: 256Mi"))
			mustRun(ctx, manifest, "apply", "-f", "-")
		}
		for _, c := range clusters {
			c.readPassword(ctx)
			c.expectHealthy(ctx)
			c.expectEvent(ctx, controller.ReasonClusterFormed)
			c.writeKeys(ctx)
		}
	})

	It("upgrades valkey-webhook to a build whose valkey.conf differs only in a comment: no StatefulSet, ConfigMap or pod changes", func(ctx SpecContext) {
		before := fleetState(ctx)
		pods := podUIDs(ctx, clusters)

		By("kubectl set image to " + images["valkey-webhook-comment-changed"] + ", the leader now one of its pods")
		setWebhookImage(ctx, images["valkey-webhook-comment-changed"])
		leader := expectLeaderRuns(ctx, images["valkey-webhook-comment-changed"])

		By("the new leader's controllers started, then 30 s of nothing changing")
		Eventually(func() string { return kubectl(ctx, "-n", webhookNS, "logs", leader, "--tail=-1") }).
			WithContext(ctx).WithTimeout(settle).WithPolling(time.Second).Should(ContainSubstring("Starting workers"))
		Consistently(func(g Gomega) {
			now := fleetState(ctx)
			for key, was := range before {
				if is, ok := now[key]; ok {
					g.Expect(is.stored()).To(Equal(was.stored()), "labeled StatefulSet %s", key)
				}
			}
			g.Expect(podUIDs(ctx, clusters)).To(Equal(pods), "the pods of %s", ns)
		}).WithContext(ctx).WithTimeout(30 * time.Second).WithPolling(time.Second).Should(Succeed())
		Expect(fleetState(ctx)).To(HaveLen(len(before)), "the fleet's labeled StatefulSets")
		AddReportEntry("the fleet across the upgrade", fmt.Sprintf("%d labeled StatefulSets, none changed; leader %s", len(before), leader))
	})

	It("edits the policy (cluster.nodeTimeout, and startupProbe.failureThreshold, which only the pod template reads) and restarts serve: the fleet rolls one cluster at a time, each healthy before the next starts", func(ctx SpecContext) {
		before := fleetState(ctx)
		checksums := map[string]string{}
		for key, s := range before {
			checksums[key] = s.checksum
		}

		By("cluster.nodeTimeout: 6000 and startupProbe.failureThreshold: 40 in the policy ConfigMap, then kubectl rollout restart deployment/valkey-webhook")
		// It stays for the rest of the suite: putting it back would roll the fleet again.
		editPolicy(ctx, "cluster:\n  nodeTimeout: 6000\nstartupProbe:\n  failureThreshold: 40\n")
		keepWebhookLogs(ctx)
		mustRun(ctx, "", "-n", webhookNS, "rollout", "restart", "deployment/valkey-webhook")

		By("every 500 ms: never two clusters started and not done at once")
		started, done := map[string]time.Time{}, map[string]time.Time{}
		Eventually(func(g Gomega) {
			now := fleetState(ctx)
			var rolling []string
			for key, s := range now {
				if _, ok := checksums[key]; !ok || s.checksum == checksums[key] {
					continue
				}
				if _, ok := started[key]; !ok {
					started[key] = time.Now()
				}
				if !s.done {
					rolling = append(rolling, key)
				} else if _, ok := done[key]; !ok {
					done[key] = time.Now()
				}
			}
			if len(rolling) > 1 {
				slices.Sort(rolling)
				StopTrying(fmt.Sprintf("clusters rolling at once: %v", rolling)).Now()
			}
			g.Expect(done).To(HaveLen(len(checksums)), "clusters rolled and done")
		}).WithContext(ctx).WithTimeout(20 * time.Minute).WithPolling(500 * time.Millisecond).Should(Succeed())
		AddReportEntry("the rollout, in order", timeline(started, done))

		By("each cluster started only after the one before was done")
		order := slices.SortedFunc(maps.Keys(started), func(a, b string) int { return started[a].Compare(started[b]) })
		for i := 1; i < len(order); i++ {
			Expect(started[order[i]]).To(BeTemporally(">=", done[order[i-1]]), "%s started before %s was done", order[i], order[i-1])
		}

		By("the new settings in every ConfigMap, rendered by the variant, the others waited with an Event, every key read back")
		for key := range checksums {
			nsName, name, _ := strings.Cut(key, "/")
			cm := &corev1.ConfigMap{}
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: nsName, Name: name + "-config"}, cm)).To(Succeed())
			Expect(cm.Data[defaults.ConfigKey]).To(ContainSubstring("cluster-node-timeout 6000\n"), key)
			Expect(cm.Data[defaults.ConfigKey]).To(ContainSubstring(variantComment), "%s: rendered by the test variant, the leader", key)
		}
		Expect(waitedWithEvent(ctx, checksums)).To(BeNumerically(">=", len(checksums)-1), "clusters that got a %s Event", controller.ReasonRolloutWaiting)
		By("the same roll brought the template key: every pod runs the startup probe of the new policy")
		for _, c := range clusters {
			pods := &corev1.PodList{}
			Expect(k8s.List(ctx, pods, client.InNamespace(c.ns), client.MatchingLabels{defaults.StatefulSetNameLabel: c.name})).To(Succeed())
			Expect(pods.Items).To(HaveLen(c.pods), c.name)
			for _, pod := range pods.Items {
				v := defaults.FindContainer(pod.Spec.Containers, defaults.ValkeyContainer)
				Expect(v).NotTo(BeNil(), pod.Name)
				Expect(v.StartupProbe).NotTo(BeNil(), pod.Name)
				Expect(v.StartupProbe.FailureThreshold).To(BeEquivalentTo(40), "%s/%s", c.ns, pod.Name)
			}
		}
		for _, c := range clusters {
			c.expectHealthy(ctx)
			c.readKeys(ctx)
		}
	})

	It("refuses TLS turned on by annotation while the pods run, and the way its message gives works: OnDelete, every pod restarted at once, healthy over TLS with every key", func(ctx SpecContext) {
		c := clusters[2]
		headless := fmt.Sprintf("%s-headless.%s.svc.cluster.local", c.name, c.ns)
		files := createTLSSecret(ctx, c)
		tlsOn := "valkey-webhook.io/tls.secretName=" + c.name + "-tls"

		By("kubectl annotate " + tlsOn + ": refused, with the way to do it")
		_, errOut, err := run(ctx, "", "-n", c.ns, "annotate", "statefulset", c.name, tlsOn)
		Expect(err).To(HaveOccurred())
		Expect(errOut).To(And(ContainSubstring("metadata.annotations[valkey-webhook.io/tls.secretName]"),
			ContainSubstring("turns TLS on while the pods run"), ContainSubstring("spec.updateStrategy.type: OnDelete")))

		By("in one update: the annotation and updateStrategy OnDelete; then every pod deleted together")
		uids := podUIDs(ctx, []*valkeyCluster{c})
		mustRun(ctx, "", "-n", c.ns, "patch", "statefulset", c.name, "--type=merge", "-p",
			fmt.Sprintf(`{"metadata":{"annotations":{"valkey-webhook.io/tls.secretName":%q}},"spec":{"updateStrategy":{"type":"OnDelete","rollingUpdate":null}}}`, c.name+"-tls"))
		Expect(podUIDs(ctx, []*valkeyCluster{c})).To(Equal(uids), "OnDelete: no pod replaced before they are deleted")
		mustRun(ctx, "", "-n", c.ns, "delete", "pods", "-l", "app="+c.name, "--wait=false")
		restarted := time.Now()

		By("every pod back over TLS: probes, the cluster and every key, verified for the pods' names")
		c.tls = files.ClientConfig()
		c.tls.ServerName = c.name + "-0." + headless
		Eventually(func(g Gomega) {
			now := podUIDs(ctx, []*valkeyCluster{c})
			g.Expect(now).To(HaveLen(c.pods))
			for name, uid := range now {
				g.Expect(uid).NotTo(Equal(uids[name]), "%s was replaced", name)
			}
		}).WithContext(ctx).WithTimeout(settle).WithPolling(time.Second).Should(Succeed())
		c.expectHealthy(ctx)
		AddReportEntry("TLS turned on by restarting every pod at once", fmt.Sprintf("healthy over TLS %.0f s after the pods were deleted", time.Since(restarted).Seconds()))
		c.readKeys(ctx)
		Eventually(func() (string, error) {
			return execIn(ctx, c.ns, c.name+"-0", "valkey", "wget -qO- http://127.0.0.1:9121/metrics")
		}).WithContext(ctx).WithTimeout(settle).Should(ContainSubstring("redis_up 1"), "the exporter reaches the node over TLS")

		By("updateStrategy back to RollingUpdate: admitted, no pod replaced")
		uids = podUIDs(ctx, []*valkeyCluster{c})
		mustRun(ctx, "", "-n", c.ns, "patch", "statefulset", c.name, "--type=merge", "-p", `{"spec":{"updateStrategy":{"type":"RollingUpdate"}}}`)
		Consistently(func() map[string]string { return podUIDs(ctx, []*valkeyCluster{c}) }).
			WithContext(ctx).WithTimeout(10 * time.Second).WithPolling(time.Second).Should(Equal(uids))
	})
})

// stsState is what the fleet specs compare of one labeled StatefulSet.
type stsState struct {
	generation int64
	checksum   string
	// config is the resourceVersion of its ConfigMap.
	config string
	// done is the rollout gate's "healthy" (controller/rollout.go): the
	// generation observed, every pod of the update revision and ready.
	done bool
}

// stored is the state without done: what an upgrade must leave as it is.
func (s stsState) stored() stsState {
	s.done = false
	return s
}

// fleetState is every labeled StatefulSet the companion controller acts on and
// that is not being deleted, by namespace/name. It acts on none in kube-system
// (where the hardened spec's cluster, labeled, runs without the webhook) or in
// its own namespace.
func fleetState(ctx context.Context) map[string]stsState {
	GinkgoHelper()
	list := &appsv1.StatefulSetList{}
	Expect(k8s.List(ctx, list, client.MatchingLabels{"valkey-webhook.io/cluster": "enabled"})).To(Succeed())
	out := map[string]stsState{}
	for _, s := range list.Items {
		if !s.DeletionTimestamp.IsZero() || s.Namespace == metav1.NamespaceSystem || s.Namespace == webhookNS {
			continue
		}
		cm := &corev1.ConfigMap{}
		Expect(client.IgnoreNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: s.Namespace, Name: defaults.ConfigMapName(&s)}, cm))).To(Succeed())
		st := s.Status
		want := int32(1)
		if s.Spec.Replicas != nil {
			want = *s.Spec.Replicas
		}
		out[s.Namespace+"/"+s.Name] = stsState{
			generation: s.Generation,
			checksum:   s.Spec.Template.Annotations[defaults.ChecksumAnnotation],
			config:     cm.ResourceVersion,
			done: st.ObservedGeneration >= s.Generation && st.CurrentRevision == st.UpdateRevision &&
				st.UpdatedReplicas == want && st.ReadyReplicas == want && st.Replicas == want,
		}
	}
	return out
}

// podUIDs are the UIDs of the clusters' pods, by name.
func podUIDs(ctx context.Context, clusters []*valkeyCluster) map[string]string {
	GinkgoHelper()
	out := map[string]string{}
	for _, c := range clusters {
		for name, p := range c.podsByName(ctx) {
			out[name] = string(p.UID)
		}
	}
	return out
}

// setWebhookImage sets valkey-webhook's image (kubectl set image) and waits for
// the Deployment's roll, keeping the logs of the pods it replaces.
func setWebhookImage(ctx context.Context, image string) {
	GinkgoHelper()
	keepWebhookLogs(ctx)
	mustRun(ctx, "", "-n", webhookNS, "set", "image", "deployment/valkey-webhook", "valkey-webhook="+image)
	mustRun(ctx, "", "-n", webhookNS, "rollout", "status", "deployment/valkey-webhook", "--timeout=5m")
}

// expectLeaderRuns waits until serve's Lease is held by a running pod of image
// and returns that pod's name.
func expectLeaderRuns(ctx context.Context, image string) string {
	GinkgoHelper()
	var leader string
	Eventually(func(g Gomega) {
		lease := &coordinationv1.Lease{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: webhookNS, Name: leaseName}, lease)).To(Succeed())
		g.Expect(lease.Spec.HolderIdentity).NotTo(BeNil())
		// controller-runtime's identity: the pod's hostname (its name), "_", a UUID.
		name, _, _ := strings.Cut(*lease.Spec.HolderIdentity, "_")
		pod := &corev1.Pod{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: webhookNS, Name: name}, pod)).To(Succeed())
		g.Expect(pod.DeletionTimestamp.IsZero()).To(BeTrue(), "leader %s is not being deleted", name)
		g.Expect(pod.Spec.Containers[0].Image).To(Equal(image), "leader %s", name)
		leader = name
	}).WithContext(ctx).WithTimeout(settle).WithPolling(time.Second).Should(Succeed())
	return leader
}

// editPolicy appends yaml to the policy in valkey-webhook's policy ConfigMap.
func editPolicy(ctx context.Context, yaml string) {
	GinkgoHelper()
	cm := &corev1.ConfigMap{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: webhookNS, Name: "valkey-webhook-policy"}, cm)).To(Succeed())
	Expect(cm.Data["policy.yaml"]).NotTo(ContainSubstring(strings.SplitN(yaml, "\n", 2)[0]), "the policy has no such section yet")
	cm.Data["policy.yaml"] += yaml
	Expect(k8s.Update(ctx, cm)).To(Succeed())
}

// waitedWithEvent counts the StatefulSets (namespace/name keys) that got a
// RolloutWaiting Event.
func waitedWithEvent(ctx context.Context, keys map[string]string) int {
	GinkgoHelper()
	list := &eventsv1.EventList{}
	Expect(k8s.List(ctx, list)).To(Succeed())
	waited := map[string]bool{}
	for _, e := range list.Items {
		key := e.Regarding.Namespace + "/" + e.Regarding.Name
		if _, ok := keys[key]; ok && e.Regarding.Kind == "StatefulSet" && e.Reason == controller.ReasonRolloutWaiting {
			waited[key] = true
		}
	}
	return len(waited)
}

// timeline is the rollout as lines "start done cluster", seconds since the first start.
func timeline(started, done map[string]time.Time) string {
	order := slices.SortedFunc(maps.Keys(started), func(a, b string) int { return started[a].Compare(started[b]) })
	if len(order) == 0 {
		return ""
	}
	first := started[order[0]]
	var b strings.Builder
	for _, k := range order {
		fmt.Fprintf(&b, "%6.1fs %6.1fs %s\n", started[k].Sub(first).Seconds(), done[k].Sub(first).Seconds(), k)
	}
	return b.String()
}
