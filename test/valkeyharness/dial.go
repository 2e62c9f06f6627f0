package valkeyharness

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// HostDialer is a valkey-go DialCtxFn for a client on the host. With TLS the
// nodes announce their pods' DNS names (<pod>.<headless>.<ns>.svc.<domain>),
// which the host must not ask cluster DNS for: such an address is dialed at the
// pod's IP, which podIP gives for the pod's name, and the name stays the TLS
// server name, so the certificate is verified as a client in the cluster
// verifies it. An IP address is dialed as it is, with the configuration's own
// server name.
func HostDialer(podIP func(pod string) (ip string, ok bool)) func(context.Context, string, *net.Dialer, *tls.Config) (net.Conn, error) {
	return func(ctx context.Context, dst string, d *net.Dialer, cfg *tls.Config) (net.Conn, error) {
		host, port, err := net.SplitHostPort(dst)
		if err != nil {
			return nil, err
		}
		addr := dst
		if net.ParseIP(host) == nil {
			pod, _, _ := strings.Cut(host, ".")
			ip, ok := podIP(pod)
			if !ok {
				return nil, &net.AddrError{Err: "no pod " + pod + " to dial for this name (the host never asks cluster DNS)", Addr: dst}
			}
			addr = net.JoinHostPort(ip, port)
			if cfg != nil {
				cfg = cfg.Clone()
				cfg.ServerName = host
			}
		}
		if cfg == nil {
			return d.DialContext(ctx, "tcp", addr)
		}
		return (&tls.Dialer{NetDialer: d, Config: cfg}).DialContext(ctx, "tcp", addr)
	}
}

// APIPodIP is a podIP for HostDialer that reads the pod's IP from the API
// server, for the pods of namespace.
func APIPodIP(r client.Reader, namespace string) func(pod string) (string, bool) {
	return func(name string) (string, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		pod := &corev1.Pod{}
		if err := r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, pod); err != nil || pod.Status.PodIP == "" {
			return "", false
		}
		return pod.Status.PodIP, true
	}
}
