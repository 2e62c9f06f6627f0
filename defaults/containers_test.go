package defaults

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
)

// TestAddResourceDefaults: a default fills only a resource the user's container
// says nothing of, so that no default exceeds a limit the user chose.
func TestAddResourceDefaults(t *testing.T) {
	q := resource.MustParse
	eph := ephemeralStorage{request: "128Mi", limit: "1Gi"}
	tests := []struct {
		name       string
		cpuRequest string
		in, want   corev1.ResourceRequirements
	}{{
		name:       "nothing set: a CPU request and both ephemeral bounds",
		cpuRequest: "100m",
		want: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: q("100m"), corev1.ResourceEphemeralStorage: q("128Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceEphemeralStorage: q("1Gi")},
		},
	}, {
		name:       "a CPU limit or an ephemeral limit of the user's counts as set",
		cpuRequest: "100m",
		in:         corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: q("50m"), corev1.ResourceEphemeralStorage: q("64Mi")}},
		want:       corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: q("50m"), corev1.ResourceEphemeralStorage: q("64Mi")}},
	}, {
		name: "valkey.cpuRequest empty: no CPU request",
		in:   corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceEphemeralStorage: q("1Mi")}},
		want: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceEphemeralStorage: q("1Mi")}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &corev1.Container{Resources: *tt.in.DeepCopy()}
			addResourceDefaults(c, tt.cpuRequest, eph)
			if diff := cmp.Diff(tt.want, c.Resources); diff != "" {
				t.Errorf("resources (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHandoverSeconds: the hand-over gets the grace period less the shutdown
// reserve, never more than MaxHandover, and nothing when the grace period is
// shorter than the reserve.
func TestHandoverSeconds(t *testing.T) {
	for _, tt := range []struct {
		grace *int64
		want  int
	}{
		{nil, 20},
		{ptr.To(int64(30)), 20},
		{ptr.To(int64(25)), 15},
		{ptr.To(int64(120)), MaxHandover},
		{ptr.To(int64(10)), 0},
		{ptr.To(int64(0)), 0},
	} {
		if got := HandoverSeconds(tt.grace); got != tt.want {
			t.Errorf("HandoverSeconds(%v) = %d, want %d", ptr.Deref(tt.grace, -1), got, tt.want)
		}
	}
}
