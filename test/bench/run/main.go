// Command run is `make bench`: it measures valkey-webhook's admission webhooks
// against the floor, the cheapest webhook controller-runtime can serve, on the same
// machine in the same run, then StatefulSet creates through a real kube-apiserver
// with and without the webhooks. docs/benchmarks.md explains the method and holds
// the figures.
//
// It starts an envtest control plane with the webhook configurations installed,
// `valkey-webhook serve` against it (test/framework), and the floor
// (test/bench/floor) with the same serving certificate; then, at each concurrency,
// it runs rounds in which every payload goes to the floor and to serve, one right
// after the other, the order swapped every other round, so that the machine's drift
// hits both. The last line printed is machine-readable:
//
//	bench: mutate_p99_ratio=<x> validate_p99_ratio=<y> throughput_ratio=<z> rss_mib=<n>
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega/gexec"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"github.com/valkey-webhook/valkey-webhook/defaults"
	"github.com/valkey-webhook/valkey-webhook/test/bench"
	"github.com/valkey-webhook/valkey-webhook/test/framework"
	"github.com/valkey-webhook/valkey-webhook/webhook"
)

// The namespaces of the end-to-end part: valkey-webhook's webhooks act in the
// first only; the floor's webhooks, registered by the benchmark, act in the second
// only; no webhook acts in the third.
const (
	serveNamespace = "e2e-serve"
	floorNamespace = "e2e-floor"
	noneNamespace  = "e2e-none"
)

type options struct {
	root        string
	rounds      int
	duration    time.Duration
	warmup      int
	concurrency []int
	creates     int
	http2       bool
	keep        bool
}

