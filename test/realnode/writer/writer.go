package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/valkey-io/valkey-go"
)

// Options say how the writers write.
type Options struct {
	// Writers is how many writers run, each with one write in flight.
	Writers int
	// Retry is the wait between a failed attempt and the next (10 ms).
	Retry time.Duration
	// AttemptTimeout bounds one attempt, so that a connection that hangs fails
	// the attempt instead of the whole write.
	AttemptTimeout time.Duration
	// Pause is each writer's wait between a write that succeeded and its next
	// write, which keeps the writers from taking the CPU the cluster needs.
	Pause time.Duration
	// ReadBackTimeout bounds a phase's read-back; a key still unreadable then
	// is reported as unreadable.
	ReadBackTimeout time.Duration
}

// maxErrors is how many distinct error texts a phase keeps.
const maxErrors = 8

// Writer runs the writers and keeps what they measure, phase by phase. Writer i
// writes k:<i>:0, k:<i>:1, ... in turn (keys that hash over all slots); the
// value names the run, so that a key left by another run never reads back equal.
// A write is retried every Retry until it succeeds. A write belongs, with its
// key and its stall, to the phase in which it succeeds; each failed attempt to
// the phase in which it failed. A write still failing when its phase ends counts
// in that phase's longest stall with its stall so far (Report.Unfinished), and
// in the next phase in full once it succeeds.
type Writer struct {
	cl   valkey.Client
	opts Options
	run  string

	mu  sync.Mutex
	cur *phase
	// inFlight is, per writer, when the write in flight was first tried (zero
	// when there is none).
	inFlight []time.Time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	stop   sync.Once
}

// phase is what the writers did during one phase.
type phase struct {
	name       string
	start, end time.Time
	writes     int64
	failed     int64
	longest    time.Duration
	longestAt  time.Time
	unfinished bool
	errors     map[string]int
	// keys is, per writer, the first n written in the phase and how many.
	keys []keyRange
}

type keyRange struct{ first, count int }

// Report is one phase as the writer reports it.
type Report struct {
	Phase   string  `json:"phase"`
	Seconds float64 `json:"seconds"`
	// Writes succeeded in the phase.
	Writes int64 `json:"writes"`
	// FailedAttempts are the attempts that returned an error.
	FailedAttempts int64 `json:"failedAttempts"`
	// LongestStallMS is the longest time from a write's first attempt to its
	// success, in milliseconds; LongestStallStartMS when that write was first
	// tried, after the phase's start (negative: before it).
	LongestStallMS      float64 `json:"longestStallMs"`
	LongestStallStartMS float64 `json:"longestStallStartMs"`
	// Unfinished: the longest stall is of a write that had not succeeded yet
	// when the report was made (a lower bound).
	Unfinished bool `json:"unfinished,omitempty"`
	// Errors counts the distinct errors of the failed attempts (the first
	// maxErrors texts).
	Errors   map[string]int `json:"errors,omitempty"`
	ReadBack *ReadBack      `json:"readBack,omitempty"`
}

// ReadBack is the read-back of every key a phase wrote.
type ReadBack struct {
	Written int `json:"written"`
	// Equal read back with the value written.
	Equal int `json:"equal"`
	// Missing read back as no key; Wrong with another value; Unreadable gave
	// an error until the read-back's deadline.
	Missing    int     `json:"missing"`
	Wrong      int     `json:"wrong"`
	Unreadable int     `json:"unreadable"`
	Seconds    float64 `json:"seconds"`
}

// NewWriter is a writer through cl; run names the run in every value written.
func NewWriter(cl valkey.Client, opts Options, run string) *Writer {
	return &Writer{cl: cl, opts: opts, run: run, inFlight: make([]time.Time, opts.Writers)}
}

// Start starts the writers, in a first phase of the given name.
func (w *Writer) Start(name string) {
	w.mu.Lock()
	w.cur = w.newPhase(name, time.Now())
	w.mu.Unlock()
	w.ctx, w.cancel = context.WithCancel(context.Background())
	for i := range w.opts.Writers {
		w.wg.Go(func() { w.write(i) })
	}
}

func (w *Writer) newPhase(name string, now time.Time) *phase {
	return &phase{name: name, start: now, errors: map[string]int{}, keys: make([]keyRange, w.opts.Writers)}
}

// Key is writer i's n-th key; Value its value in this run.
func Key(i, n int) string { return "k:" + strconv.Itoa(i) + ":" + strconv.Itoa(n) }

func (w *Writer) value(i, n int) string { return w.run + ":" + Key(i, n) }

// write is writer i: one write in flight, each retried until it succeeds.
func (w *Writer) write(i int) {
	for n := 0; ; n++ {
		key, value := Key(i, n), w.value(i, n)
		first := time.Now()
		w.mu.Lock()
		w.inFlight[i] = first
		w.mu.Unlock()
		for {
			actx, cancel := context.WithTimeout(w.ctx, w.opts.AttemptTimeout)
			err := w.cl.Do(actx, w.cl.B().Set().Key(key).Value(value).Build()).Error()
			cancel()
			if w.ctx.Err() != nil {
				return
			}
			if err == nil {
				break
			}
			w.failed(err)
			if !w.sleep(w.opts.Retry) {
				return
			}
		}
		w.succeeded(i, n, first, time.Now())
		if !w.sleep(w.opts.Pause) {
			return
		}
	}
}

