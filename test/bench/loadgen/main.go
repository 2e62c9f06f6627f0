// Command loadgen sends AdmissionReview v1 requests to a webhook over HTTPS with
// keep-alive, at a fixed concurrency, for a fixed count or duration, and prints
// p50, p95, p99, max, requests per second and errors. `make bench` uses the same
// generator (test/bench); this command points it at any running webhook, e.g.
//
//	go run ./test/bench/loadgen -url https://127.0.0.1:9443 -ca ca.crt -payload minimal -c 50 -d 10s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/valkey-webhook/valkey-webhook/test/bench"
)

func main() {
	url := flag.String("url", "https://127.0.0.1:9443", "base URL of the webhook server; the payload's path is appended")
	ca := flag.String("ca", "", "PEM file of the CA that signed the serving certificate (required)")
	payload := flag.String("payload", "minimal", "minimal, hardened, unsafe or unlabeled (see test/bench/payloads.go)")
	object := flag.String("object", "", "JSON file of a StatefulSet to send instead of the payload's (the payload still names the path and the expected verdict)")
	floor := flag.Bool("floor", false, "the server is the floor: every answer is a plain allow")
	concurrency := flag.Int("c", 1, "workers, each with its own connection (HTTP/1.1)")
	requests := flag.Int("n", 0, "requests to measure; 0 means run for -d")
	duration := flag.Duration("d", 5*time.Second, "how long to measure when -n is 0")
	warmup := flag.Int("warmup", 10, "unmeasured requests per worker first")
	http2 := flag.Bool("http2", false, "one HTTP/2 connection for all workers, as the API server does")
	root := flag.String("root", ".", "root of the repository (for the examples the payloads are built from)")
	flag.Parse()
	if err := run(*url, *ca, *payload, *object, *root, *floor, *http2, bench.Options{
		Concurrency: *concurrency, Requests: *requests, Duration: *duration, Warmup: *warmup,
	}); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(url, caFile, name, objectFile, root string, floor, http2 bool, o bench.Options) error {
	if caFile == "" {
		return errors.New("-ca is required")
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	payloads, err := bench.Payloads(root)
	if err != nil {
		return err
	}
	var p *bench.Payload
	var names []string
	for i := range payloads {
		names = append(names, payloads[i].Name)
		if payloads[i].Name == name {
			p = &payloads[i]
		}
	}
	if p == nil {
		return fmt.Errorf("-payload %q: want one of %s", name, strings.Join(names, ", "))
	}
	if objectFile != "" {
		if p.Object, err = os.ReadFile(objectFile); err != nil {
			return err
		}
	}
	client, err := bench.NewClient(caPEM, o.Concurrency, http2)
	if err != nil {
		return err
	}
	target, err := p.Target(strings.TrimSuffix(url, "/"), floor)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := bench.Verify(ctx, client, target); err != nil {
		return err
	}
	r := bench.Run(ctx, client, target, o)
	fmt.Printf("%s -> %s c=%d: %s\n", p.Name, target.URL, o.Concurrency, r)
	if r.Errors > 0 {
		return fmt.Errorf("%d errors; the first: %w", r.Errors, r.FirstError)
	}
	return nil
}