func main() {
	o := options{}
	var conc string
	flag.StringVar(&o.root, "root", ".", "root of the repository (for the examples)")
	flag.IntVar(&o.rounds, "rounds", 7, "rounds per concurrency; each round sends every payload to the floor and to serve")
	flag.DurationVar(&o.duration, "duration", time.Second, "length of each measured run")
	flag.IntVar(&o.warmup, "warmup", 10, "unmeasured requests per worker before each run")
	flag.StringVar(&conc, "concurrency", "1,50", "comma-separated concurrencies; the ratios are taken at the largest")
	flag.IntVar(&o.creates, "creates", 500, "StatefulSet creates through the API server in each of three namespaces: with valkey-webhook's webhooks, with the floor's, with none (0: skip)")
	flag.BoolVar(&o.http2, "http2", false, "send over one HTTP/2 connection per server, as the API server does, instead of one HTTP/1.1 connection per worker")
	flag.BoolVar(&o.keep, "keep", false, "keep the directory with the processes' output and the payloads also when the run succeeds")
	flag.Parse()
	if o.rounds < 1 || o.duration <= 0 || o.creates < 0 {
		fail(errors.New("-rounds and -duration must be positive, -creates at least 0"))
	}
	for f := range strings.SplitSeq(conc, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 {
			fail(fmt.Errorf("-concurrency %q: want positive integers", conc))
		}
		o.concurrency = append(o.concurrency, c)
	}
	slices.Sort(o.concurrency)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	line, err := run(ctx, o)
	stop()
	if err != nil {
		fail(err)
	}
	fmt.Println(line)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func run(ctx context.Context, o options) (_ string, err error) {
	logDir, err := os.MkdirTemp("", "valkey-webhook-bench-")
	if err != nil {
		return "", err
	}
	logFile, err := os.Create(filepath.Join(logDir, "processes.log"))
	if err != nil {
		return "", err
	}
	defer func() {
		_ = logFile.Close()
		if err == nil && !o.keep {
			err = os.RemoveAll(logDir)
		} else {
			fmt.Fprintf(os.Stderr, "bench: the output of serve and the floor, and the payloads sent, are in %s\n", logDir)
		}
	}()
	// test/framework writes the output of the processes it starts to GinkgoWriter,
	// which outside a Ginkgo suite prints to stdout; send it to the log file, with
	// this process's own controller-runtime log.
	ginkgo.GinkgoWriter = logWriter{logFile}
	ctrl.SetLogger(zap.New(zap.WriteTo(logFile)))

	fmt.Printf("valkey-webhook benchmark: %s, %d CPUs (GOMAXPROCS %d), %s %s/%s\n",
		cpuModel(), runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH)

	cp, err := framework.Start(framework.Options{Webhooks: true})
	if err != nil {
		return "", err
	}
	defer func() { err = errors.Join(err, cp.Stop()) }()
	for _, ns := range []string{serveNamespace, floorNamespace, noneNamespace} {
		if err := cp.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return "", err
		}
	}
	if err := excludeNamespaces(ctx, cp.Client, floorNamespace, noneNamespace); err != nil {
		return "", err
	}
	if err := until(ctx, "the API server to stop calling valkey-webhook in "+floorNamespace+" and "+noneNamespace, func() error {
		for _, ns := range []string{floorNamespace, noneNamespace} {
			sts, err := dryRunProbe(ctx, cp.Client, ns)
			if err != nil {
				return err
			}
			if _, ok := sts.Spec.Template.Annotations[defaults.ChecksumAnnotation]; ok {
				return fmt.Errorf("a StatefulSet created in %s is still hardened", ns)
			}
		}
		return nil
	}); err != nil {
		return "", err
	}

	kubeconfig, err := cp.Kubeconfig(logDir, "")
	if err != nil {
		return "", err
	}
	serve, _, err := cp.Serve(kubeconfig, "--leader-elect=false")
	if err != nil {
		return "", err
	}
	defer func() { err = errors.Join(err, terminate(serve, "serve")) }()
	wio := &cp.Env.WebhookInstallOptions
	floor, floorURL, err := startFloor(wio.LocalServingCertDir)
	if err != nil {
		return "", err
	}
	defer func() { err = errors.Join(err, terminate(floor, "floor")) }()
	serveURL := "https://" + net.JoinHostPort(wio.LocalServingHost, strconv.Itoa(wio.LocalServingPort))
	if o.creates > 0 {
		if err := registerFloor(ctx, cp.Client, floorURL, wio.LocalServingCAData); err != nil {
			return "", err
		}
	}

	payloads, err := bench.Payloads(o.root)
	if err != nil {
		return "", err
	}
	fmt.Print("payloads, as the API server sends them (after its defaulting, with managedFields):")
	for i := range payloads {
		if payloads[i].Object, err = apiDefaulted(ctx, cp.Client, payloads[i].Object); err != nil {
			return "", fmt.Errorf("defaulting the %s payload: %w", payloads[i].Name, err)
		}
		fmt.Printf(" %s %.1f KiB;", payloads[i].Name, float64(len(payloads[i].Object))/1024)
		if err := os.WriteFile(filepath.Join(logDir, payloads[i].Name+".json"), payloads[i].Object, 0o644); err != nil {
			return "", err
		}
	}
	fmt.Println()

	load, err := runLoad(ctx, o, payloads, wio.LocalServingCAData, floorURL, serveURL)
	if err != nil {
		return "", err
	}
	// The peak under load: read before the end-to-end part, whose thousands of
	// StatefulSets and companion objects fill the controller's caches.
	loadHWM, err := peakRSS(serve.Command.Process.Pid)
	if err != nil {
		return "", err
	}
	floorHWM, err := peakRSS(floor.Command.Process.Pid)
	if err != nil {
		return "", err
	}
	fmt.Printf("\npeak RSS (VmHWM) after the load: serve %.1f MiB, floor %.1f MiB\n", mib(loadHWM), mib(floorHWM))

	if o.creates > 0 {
		if err := endToEnd(ctx, cp, o.root, o.creates); err != nil {
			return "", err
		}
		endHWM, err := peakRSS(serve.Command.Process.Pid)
		if err != nil {
			return "", err
		}
		fmt.Printf("peak RSS (VmHWM) of serve after the creates too (%d StatefulSets and their companions in its caches): %.1f MiB\n", 3*(o.creates+20), mib(endHWM))
	}

	if errs := load.errors(); errs > 0 {
		return "", fmt.Errorf("%d requests got a wrong answer or none; the first: %v", errs, load.firstError())
	}
	top := o.concurrency[len(o.concurrency)-1]
	mutate, validate := load.ratios(top, "minimal"), load.ratios(top, "unsafe")
	fmt.Printf("\nat concurrency %d, medians over the rounds: mutate_p99_ratio = p99 of serve / p99 of the floor, minimal payload;\n"+
		"validate_p99_ratio: the same, unsafe payload; throughput_ratio = the smaller of the two rps ratios (serve / floor);\n"+
		"rss_mib = peak RSS of serve after the load\n", top)
	return fmt.Sprintf("bench: mutate_p99_ratio=%.2f validate_p99_ratio=%.2f throughput_ratio=%.2f rss_mib=%d",
		mutate.p99, validate.p99, min(mutate.rps, validate.rps), int(math.Ceil(mib(loadHWM)))), nil
}

