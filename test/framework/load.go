package framework

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// LoadResult counts what a load sent.
type LoadResult struct {
	// Sent is the number of requests made; Failed of them failed.
	Sent, Failed int64
	// Errors are the first few failures, for the failure message.
	Errors []string
	// Elapsed is how long the load ran.
	Elapsed time.Duration
}

func (r LoadResult) String() string {
	s := fmt.Sprintf("%d requests, %d failed, in %s", r.Sent, r.Failed, r.Elapsed.Round(time.Millisecond))
	if len(r.Errors) > 0 {
		s += ":\n  " + strings.Join(r.Errors, "\n  ")
	}
	return s
}

// Load runs Do from Workers goroutines until the context of Run ends or Max
// requests were made in all, whichever comes first: it is bounded in count and,
// through that context, in time. Do gets a request number, unique across workers,
// and returns nil on success. The end of Run's context only stops new requests:
// those under way run to completion with a context that is not cancelled (Do bounds
// them), and every request made counts.
type Load struct {
	Workers int
	Max     int64
	Do      func(ctx context.Context, n int64) error

	mu     sync.Mutex
	result LoadResult
	next   atomic.Int64
}

// Run runs the load and returns what it sent.
func (l *Load) Run(ctx context.Context) LoadResult {
	start := time.Now()
	var wg sync.WaitGroup
	for range l.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				n := l.next.Add(1)
				if n > l.Max {
					return
				}
				l.record(l.Do(context.WithoutCancel(ctx), n))
			}
		}()
	}
	wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.result.Elapsed = time.Since(start)
	return l.result
}

// Sent returns how many requests were made so far.
func (l *Load) Sent() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.result.Sent
}

func (l *Load) record(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.result.Sent++
	if err != nil {
		l.result.Failed++
		if len(l.result.Errors) < 10 {
			l.result.Errors = append(l.result.Errors, err.Error())
		}
	}
}

// FreeLocalAddr returns a loopback address with a port nobody listens on, for a
// process's listen flags.
func FreeLocalAddr() (string, error) { return freeLocalAddr() }

// HostPort joins a host and a port.
func HostPort(host string, port int) string { return net.JoinHostPort(host, fmt.Sprint(port)) }
