package main

import (
	"math"
	"testing"
	"time"

	"github.com/valkey-webhook/valkey-webhook/cluster"
)

func TestMedian(t *testing.T) {
	cases := map[string]struct {
		in   []float64
		want float64
	}{
		"one":                         {in: []float64{7}, want: 7},
		"odd count, unsorted":         {in: []float64{5, 1, 9, 3, 7}, want: 5},
		"even count: mean of the two": {in: []float64{4, 1, 3, 2}, want: 2.5},
		"repeated values":             {in: []float64{2, 2, 9}, want: 2},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			in := append([]float64(nil), tc.in...)
			if got := median(in); got != tc.want {
				t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
			}
			for i := range in {
				if in[i] != tc.in[i] {
					t.Fatalf("median reordered its argument: %v, was %v", in, tc.in)
				}
			}
		})
	}
	if got := median(nil); !math.IsNaN(got) {
		t.Errorf("median(nil) = %v, want NaN", got)
	}
}

func TestInitRunTotal(t *testing.T) {
	cases := map[string]struct {
		in   initRun
		want time.Duration
	}{
		"a tool that waits: its return":             {in: initRun{exit: 900, settled: 950, waitsForSettled: true}, want: 900},
		"a tool that does not wait, settled after":  {in: initRun{exit: 1000, settled: 5000}, want: 5000},
		"a tool that does not wait, settled before": {in: initRun{exit: 1000, settled: 800}, want: 1000},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := tc.in.total(); got != tc.want {
				t.Errorf("total() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLayoutSettled(t *testing.T) {
	master := func(id string) cluster.NodeEntry {
		return cluster.NodeEntry{ID: id, IP: "127.0.0.1", Port: 6379, Flags: []string{"master"}, Slots: []cluster.SlotRange{{First: 0, Last: 1}}}
	}
	replica := func(id, of string) cluster.NodeEntry {
		return cluster.NodeEntry{ID: id, IP: "127.0.0.1", Port: 6379, Flags: []string{"slave"}, MasterID: of}
	}
	formed := func() []cluster.NodeEntry {
		return []cluster.NodeEntry{master("a"), master("b"), master("c"), replica("d", "a"), replica("e", "b"), replica("f", "c")}
	}
	cases := map[string]struct {
		view func() []cluster.NodeEntry
		want bool
	}{
		"three masters with a replica each": {view: formed, want: true},
		"a node not known yet":              {view: func() []cluster.NodeEntry { return formed()[:5] }},
		"a node in a handshake": {view: func() []cluster.NodeEntry {
			v := formed()
			v[5].Flags = append(v[5].Flags, "handshake")
			return v
		}},
		"a replica not attached yet: a fourth master without slots": {view: func() []cluster.NodeEntry {
			v := formed()
			v[5] = cluster.NodeEntry{ID: "f", Flags: []string{"master"}}
			return v
		}},
		"two replicas of one master": {view: func() []cluster.NodeEntry {
			v := formed()
			v[5].MasterID = "a"
			return v
		}},
		"a master without slots yet": {view: func() []cluster.NodeEntry {
			v := formed()
			v[2].Slots = nil
			return v
		}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, why := layoutSettled(tc.view())
			if got != tc.want {
				t.Errorf("layoutSettled = %t (%s), want %t", got, why, tc.want)
			}
			if !got && why == "" {
				t.Errorf("layoutSettled = false without a reason")
			}
		})
	}
}
