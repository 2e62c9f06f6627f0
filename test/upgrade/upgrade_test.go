// Package upgrade checks this release against the objects an earlier release
// stored: testdata/<commit>/ holds its StatefulSets as its admission wrote them
// and their ConfigMaps as its controller wrote them (its golden files, taken at
// that commit). An update that changes nothing keeps each StatefulSet as stored
// (TestNoChangeUpdateKeepsTemplate, pure), and the companion controller of this
// release, started over them on a real kube-apiserver with no webhook in the
// way, patches none of them: no pod would roll on the upgrade.
package upgrade

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/yaml"

	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/controller"
	"github.com/valkey-webhook/valkey-webhook/defaults"
	"github.com/valkey-webhook/valkey-webhook/test/framework"
	"github.com/valkey-webhook/valkey-webhook/webhook"
)

// releases are the earlier releases whose stored objects are fixtures here, by
// the commit their golden files were taken at.
var releases = []string{"b60e576"}

// stored reads the StatefulSets of one release's fixtures, by file name.
func stored(tb interface {
	Helper()
	Fatal(...any)
	Fatalf(string, ...any)
}, release string) map[string]*appsv1.StatefulSet {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", release, "statefulsets", "*.yaml"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no fixtures in testdata/%s/statefulsets: %v", release, err)
	}
	out := map[string]*appsv1.StatefulSet{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		sts := &appsv1.StatefulSet{}
		if err := yaml.UnmarshalStrict(data, sts); err != nil {
			tb.Fatalf("%s: %v", f, err)
		}
		if sts.Namespace == "" {
			sts.Namespace = metav1.NamespaceDefault
		}
		out[filepath.Base(f)] = sts
	}
	return out
}

// storedConfigMap reads the ConfigMap of one release's fixture file name.
func storedConfigMap(release, file string) *corev1.ConfigMap {
	GinkgoHelper()
	data, err := os.ReadFile(filepath.Join("testdata", release, "configmaps", file))
	Expect(err).NotTo(HaveOccurred())
	cm := &corev1.ConfigMap{}
	Expect(yaml.UnmarshalStrict(data, cm)).To(Succeed(), file)
	if cm.Namespace == "" {
		cm.Namespace = metav1.NamespaceDefault
	}
	return cm
}

// TestNoChangeUpdateKeepsTemplate: an UPDATE that sends a stored object back as
// it is (kubectl apply of the same manifest, a controller's no-op write) leaves
// the whole object as the earlier release stored it.
func TestNoChangeUpdateKeepsTemplate(t *testing.T) {
	for _, release := range releases {
		for name, old := range stored(t, release) {
			t.Run(release+"/"+name, func(t *testing.T) {
				sts := old.DeepCopy()
				if err := webhook.Mutate(sts, old, config.Default()); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(old, sts); diff != "" {
					t.Errorf("the update changed the stored object (-stored +updated):\n%s", diff)
				}
			})
		}
	}
}

func TestUpgrade(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "this release over the objects an earlier release stored")
}

const (
	controllerUser = "valkey-webhook"
	systemNS       = "valkey-webhook-system"
	timeout        = time.Minute
	poll           = 200 * time.Millisecond
)

