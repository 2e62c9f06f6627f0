package defaults

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/valkey-webhook/valkey-webhook/config"
)

// TestPortsReached: the Services and the NetworkPolicy reach a port by its name
// when the template names it so, and by its number when the template names it
// otherwise (a template an earlier release admitted), port by port.
func TestPortsReached(t *testing.T) {
	named := intstr.FromString
	number := intstr.FromInt32
	tests := []struct {
		name                  string
		valkey, metrics       []corev1.ContainerPort
		client, bus, exporter intstr.IntOrString
	}{
		{
			name:    "named as injected",
			valkey:  []corev1.ContainerPort{{Name: ClientPortName, ContainerPort: 6379}, {Name: BusPortName, ContainerPort: 16379}},
			metrics: []corev1.ContainerPort{{Name: MetricsPortName, ContainerPort: 9121}},
			client:  named(ClientPortName), bus: named(BusPortName), exporter: named(MetricsPortName),
		},
		{
			name:    "the client port named redis, the rest as injected",
			valkey:  []corev1.ContainerPort{{Name: "redis", ContainerPort: 6379}, {Name: BusPortName, ContainerPort: 16379}},
			metrics: []corev1.ContainerPort{{Name: MetricsPortName, ContainerPort: 9121}},
			client:  number(6379), bus: named(BusPortName), exporter: named(MetricsPortName),
		},
		{
			name:    "no names at all",
			valkey:  []corev1.ContainerPort{{ContainerPort: 6379}, {ContainerPort: 16379}},
			metrics: []corev1.ContainerPort{{ContainerPort: 9121}},
			client:  number(6379), bus: number(16379), exporter: number(9121),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := config.Default()
			sts := &appsv1.StatefulSet{
				ObjectMeta: metav1.ObjectMeta{Name: "cache", Namespace: "team-a"},
				Spec: appsv1.StatefulSetSpec{
					Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "cache"}},
					Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{
						{Name: ValkeyContainer, Ports: tc.valkey},
						{Name: MetricsContainer, Ports: tc.metrics},
					}}},
				},
			}
			type reached struct{ Headless, Client, Policy []intstr.IntOrString }
			var got reached
			for _, sp := range HeadlessService(sts, &p).Spec.Ports {
				got.Headless = append(got.Headless, sp.TargetPort)
			}
			for _, sp := range ClientService(sts, &p).Spec.Ports {
				got.Client = append(got.Client, sp.TargetPort)
			}
			np := NetworkPolicy(sts, &p)
			AdmitController(np, sts, &p, "valkey-webhook-system")
			for _, rule := range np.Spec.Ingress {
				for _, pp := range rule.Ports {
					got.Policy = append(got.Policy, *pp.Port)
				}
			}
			want := reached{
				Headless: []intstr.IntOrString{tc.client, tc.bus, tc.exporter},
				Client:   []intstr.IntOrString{tc.client},
				// own pods: client and bus; clients; monitoring; the controller.
				Policy: []intstr.IntOrString{tc.client, tc.bus, tc.client, tc.exporter, tc.client},
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ports reached (-want +got):\n%s", diff)
			}
		})
	}
}