// key names one measured series: a concurrency, a payload, and floor or serve.
type key struct {
	concurrency int
	payload     string
	floor       bool
}

type loadResults map[key][]bench.Result

type ratio struct{ p99, rps float64 }

// ratios compares serve with the floor on one payload: in each round the two ran
// one right after the other, so each round gives a ratio that the machine's drift
// hardly touches; the median over the rounds also drops a round that something
// else on the machine disturbed.
func (l loadResults) ratios(concurrency int, payload string) ratio {
	floor, serve := l[key{concurrency, payload, true}], l[key{concurrency, payload, false}]
	var p99, rps []float64
	for i := range min(len(floor), len(serve)) {
		p99 = append(p99, float64(serve[i].Percentile(99))/float64(floor[i].Percentile(99)))
		rps = append(rps, serve[i].RPS()/floor[i].RPS())
	}
	return ratio{p99: median(p99), rps: median(rps)}
}

// median is the middle value (the mean of the two middle ones for an even count).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	xs = slices.Sorted(slices.Values(xs))
	if n := len(xs); n%2 == 0 {
		return (xs[n/2-1] + xs[n/2]) / 2
	}
	return xs[len(xs)/2]
}

func (l loadResults) errors() int {
	n := 0
	for _, rs := range l {
		n += bench.Merge(rs...).Errors
	}
	return n
}

func (l loadResults) firstError() error {
	for _, rs := range l {
		if err := bench.Merge(rs...).FirstError; err != nil {
			return err
		}
	}
	return nil
}

// runLoad runs the rounds and prints each run, then the pooled figures.
func runLoad(ctx context.Context, o options, payloads []bench.Payload, caPEM []byte, floorURL, serveURL string) (loadResults, error) {
	results := loadResults{}
	for _, c := range o.concurrency {
		client, err := bench.NewClient(caPEM, c, o.http2)
		if err != nil {
			return nil, err
		}
		targets := map[key]bench.Target{}
		for _, p := range payloads {
			for _, isFloor := range []bool{true, false} {
				url := serveURL
				if isFloor {
					url = floorURL
				}
				t, err := p.Target(url, isFloor)
				if err != nil {
					return nil, err
				}
				if err := bench.Verify(ctx, client, t); err != nil {
					return nil, fmt.Errorf("%s payload, %s: %w", p.Name, server(isFloor), err)
				}
				targets[key{c, p.Name, isFloor}] = t
			}
		}
		fmt.Printf("\nconcurrency %d: %d rounds of %s per payload and server\n", c, o.rounds, o.duration)
		for round := range o.rounds {
			for _, p := range payloads {
				order := []bool{true, false}
				if round%2 == 1 {
					order = []bool{false, true}
				}
				for _, isFloor := range order {
					k := key{c, p.Name, isFloor}
					r := bench.Run(ctx, client, targets[k], bench.Options{Concurrency: c, Duration: o.duration, Warmup: o.warmup})
					if err := ctx.Err(); err != nil {
						return nil, err
					}
					results[k] = append(results[k], r)
					fmt.Printf("  round %d  %-9s %-8s %-5s %s\n", round+1, p.Name, p.Webhook, server(isFloor), r)
				}
			}
		}
		client.CloseIdleConnections()
	}

	fmt.Printf("\nfigures: all rounds pooled; ratio: serve / floor of p99 and of rps in each round, median over the rounds\n")
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "conc\tpayload\twebhook\tserver\tp50 ms\tp95 ms\tp99 ms\tmax ms\trps\terrors\t")
	for _, c := range o.concurrency {
		for _, p := range payloads {
			for _, isFloor := range []bool{true, false} {
				r := bench.Merge(results[key{c, p.Name, isFloor}]...)
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%d\t\n", c, p.Name, p.Webhook, server(isFloor),
					msf(r.Percentile(50)), msf(r.Percentile(95)), msf(r.Percentile(99)), msf(r.Max()), r.RPS(), r.Errors)
			}
			rt := results.ratios(c, p.Name)
			fmt.Fprintf(w, "\t\t\tratio\t\t\t%.2f\t\t%.2f\t\t\n", rt.p99, rt.rps)
		}
	}
	return results, w.Flush()
}

