package reliability

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// budget is the webhooks' timeoutSeconds: the API server gives up on a call after it.
const budget = timeoutSeconds * time.Second

// blob3MiB is an annotation that brings the minimal example to just under 3 MiB,
// the API server's limit on a request body.
func blob3MiB(obj map[string]any) {
	obj["metadata"].(map[string]any)["annotations"] = map[string]any{"example.com/blob": strings.Repeat("x", 3<<20-2048)}
}

// stsOf decodes an edited minimal example, named name.
func stsOf(name string, edit func(obj map[string]any)) *appsv1.StatefulSet {
	var obj map[string]any
	Expect(json.Unmarshal(minimalJSON(), &obj)).To(Succeed())
	edit(obj)
	raw, err := json.Marshal(obj)
	Expect(err).NotTo(HaveOccurred())
	sts := &appsv1.StatefulSet{}
	Expect(json.Unmarshal(raw, sts)).To(Succeed())
	sts.Namespace, sts.Name = ns, name
	return sts
}

var _ = Describe("Time budgets", func() {
	It("needs well under timeoutSeconds of CPU for the largest requests, and answers them straight and through the API server", func(ctx SpecContext) {
		srv := startServe()
		https := defaultClient()
		var big map[string]any
		Expect(json.Unmarshal(minimalJSON(), &big)).To(Succeed())
		blob3MiB(big)
		bigJSON, err := json.Marshal(big)
		Expect(err).NotTo(HaveOccurred())
		bodies := []struct {
			name string
			body []byte
		}{
			{"CREATE, a 3 MiB annotation", reviewOf("CREATE", bigJSON, nil, 1)},
			{"UPDATE, a 3 MiB object and a 3 MiB oldObject", reviewOf("UPDATE", bigJSON, bigJSON, 1)},
			{"CREATE, 80000 containers in 3 MiB", withObject(containers3MiB)},
			{"CREATE, JSON nested 9000 deep", withObject(func(obj map[string]any) { obj["spec"].(map[string]any)["futureField"] = nested(9000) })},
		}
		// The CPU time serve spends on a request, not the time it takes: on this
		// shared machine the wall time depends on what else runs, the work does not.
		// Nothing else runs in serve meanwhile: no StatefulSet exists for its
		// controller.
		pid := srv.session.Command.Process.Pid
		var most time.Duration
		var mostName string
		for _, b := range bodies {
			for _, path := range paths {
				cpuBefore := cpuTime(pid)
				start := time.Now()
				status, review, err := post(ctx, https, srv.addr, path, b.body)
				elapsed := time.Since(start)
				cpu := cpuTime(pid) - cpuBefore
				Expect(err).NotTo(HaveOccurred(), "%s %s", b.name, path)
				Expect(status).To(Equal(200))
				if review.Response.Result != nil {
					Expect(review.Response.Result.Code).To(BeNumerically("<", 500), "%s %s: %+v", b.name, path, review.Response.Result)
				}
				Expect(cpu).To(BeNumerically("<", budget), "%s %s took %s of CPU", b.name, path, cpu)
				GinkgoWriter.Printf("time budget: %s %s: %s CPU, answered in %s\n", b.name, path, cpu, elapsed.Round(time.Millisecond))
				if cpu > most {
					most, mostName = cpu, b.name+" "+path
				}
			}
		}
		AddReportEntry("most CPU for one request", fmt.Sprintf("%s: %s (budget %s)", mostName, most, budget))

		By("through the API server: a labeled StatefulSet of just under 3 MiB, and one of 2000 containers, are hardened")
		for _, sts := range []*appsv1.StatefulSet{
			// Annotations may hold 256 KiB in all; an env value has no limit.
			stsOf("big-env-value", func(obj map[string]any) {
				podSpecOf(obj)["containers"].([]any)[0].(map[string]any)["env"] = []any{map[string]any{"name": "BLOB", "value": strings.Repeat("x", 3<<20-2048)}}
			}),
			stsOf("many-containers", func(obj map[string]any) {
				cs := podSpecOf(obj)["containers"].([]any)
				for i := range 2000 {
					cs = append(cs, map[string]any{"name": fmt.Sprintf("c%d", i), "image": "busybox:1.36"})
				}
				podSpecOf(obj)["containers"] = cs
			}),
		} {
			start := time.Now()
			Expect(k8s.Create(ctx, sts, client.DryRunAll)).To(Succeed(), sts.Name)
			Expect(hardened(sts)).To(BeTrue(), sts.Name)
			GinkgoWriter.Printf("time budget: dry-run CREATE of %s through the API server: %s\n", sts.Name, time.Since(start).Round(time.Millisecond))
		}
		Expect(srv.panics()).To(BeZero())
	}, SpecTimeout(3*time.Minute))

	It("with the webhook hung, answers within timeoutSeconds: labeled StatefulSets refused with a clear error, the rest admitted; it recovers when the webhook resumes", func(ctx SpecContext) {
		srv := startServe()
		By("stopping the process with SIGSTOP: connections are accepted by the kernel, nothing answers")
		Expect(srv.session.Command.Process.Signal(syscall.SIGSTOP)).To(Succeed())
		DeferCleanup(func() { _ = srv.session.Command.Process.Signal(syscall.SIGCONT) })

		start := time.Now()
		err := k8s.Create(ctx, minimal(ns, "labeled-while-hung"), client.DryRunAll)
		refusedAfter := time.Since(start)
		webhookError(err, "context deadline exceeded")
		Expect(refusedAfter).To(BeNumerically("<", 6*budget), "the API server's answer for a labeled StatefulSet")

		start = time.Now()
		Expect(k8s.Create(ctx, unlabeled(ns, "unlabeled-while-hung"), client.DryRunAll)).To(Succeed())
		admittedAfter := time.Since(start)
		Expect(admittedAfter).To(BeNumerically("<", 6*budget), "the API server's answer for an unlabeled StatefulSet")

		Expect(k8s.Create(ctx, minimal("kube-system", "labeled-while-hung"), client.DryRunAll)).To(Succeed())

		By("resuming the process: the same process serves again")
		Expect(srv.session.Command.Process.Signal(syscall.SIGCONT)).To(Succeed())
		Eventually(func() error {
			sts := minimal(ns, "labeled-after-hung")
			if err := k8s.Create(ctx, sts, client.DryRunAll); err != nil {
				return err
			}
			if !hardened(sts) {
				return fmt.Errorf("not hardened")
			}
			return nil
		}).WithTimeout(time.Minute).WithPolling(poll).Should(Succeed())
		Expect(srv.session.ExitCode()).To(Equal(-1))
		report := fmt.Sprintf("labeled refused after %s, unlabeled admitted after %s (timeoutSeconds %d)",
			refusedAfter.Round(time.Millisecond), admittedAfter.Round(time.Millisecond), timeoutSeconds)
		AddReportEntry("hung webhook", report)
		GinkgoWriter.Println("hung webhook:", report)
	}, SpecTimeout(3*time.Minute))

	It("needs nothing from the API server to answer: run with no read access at all, the webhooks still answer through the API server", func(ctx SpecContext) {
		nobody, err := cp.Kubeconfig(GinkgoT().TempDir(), "reliability-nobody")
		Expect(err).NotTo(HaveOccurred())
		srv := startServeAs(nobody)
		sts := minimal(ns, "served-by-nobody")
		Expect(k8s.Create(ctx, sts, client.DryRunAll)).To(Succeed())
		Expect(hardened(sts)).To(BeTrue())
		unsafe := minimal(ns, "too-few-replicas")
		unsafe.Spec.Replicas = ptr.To(int32(1))
		err = k8s.Create(ctx, unsafe, client.DryRunAll)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want the validating webhook's 422, got %v", err)
		Eventually(srv.log).WithTimeout(time.Minute).WithPolling(poll).Should(ContainSubstring("forbidden"),
			"the process had no read access (its controller's watches are refused)")
	}, SpecTimeout(3*time.Minute))
})

// cpuTime is the user and system CPU time a process has used so far.
func cpuTime(pid int) time.Duration {
	GinkgoHelper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	Expect(err).NotTo(HaveOccurred())
	// The fields after the command name, which is in parentheses: utime and stime
	// are the 14th and 15th of all, in clock ticks of 1/100 s.
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	utime, err := strconv.ParseInt(fields[11], 10, 64)
	Expect(err).NotTo(HaveOccurred())
	stime, err := strconv.ParseInt(fields[12], 10, 64)
	Expect(err).NotTo(HaveOccurred())
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