var _ = Describe("The companion controller started over an earlier release's StatefulSets", func() {
	for _, release := range releases {
		It("patches none of them ("+release+"), while it does patch one whose checksum is stale", func(ctx SpecContext) {
			cp, err := framework.Start(framework.Options{CertManagerCRDs: true})
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(cp.Stop)
			k8s := cp.Client

			By("storing " + release + "'s StatefulSets and ConfigMaps as that release wrote them, no webhook in the way")
			fixtures := stored(GinkgoT(), release)
			before := map[string]*appsv1.StatefulSet{}
			conf := map[string]string{}
			for name, sts := range fixtures {
				Expect(client.IgnoreAlreadyExists(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: sts.Namespace}}))).To(Succeed())
				Expect(k8s.Create(ctx, sts)).To(Succeed(), name)
				before[name] = sts.DeepCopy()
				cm := storedConfigMap(release, name)
				Expect(controllerutil.SetControllerReference(sts, cm, k8s.Scheme())).To(Succeed())
				Expect(k8s.Create(ctx, cm)).To(Succeed(), name)
				conf[name] = cm.Data[defaults.ConfigKey]
			}
			By("and a control: the minimal one again, its config checksum stale, which the controller must patch")
			control := fixtures["minimal.yaml"].DeepCopy()
			control.ObjectMeta = metav1.ObjectMeta{Name: "control", Namespace: control.Namespace, Labels: control.Labels, Annotations: control.Annotations}
			control.Spec.Template.Annotations[defaults.ChecksumAnnotation] = "sha256:stale"
			Expect(k8s.Create(ctx, control)).To(Succeed())

			By("starting this release's serve, as a user bound to exactly its roles")
			kubeconfig, err := cp.ControllerUser(ctx, GinkgoT().TempDir(), controllerUser, systemNS)
			Expect(err).NotTo(HaveOccurred())
			server, _, err := cp.Serve(kubeconfig, "--leader-election-namespace", systemNS, "--namespace", systemNS)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(func() {
				server.Terminate()
				Eventually(server).WithTimeout(30 * time.Second).Should(gexec.Exit(0))
			})

			By("the control is patched: the controller reached these objects and acts on them")
			Eventually(func(g Gomega) {
				got := &appsv1.StatefulSet{}
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(control), got)).To(Succeed())
				g.Expect(got.Spec.Template.Annotations[defaults.ChecksumAnnotation]).NotTo(Equal("sha256:stale"))
			}).WithContext(ctx).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

			By("every earlier StatefulSet reconciled (its headless Service made), stored as it was: not patched, no Rolling event; its ConfigMap keeps the text its pods read")
			for name, sts := range before {
				Eventually(func() error {
					return k8s.Get(ctx, client.ObjectKey{Namespace: sts.Namespace, Name: defaults.GoverningServiceName(sts)}, &corev1.Service{})
				}).WithContext(ctx).WithTimeout(timeout).WithPolling(poll).Should(Succeed(), "%s: its headless Service", name)
			}
			// The controller reconciles each object on its own: a patch of one
			// would come within moments of its ConfigMap. Watch them a while.
			Consistently(func(g Gomega) {
				for name, sts := range before {
					got := &appsv1.StatefulSet{}
					g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(sts), got)).To(Succeed())
					g.Expect(got.ResourceVersion).To(Equal(sts.ResourceVersion), "%s was written: %s", name, cmp.Diff(sts.Spec, got.Spec))
				}
			}).WithContext(ctx).WithTimeout(5 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
			for name, sts := range before {
				Expect(rollingEvents(ctx, k8s, sts)).To(BeZero(), "%s: a Rolling event", name)
				cm := &corev1.ConfigMap{}
				Expect(k8s.Get(ctx, client.ObjectKey{Namespace: sts.Namespace, Name: defaults.ConfigMapName(sts)}, cm)).To(Succeed())
				Expect(cm.Data[defaults.ConfigKey]).To(Equal(conf[name]), "%s: the ConfigMap's text", name)
			}
			Expect(rollingEvents(ctx, k8s, control)).To(BeNumerically(">", 0), "the control's Rolling event")
		}, SpecTimeout(5*time.Minute))
	}
})

// rollingEvents counts the Rolling events of one StatefulSet.
func rollingEvents(ctx context.Context, k8s client.Client, sts *appsv1.StatefulSet) int {
	GinkgoHelper()
	list := &eventsv1.EventList{}
	Expect(k8s.List(ctx, list, client.InNamespace(sts.Namespace))).To(Succeed())
	n := 0
	for _, e := range list.Items {
		if e.Regarding.Kind == "StatefulSet" && e.Regarding.Name == sts.Name && e.Reason == controller.ReasonRolling {
			n++
		}
	}
	return n
}
