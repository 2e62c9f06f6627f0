package defaults

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestUnmanagedNamespaces(t *testing.T) {
	cases := map[string]struct {
		own  string
		want []string
	}{
		"own namespace unknown":  {own: "", want: []string{"kube-system"}},
		"own namespace":          {own: "valkey-webhook-system", want: []string{"kube-system", "valkey-webhook-system"}},
		"running in kube-system": {own: "kube-system", want: []string{"kube-system"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, UnmanagedNamespaces(tc.own)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			for _, ns := range tc.want {
				if Managed(ns, tc.own) {
					t.Errorf("Managed(%q, %q) = true", ns, tc.own)
				}
			}
			if !Managed("team-a", tc.own) {
				t.Errorf("Managed(team-a, %q) = false", tc.own)
			}
		})
	}
}