func server(floor bool) string {
	if floor {
		return "floor"
	}
	return "serve"
}

func msf(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond)) }

func mib(bytes int64) float64 { return float64(bytes) / (1 << 20) }

// apiDefaulted returns the object as the API server passes it to admission on
// CREATE: a server-side dry run where no webhook acts applies the API server's
// defaults and adds managedFields; what the API server only sets after admission
// (uid, creationTimestamp, resourceVersion, generation) is cleared again; and the
// typed object is encoded with encoding/json, as the API server encodes it.
func apiDefaulted(ctx context.Context, c client.Client, object []byte) ([]byte, error) {
	sts := &appsv1.StatefulSet{}
	if err := json.Unmarshal(object, sts); err != nil {
		return nil, err
	}
	namespace := sts.Namespace
	sts.Namespace = noneNamespace
	if err := c.Create(ctx, sts, client.DryRunAll, client.FieldOwner("kubectl-create")); err != nil {
		return nil, err
	}
	sts.Namespace = namespace
	sts.UID, sts.ResourceVersion, sts.Generation, sts.CreationTimestamp = "", "", 0, metav1.Time{}
	// The client clears apiVersion and kind of the typed objects it reads.
	sts.APIVersion, sts.Kind = appsv1.SchemeGroupVersion.String(), "StatefulSet"
	return json.Marshal(sts)
}

// startFloor builds and starts the floor on a free loopback port with the given
// serving certificate, and waits until it serves TLS.
func startFloor(certDir string) (*gexec.Session, string, error) {
	path, err := gexec.Build("github.com/valkey-webhook/valkey-webhook/test/bench/floor")
	if err != nil {
		return nil, "", fmt.Errorf("building the floor: %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	addr := l.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	_ = l.Close()
	session, err := gexec.Start(exec.Command(path, "--host", "127.0.0.1", "--port", port, "--cert-dir", certDir), ginkgo.GinkgoWriter, ginkgo.GinkgoWriter)
	if err != nil {
		return nil, "", fmt.Errorf("starting the floor: %w", err)
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = conn.Close()
			return session, "https://" + addr, nil
		}
		if session.ExitCode() != -1 || time.Now().After(deadline) {
			session.Kill()
			return nil, "", fmt.Errorf("the floor does not listen on %s: %w (its output is in the log)", addr, err)
		}
		<-tick.C
	}
}

// terminate stops a process with SIGTERM and waits for it to exit 0.
func terminate(s *gexec.Session, name string) error {
	if s.ExitCode() != -1 {
		return fmt.Errorf("%s exited early with code %d", name, s.ExitCode())
	}
	s.Terminate()
	select {
	case <-s.Exited:
	case <-time.After(30 * time.Second):
		s.Kill()
		<-s.Exited
		return fmt.Errorf("%s did not stop within 30s of SIGTERM", name)
	}
	if code := s.ExitCode(); code != 0 {
		return fmt.Errorf("%s exited with code %d", name, code)
	}
	return nil
}

// peakRSS reads a process's peak resident set size (VmHWM) from /proc.
func peakRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for l := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}