// sleep waits d, false if the writers are stopped meanwhile.
func (w *Writer) sleep(d time.Duration) bool {
	if d <= 0 {
		return w.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (w *Writer) failed(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cur.failed++
	text := err.Error()
	if len(text) > 200 {
		text = text[:200]
	}
	if _, ok := w.cur.errors[text]; ok || len(w.cur.errors) < maxErrors {
		w.cur.errors[text]++
	}
}

func (w *Writer) succeeded(i, n int, first, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inFlight[i] = time.Time{}
	p := w.cur
	p.writes++
	if stall := now.Sub(first); stall > p.longest {
		p.longest, p.longestAt, p.unfinished = stall, first, false
	}
	if p.keys[i].count == 0 {
		p.keys[i].first = n
	}
	p.keys[i].count++
}

// reportLocked is the current phase up to now: a write still in flight counts
// with its stall so far, when that is the longest.
func (w *Writer) reportLocked(now time.Time) Report {
	p := w.cur
	longest, at, unfinished := p.longest, p.longestAt, p.unfinished
	for _, first := range w.inFlight {
		if !first.IsZero() && now.Sub(first) > longest {
			longest, at, unfinished = now.Sub(first), first, true
		}
	}
	r := Report{
		Phase:          p.name,
		Seconds:        seconds(now.Sub(p.start)),
		Writes:         p.writes,
		FailedAttempts: p.failed,
		LongestStallMS: milliseconds(longest),
		Unfinished:     unfinished,
	}
	if longest > 0 {
		r.LongestStallStartMS = milliseconds(at.Sub(p.start))
	}
	if len(p.errors) > 0 {
		r.Errors = maps.Clone(p.errors)
	}
	return r
}

// Report is the current phase so far.
func (w *Writer) Report() Report {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reportLocked(time.Now())
}

// Phase ends the current phase and starts the next, named next; it returns the
// report of the phase that ended, without read-back.
func (w *Writer) Phase(next string) Report {
	r, _ := w.switchPhase(next)
	return r
}

func (w *Writer) switchPhase(next string) (Report, *phase) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	r := w.reportLocked(now)
	ended := w.cur
	ended.end = now
	w.cur = w.newPhase(next, now)
	return r, ended
}

// Final ends the current phase, starts the next (the writers go on), and reads
// back every key the ended phase wrote.
func (w *Writer) Final(ctx context.Context, next string) Report {
	r, ended := w.switchPhase(next)
	rb := w.readBack(ctx, ended.keys)
	r.ReadBack = &rb
	return r
}

// Stop stops the writers, ends the current phase and reads back every key it
// wrote. A write in flight is abandoned: it was never acknowledged, so it is not
// a key written. Called again, it reports the empty phase after the stop.
func (w *Writer) Stop(ctx context.Context) Report {
	r, first := Report{}, false
	w.stop.Do(func() {
		first = true
		w.cancel()
		w.wg.Wait()
		w.mu.Lock()
		for i := range w.inFlight {
			w.inFlight[i] = time.Time{}
		}
		w.mu.Unlock()
		r = w.Final(ctx, "stopped")
	})
	if !first {
		return w.Report()
	}
	return r
}

// readBackBatch is how many GETs go out together.
const readBackBatch = 500

// readBack reads every key of the ranges through the cluster client, each batch
// again until every key in it gave an answer or the deadline passed.
func (w *Writer) readBack(ctx context.Context, keys []keyRange) ReadBack {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, w.opts.ReadBackTimeout)
	defer cancel()
	var rb ReadBack
	type key struct{ i, n int }
	var batch []key
	flush := func() {
		pending := batch
		for len(pending) > 0 {
			cmds := make(valkey.Commands, len(pending))
			for j, k := range pending {
				cmds[j] = w.cl.B().Get().Key(Key(k.i, k.n)).Build()
			}
			actx, acancel := context.WithTimeout(ctx, 5*time.Second)
			results := w.cl.DoMulti(actx, cmds...)
			acancel()
			var again []key
			for j, res := range results {
				v, err := res.ToString()
				switch {
				case valkey.IsValkeyNil(err):
					rb.Missing++
				case err != nil:
					again = append(again, pending[j])
				case v == w.value(pending[j].i, pending[j].n):
					rb.Equal++
				default:
					rb.Wrong++
				}
			}
			pending = again
			if len(pending) > 0 {
				select {
				case <-ctx.Done():
					rb.Unreadable += len(pending)
					pending = nil
				case <-time.After(100 * time.Millisecond):
				}
			}
		}
		batch = batch[:0]
	}
	for i, r := range keys {
		rb.Written += r.count
		for n := r.first; n < r.first+r.count; n++ {
			batch = append(batch, key{i, n})
			if len(batch) == readBackBatch {
				flush()
			}
		}
	}
	flush()
	rb.Seconds = seconds(time.Since(start))
	return rb
}

func milliseconds(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func seconds(d time.Duration) float64 { return float64(d.Milliseconds()) / 1000 }

// String is the report in one line, for the writer's log.
func (r Report) String() string {
	s := fmt.Sprintf("phase %s: %.1f s, %d writes, %d failed attempts, longest stall %.1f ms",
		r.Phase, r.Seconds, r.Writes, r.FailedAttempts, r.LongestStallMS)
	if r.Unfinished {
		s += " (unfinished)"
	}
	if rb := r.ReadBack; rb != nil {
		s += fmt.Sprintf("; read back %d/%d equal (%d missing, %d wrong, %d unreadable)", rb.Equal, rb.Written, rb.Missing, rb.Wrong, rb.Unreadable)
	}
	for _, e := range slices.Sorted(maps.Keys(r.Errors)) {
		s += fmt.Sprintf("; %dx %q", r.Errors[e], e)
	}
	return s
}
