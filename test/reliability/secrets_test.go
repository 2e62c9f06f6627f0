package reliability

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/defaults"
	"github.com/valkey-webhook/valkey-webhook/test/framework"
)

// passwords are the passwords the suite saw, each with where it came from; every
// log line and Event of the suite is searched for them (here and in AfterSuite).
var (
	passwordsMu sync.Mutex
	passwords   = map[string]string{}
)

func rememberPassword(password, from string) {
	passwordsMu.Lock()
	defer passwordsMu.Unlock()
	passwords[password] = from
}

// leaks returns, for each remembered password found in text, where the password
// came from; a password is looked for as is and base64-encoded, as a Secret's data
// is written in JSON.
func leaks(text string) []string {
	passwordsMu.Lock()
	defer passwordsMu.Unlock()
	var out []string
	for p, from := range passwords {
		for _, form := range []string{p, base64.StdEncoding.EncodeToString([]byte(p)), base64.RawStdEncoding.EncodeToString([]byte(p))} {
			if strings.Contains(text, form) {
				out = append(out, from)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// eventsText is every Event of the cluster, of both Event APIs, as JSON.
func eventsText(ctx context.Context) (string, int) {
	GinkgoHelper()
	var b strings.Builder
	n := 0
	v1 := &eventsv1.EventList{}
	Expect(k8s.List(ctx, v1)).To(Succeed())
	core := &corev1.EventList{}
	Expect(k8s.List(ctx, core)).To(Succeed())
	for _, list := range []any{v1, core} {
		data, err := json.Marshal(list)
		Expect(err).NotTo(HaveOccurred())
		b.Write(data)
	}
	n = len(v1.Items) + len(core.Items)
	return b.String(), n
}

// secretEvents records the watch events of the Secrets of a namespace.
type secretEvents struct {
	mu     sync.Mutex
	byName map[string][]watch.EventType
	data   map[string]map[string][]byte
}

func watchSecrets(ctx context.Context) *secretEvents {
	wc, err := client.NewWithWatch(cp.Config, client.Options{Scheme: k8s.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	w, err := wc.Watch(ctx, &corev1.SecretList{}, client.InNamespace(ns))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(w.Stop)
	s := &secretEvents{byName: map[string][]watch.EventType{}, data: map[string]map[string][]byte{}}
	go func() {
		defer GinkgoRecover()
		for e := range w.ResultChan() {
			secret, ok := e.Object.(*corev1.Secret)
			if !ok {
				continue
			}
			s.mu.Lock()
			s.byName[secret.Name] = append(s.byName[secret.Name], e.Type)
			if e.Type == watch.Added {
				s.data[secret.Name] = secret.Data
			}
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *secretEvents) of(name string) []watch.EventType {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]watch.EventType(nil), s.byName[name]...)
}

var _ = Describe("Generated passwords", func() {
	It("never appear in a log line, an Event or a pod template, and an auth Secret is never overwritten, races included", func(ctx SpecContext) {
		By("running two serve processes, both running the companion controller, with every log level on")
		a := startServe("--zap-log-level=10")
		port, err := framework.FreeLocalAddr()
		Expect(err).NotTo(HaveOccurred())
		b := startServe("--port", port[strings.LastIndex(port, ":")+1:], "--zap-log-level=10")
		secrets := watchSecrets(ctx)
		DeferCleanup(func(ctx SpecContext) {
			// Leave no labeled StatefulSet behind for the controllers of later specs.
			Expect(k8s.DeleteAllOf(ctx, &appsv1.StatefulSet{}, client.InNamespace(ns))).To(Succeed())
			Expect(k8s.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(ns))).To(Succeed())
			Expect(k8s.DeleteAllOf(ctx, &corev1.ConfigMap{}, client.InNamespace(ns))).To(Succeed())
		})

		var controllerMade, userMade []string
		By("creating StatefulSets at once: both controllers race to create each auth Secret")
		var wg sync.WaitGroup
		for i := range 4 {
			name := fmt.Sprintf("race-%d", i)
			controllerMade = append(controllerMade, name)
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				Expect(k8s.Create(ctx, minimal(ns, name))).To(Succeed())
			}()
		}
		By("creating StatefulSets and, at the same moment, a Secret of the auth Secret's name of the user's own")
		userPasswords := map[string]string{}
		var userWon sync.Map
		for i := range 4 {
			name := fmt.Sprintf("user-race-%d", i)
			password := fmt.Sprintf("users-own-password-%d-%d", i, time.Now().UnixNano())
			userPasswords[name] = password
			rememberPassword(password, "the user's Secret "+name+"-auth")
			data := map[string][]byte{defaults.PasswordKey: []byte(password)}
			if i%2 == 0 {
				// An incomplete Secret: valkey-webhook warns, and never completes it.
				data[defaults.AuthConfigKey] = []byte(fmt.Sprintf("requirepass %q\n", password))
			}
			wg.Add(2)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				Expect(k8s.Create(ctx, minimal(ns, name))).To(Succeed())
			}()
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				err := k8s.Create(ctx, &corev1.Secret{ObjectMeta: objectMeta(name + "-auth"), Data: data})
				if err == nil {
					userWon.Store(name, true)
					return
				}
				Expect(apierrors.IsAlreadyExists(err)).To(BeTrue(), "creating the user's Secret: %v", err)
			}()
		}
		wg.Wait()
		for i := range 4 {
			name := fmt.Sprintf("user-race-%d", i)
			if _, ok := userWon.Load(name); ok {
				userMade = append(userMade, name)
			} else {
				controllerMade = append(controllerMade, name)
			}
		}
		all := append(append([]string(nil), controllerMade...), userMade...)

		By("updating every StatefulSet from two writers at once while both controllers reconcile")
		for _, name := range all {
			for w := range 2 {
				wg.Add(1)
				go func() {
					defer GinkgoRecover()
					defer wg.Done()
					for i := range 5 {
						sts := &appsv1.StatefulSet{ObjectMeta: objectMeta(name)}
						// No pod runs here: the scale guard, which refuses a
						// scale-down it cannot check, is turned off for these.
						patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{"example.com/writer-%d":"%d","valkey-webhook.io/scaleGuard":"off"}},"spec":{"replicas":%d}}`, w, i, 6+3*(i%2)))
						Expect(k8s.Patch(ctx, sts, client.RawPatch("application/merge-patch+json", patch))).To(Succeed())
					}
				}()
			}
		}
		wg.Wait()

		By("deleting and re-creating a StatefulSet: its Secret outlives it and is reused")
		Expect(k8s.Delete(ctx, &appsv1.StatefulSet{ObjectMeta: objectMeta(all[0])})).To(Succeed())
		Eventually(func() error {
			return k8s.Create(ctx, minimal(ns, all[0]))
		}).WithTimeout(time.Minute).WithPolling(poll).Should(Succeed())

		By("waiting until the controllers have made every companion and have nothing left to do")
		for _, name := range all {
			Eventually(func() error {
				if err := k8s.Get(ctx, key(name+"-config"), &corev1.ConfigMap{}); err != nil {
					return err
				}
				return k8s.Get(ctx, key(name+"-auth"), &corev1.Secret{})
			}).WithTimeout(time.Minute).WithPolling(poll).Should(Succeed(), name)
		}
		for _, s := range []*server{a, b} {
			Eventually(func() float64 {
				return s.metric("workqueue_depth", `name="companions"`) + s.metric("workqueue_unfinished_work_seconds", `name="companions"`)
			}).WithTimeout(time.Minute).WithPolling(poll).Should(BeZero())
		}

		By("checking that each auth Secret was created once and never changed")
		for _, name := range all {
			secret := &corev1.Secret{}
			Expect(k8s.Get(ctx, key(name+"-auth"), secret)).To(Succeed())
			Eventually(func() []watch.EventType { return secrets.of(name + "-auth") }).
				WithTimeout(30*time.Second).WithPolling(poll).Should(Equal([]watch.EventType{watch.Added}), "%s-auth: created once, never modified or deleted", name)
			password := string(secret.Data[defaults.PasswordKey])
			Expect(password).NotTo(BeEmpty())
			if want, ok := userPasswords[name]; ok && contains(userMade, name) {
				Expect(password).To(Equal(want), "the user's Secret %s-auth", name)
				Expect(secret.Labels).NotTo(HaveKey(defaults.ManagedByLabel), "valkey-webhook took over the user's Secret")
				continue
			}
			Expect(password).To(HaveLen(43), "a generated password: 256 bits, URL-safe base64")
			rememberPassword(password, "the generated Secret "+name+"-auth")
		}

		By("searching every StatefulSet, ConfigMap and Event, and both processes' logs, for the passwords")
		noLeaks(ctx, a, b)
		for _, name := range all {
			sts := &appsv1.StatefulSet{}
			Expect(k8s.Get(ctx, key(name), sts)).To(Succeed())
			spec := sts.Spec.Template.Spec
			for _, c := range append(spec.InitContainers, spec.Containers...) {
				words := append(append([]string(nil), c.Command...), c.Args...)
				for _, e := range c.Env {
					words = append(words, e.Value)
				}
				Expect(leaks(strings.Join(words, " "))).To(BeEmpty(), "%s: container %s's command, args or env values", name, c.Name)
			}
		}

		By("stopping both processes, and searching their whole logs once more")
		for _, s := range []*server{a, b} {
			s.session.Terminate()
			Eventually(s.session).WithTimeout(time.Minute).Should(gexec.Exit(0))
		}
		noLeaks(ctx, a, b)
		for _, name := range all {
			Expect(secrets.of(name+"-auth")).To(Equal([]watch.EventType{watch.Added}), "%s-auth", name)
		}
		text, events := eventsText(ctx)
		Expect(text).To(ContainSubstring("AuthSecretIncomplete"), "the incomplete user Secret is reported")
		report := fmt.Sprintf("%d auth Secrets (%d generated, %d the user's), each created once and never changed; %d passwords searched in %d log bytes and %d Events: none found",
			len(all), len(controllerMade), len(userMade), len(passwords), len(a.log())+len(b.log()), events)
		AddReportEntry("secrets", report)
		GinkgoWriter.Println("secrets:", report)
	}, SpecTimeout(4*time.Minute))
})

// noLeaks fails when a remembered password is in a StatefulSet, a ConfigMap, an
// Event, or the log of one of the servers.
func noLeaks(ctx context.Context, servers ...*server) {
	GinkgoHelper()
	for _, s := range servers {
		Expect(leaks(s.log())).To(BeEmpty(), "passwords in the log of serve")
	}
	text, _ := eventsText(ctx)
	Expect(leaks(text)).To(BeEmpty(), "passwords in Events")
	for _, list := range []client.ObjectList{&appsv1.StatefulSetList{}, &corev1.ConfigMapList{}} {
		Expect(k8s.List(ctx, list)).To(Succeed())
		data, err := json.Marshal(list)
		Expect(err).NotTo(HaveOccurred())
		Expect(leaks(string(data))).To(BeEmpty(), "passwords in %T", list)
	}
}

var _ = AfterSuite(func(ctx SpecContext) {
	if len(passwords) == 0 {
		return // the secrets spec did not run
	}
	sessionsMu.Lock()
	defer sessionsMu.Unlock()
	for _, s := range sessions {
		Expect(leaks(string(s.Out.Contents())+string(s.Err.Contents()))).To(BeEmpty(), "passwords in the log of a serve process of the suite")
	}
	text, _ := eventsText(ctx)
	Expect(leaks(text)).To(BeEmpty(), "passwords in the Events of the suite")
})

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