// endToEnd creates the minimal example through the API server n times in each of
// the three namespaces, in turn, and prints the latencies and what the webhooks add.
func endToEnd(ctx context.Context, cp *framework.ControlPlane, root string, n int) error {
	data, err := os.ReadFile(filepath.Join(root, "examples/minimal-statefulset.yaml"))
	if err != nil {
		return err
	}
	example := &appsv1.StatefulSet{}
	if err := yaml.UnmarshalStrict(data, example); err != nil {
		return err
	}
	cfg := rest.CopyConfig(cp.Config)
	cfg.QPS = -1 // no client-side rate limit: it would be measured too
	cfg.WarningHandler = rest.NoWarnings{}
	c, err := client.New(cfg, client.Options{Scheme: cp.Client.Scheme()})
	if err != nil {
		return err
	}
	create := func(namespace, name string) (time.Duration, error) {
		sts := example.DeepCopy()
		sts.Namespace, sts.Name = namespace, name
		begin := time.Now()
		err := c.Create(ctx, sts)
		return time.Since(begin), err
	}

	const warmup = 20
	namespaces := []string{serveNamespace, floorNamespace, noneNamespace}
	fmt.Printf("\nend to end: %d creates of the minimal StatefulSet through kube-apiserver in each of %s, in turn (after %d each unmeasured)\n",
		n, strings.Join(namespaces, ", "), warmup)
	latencies := map[string][]time.Duration{}
	for i := range warmup + n {
		for j := range namespaces {
			ns := namespaces[(i+j)%len(namespaces)] // each namespace first in turn
			d, err := create(ns, fmt.Sprintf("bench-%d", i))
			if err != nil {
				return fmt.Errorf("creating in %s: %w", ns, err)
			}
			if i >= warmup {
				latencies[ns] = append(latencies[ns], d)
			}
		}
	}
	r := map[string]bench.Result{}
	for _, ns := range namespaces {
		r[ns] = bench.Merge(bench.Result{Latencies: latencies[ns]})
	}
	for _, line := range []struct{ ns, what string }{
		{serveNamespace, "valkey-webhook's webhooks (mutate, validate)"},
		{floorNamespace, "the floor's webhooks (mutate, validate)"},
		{noneNamespace, "no webhook"},
	} {
		x := r[line.ns]
		fmt.Printf("  %-10s %-46s p50=%sms p95=%sms p99=%sms\n", line.ns, line.what, msf(x.Percentile(50)), msf(x.Percentile(95)), msf(x.Percentile(99)))
	}
	added := func(a, b string, q float64) string { return msf(r[a].Percentile(q) - r[b].Percentile(q)) }
	fmt.Printf("  added by valkey-webhook's webhooks:   p50=%sms p95=%sms\n", added(serveNamespace, noneNamespace, 50), added(serveNamespace, noneNamespace, 95))
	fmt.Printf("  added by the floor's webhooks:        p50=%sms p95=%sms\n", added(floorNamespace, noneNamespace, 50), added(floorNamespace, noneNamespace, 95))
	return nil
}

// excludeNamespaces keeps every webhook of the installed configurations out of
// the given namespaces.
func excludeNamespaces(ctx context.Context, c client.Client, namespaces ...string) error {
	exclude := func(sel *metav1.LabelSelector) *metav1.LabelSelector {
		if sel == nil {
			sel = &metav1.LabelSelector{}
		}
		for i, e := range sel.MatchExpressions {
			if e.Key == corev1.LabelMetadataName && e.Operator == metav1.LabelSelectorOpNotIn {
				sel.MatchExpressions[i].Values = append(e.Values, namespaces...)
				return sel
			}
		}
		sel.MatchExpressions = append(sel.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: namespaces,
		})
		return sel
	}
	mutating := &admissionregistrationv1.MutatingWebhookConfigurationList{}
	if err := c.List(ctx, mutating); err != nil {
		return err
	}
	for i := range mutating.Items {
		for j := range mutating.Items[i].Webhooks {
			mutating.Items[i].Webhooks[j].NamespaceSelector = exclude(mutating.Items[i].Webhooks[j].NamespaceSelector)
		}
		if err := c.Update(ctx, &mutating.Items[i]); err != nil {
			return err
		}
	}
	validating := &admissionregistrationv1.ValidatingWebhookConfigurationList{}
	if err := c.List(ctx, validating); err != nil {
		return err
	}
	for i := range validating.Items {
		for j := range validating.Items[i].Webhooks {
			validating.Items[i].Webhooks[j].NamespaceSelector = exclude(validating.Items[i].Webhooks[j].NamespaceSelector)
		}
		if err := c.Update(ctx, &validating.Items[i]); err != nil {
			return err
		}
	}
	return nil
}

