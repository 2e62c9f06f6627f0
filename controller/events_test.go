package controller

import (
	"strings"
	"testing"

	"k8s.io/client-go/tools/events"
)

func TestEventNote(t *testing.T) {
	long := strings.Repeat("é", 600) // 1200 bytes
	tests := []struct{ in, want string }{
		{"cluster ok -> not_ok", "cluster ok -> not_ok"},
		{strings.Repeat("a", 1024), strings.Repeat("a", 1024)},
		{strings.Repeat("a", 1025), strings.Repeat("a", 1021) + "..."},
		{long, strings.Repeat("é", 510) + "..."},
	}
	for _, tc := range tests {
		if got := eventNote(tc.in); got != tc.want || len(got) > maxNote {
			t.Errorf("eventNote(%d bytes) = %d bytes %q..., want %d bytes", len(tc.in), len(got), got[:min(20, len(got))], len(tc.want))
		}
	}
}

// TestCappedRecorder: what reaches the recorder is the note formatted, then cut.
func TestCappedRecorder(t *testing.T) {
	fake := events.NewFakeRecorder(2)
	r := CappedRecorder{EventRecorder: fake}
	r.Eventf(nil, nil, "Warning", "ClusterInitRefused", "init", "%s: %d", strings.Repeat("node unreachable; ", 100), 6)
	r.Eventf(nil, nil, "Normal", "ClusterFormed", "init", "cluster formed in %s", "800ms")
	if got, want := <-fake.Events, "Warning ClusterInitRefused "+strings.Repeat("node unreachable; ", 56)+"node unreacha..."; got != want {
		t.Errorf("long note:\n got %q\nwant %q", got, want)
	}
	if got, want := <-fake.Events, "Normal ClusterFormed cluster formed in 800ms"; got != want {
		t.Errorf("short note: got %q, want %q", got, want)
	}
}
