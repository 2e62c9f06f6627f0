package cluster

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeDNS answers names after a number of lookups each; -1 never.
type fakeDNS struct {
	after   map[string]int
	lookups map[string]int
	ips     map[string]net.IP
}

func (f *fakeDNS) lookup(_ context.Context, _, host string) ([]net.IP, error) {
	f.lookups[host]++
	if n, ok := f.after[host]; ok && n >= 0 && f.lookups[host] > n {
		if f.ips[host] == nil { // each name its own address
			f.ips[host] = net.IPv4(10, 0, 0, byte(len(f.ips)+1))
		}
		return []net.IP{f.ips[host]}, nil
	}
	return nil, errors.New("no such host")
}

func TestResolveWithin(t *testing.T) {
	oldLookup, oldInterval := lookupIP, resolveInterval
	t.Cleanup(func() { lookupIP, resolveInterval = oldLookup, oldInterval })
	resolveInterval = time.Millisecond

	cases := map[string]struct {
		nodes       []Node
		after       map[string]int
		want        []Problem
		wantLookups map[string]int
		// wantWaited: a progress line says it waits for names.
		wantWaited bool
	}{
		"names that resolve only after a few tries are waited for": {
			nodes:       []Node{{Address: "cache-0.cache-headless:6379"}, {Address: "cache-1.cache-headless:6379"}},
			after:       map[string]int{"cache-0.cache-headless": 0, "cache-1.cache-headless": 3},
			wantLookups: map[string]int{"cache-0.cache-headless": 4, "cache-1.cache-headless": 4},
			wantWaited:  true,
		},
		"a name that never resolves is refused when the time is up": {
			nodes:       []Node{{Address: "cache-0.cache-headless:6379"}},
			after:       map[string]int{"cache-0.cache-headless": -1},
			want:        []Problem{{Node: "cache-0.cache-headless:6379", Reason: "cannot resolve cache-0.cache-headless: no such host", Fix: "check the name, or give the pod IP"}},
			wantLookups: nil, // as many as fit in the time
			wantWaited:  true,
		},
		"another problem beside an unresolved name returns at once": {
			nodes: []Node{{Address: "cache-0.cache-headless:6379"}, {Address: "no-port"}},
			after: map[string]int{"cache-0.cache-headless": -1},
			want: []Problem{
				{Node: "cache-0.cache-headless:6379", Reason: "cannot resolve cache-0.cache-headless: no such host", Fix: "check the name, or give the pod IP"},
				{Node: "no-port", Reason: "not a host:port address", Fix: "write it as host:port, e.g. 10.0.0.5:6379"},
			},
			wantLookups: map[string]int{"cache-0.cache-headless": 1},
		},
		"addresses that are IPs are not looked up": {
			nodes:       []Node{{Address: "10.0.0.5:6379"}},
			wantLookups: map[string]int{},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dns := &fakeDNS{after: tc.after, lookups: map[string]int{}, ips: map[string]net.IP{}}
			lookupIP = dns.lookup
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			var progress []string
			got := resolveWithin(ctx, tc.nodes, Options{Progress: func(s string) { progress = append(progress, s) }})
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			if tc.wantLookups != nil {
				if diff := cmp.Diff(tc.wantLookups, dns.lookups); diff != "" {
					t.Errorf("lookups (-want +got):\n%s", diff)
				}
			} else if dns.lookups["cache-0.cache-headless"] < 2 {
				t.Errorf("looked up %d times within the time: want it asked again", dns.lookups["cache-0.cache-headless"])
			}
			if waited := len(progress) > 0; waited != tc.wantWaited {
				t.Errorf("progress %q, want a line saying it waits: %t", progress, tc.wantWaited)
			}
		})
	}
}