// registerFloor registers the floor's mutating and validating webhooks for
// labeled StatefulSets in floorNamespace, configured as valkey-webhook's are, and
// waits until the API server calls them: they are first registered with a URL
// nothing listens on, so that creates fail, then pointed at the floor, so that
// creates succeed again.
func registerFloor(ctx context.Context, c client.Client, floorURL string, caBundle []byte) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	nowhere := "https://" + l.Addr().String()
	_ = l.Close()

	rules := []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		Rule: admissionregistrationv1.Rule{
			APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"statefulsets"},
			Scope: new(admissionregistrationv1.NamespacedScope),
		},
	}}
	namespace := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: []string{floorNamespace},
	}}}
	labeled := &metav1.LabelSelector{MatchLabels: map[string]string{defaults.ClusterLabel: defaults.ClusterLabelEnabled}}
	clientConfig := func(base, path string) admissionregistrationv1.WebhookClientConfig {
		return admissionregistrationv1.WebhookClientConfig{URL: new(base + path), CABundle: caBundle}
	}
	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-floor"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "mutate.floor.bench.valkey-webhook.io",
			ClientConfig:            clientConfig(nowhere, webhook.MutatePath),
			Rules:                   rules,
			FailurePolicy:           new(admissionregistrationv1.Fail),
			MatchPolicy:             new(admissionregistrationv1.Equivalent),
			NamespaceSelector:       namespace,
			ObjectSelector:          labeled,
			SideEffects:             new(admissionregistrationv1.SideEffectClassNone),
			TimeoutSeconds:          new(int32(5)),
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      new(admissionregistrationv1.IfNeededReinvocationPolicy),
		}},
	}
	validating := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-floor"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "validate.floor.bench.valkey-webhook.io",
			ClientConfig:            clientConfig(nowhere, webhook.ValidatePath),
			Rules:                   rules,
			FailurePolicy:           new(admissionregistrationv1.Fail),
			MatchPolicy:             new(admissionregistrationv1.Equivalent),
			NamespaceSelector:       namespace,
			ObjectSelector:          labeled,
			SideEffects:             new(admissionregistrationv1.SideEffectClassNone),
			TimeoutSeconds:          new(int32(5)),
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	for _, obj := range []client.Object{mutating, validating} {
		if err := c.Create(ctx, obj); err != nil {
			return fmt.Errorf("registering the floor's webhooks: %w", err)
		}
	}
	if err := until(ctx, "the API server to call the floor's webhooks", func() error {
		if _, err := dryRunProbe(ctx, c, floorNamespace); err == nil {
			return errors.New("a create still succeeds")
		}
		return nil
	}); err != nil {
		return err
	}
	mutating.Webhooks[0].ClientConfig = clientConfig(floorURL, webhook.MutatePath)
	validating.Webhooks[0].ClientConfig = clientConfig(floorURL, webhook.ValidatePath)
	for _, obj := range []client.Object{mutating, validating} {
		if err := c.Update(ctx, obj); err != nil {
			return fmt.Errorf("pointing the floor's webhooks at the floor: %w", err)
		}
	}
	return until(ctx, "the API server to call the floor's webhooks at the floor", func() error {
		_, err := dryRunProbe(ctx, c, floorNamespace)
		return err
	})
}

// dryRunProbe creates a small labeled StatefulSet in namespace, in a dry run, and
// returns what the API server would have stored.
func dryRunProbe(ctx context.Context, c client.Client, namespace string) (*appsv1.StatefulSet, error) {
	labels := map[string]string{"app": "probe"}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "probe", Labels: map[string]string{defaults.ClusterLabel: defaults.ClusterLabelEnabled}},
		Spec: appsv1.StatefulSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: "probe:1"}}},
			},
		},
	}
	return sts, c.Create(ctx, sts, client.DryRunAll)
}

// until calls f every 100ms until it succeeds, for at most 30s.
func until(ctx context.Context, what string, f func() error) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting 30s for %s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// logWriter is a ginkgo.GinkgoWriterInterface that writes to a file.
type logWriter struct{ io.Writer }

func (w logWriter) Print(a ...any)                 { fmt.Fprint(w, a...) }
func (w logWriter) Printf(format string, a ...any) { fmt.Fprintf(w, format, a...) }
func (w logWriter) Println(a ...any)               { fmt.Fprintln(w, a...) }
func (logWriter) TeeTo(io.Writer)                  {}
func (logWriter) ClearTeeWriters()                 {}
