// Package podcluster finds the Valkey cluster of a StatefulSet as Kubernetes
// shows it: the nodes at its pods' IPs, with their zones, and the password and
// TLS material from the Secrets its pods mount. It reads; it never writes.
package podcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/cluster"
	"github.com/valkey-webhook/valkey-webhook/config"
	"github.com/valkey-webhook/valkey-webhook/defaults"
)

// Nodes lists the Valkey nodes of a StatefulSet: one per ordinal below
// spec.replicas, at its pod IP, in ordinal order, with the zone of the Kubernetes
// node it runs on (zones maps node names to zones) and, with TLS, the pod's DNS
// name for certificate verification. It returns a reason to wait instead while
// any of those pods is missing, not running, being deleted or without an IP.
func Nodes(sts *appsv1.StatefulSet, p *config.Policy, pods []corev1.Pod, zones map[string]string) ([]cluster.Node, string) {
	replicas := 1
	if sts.Spec.Replicas != nil {
		replicas = int(*sts.Spec.Replicas)
	}
	byOrdinal := map[int]*corev1.Pod{}
	for i := range pods {
		pod := &pods[i]
		if !metav1.IsControlledBy(pod, sts) {
			continue
		}
		if o, ok := Ordinal(sts.Name, pod.Name); ok && o < replicas {
			byOrdinal[o] = pod
		}
	}
	var waiting []string
	nodes := make([]cluster.Node, 0, replicas)
	for o := range replicas {
		pod, ok := byOrdinal[o]
		name := fmt.Sprintf("%s-%d", sts.Name, o)
		switch {
		case !ok:
			waiting = append(waiting, name+" does not exist")
		case !pod.DeletionTimestamp.IsZero():
			waiting = append(waiting, name+" is being deleted")
		case pod.Status.Phase != corev1.PodRunning:
			waiting = append(waiting, fmt.Sprintf("%s is %s", name, orPending(pod.Status.Phase)))
		case pod.Status.PodIP == "":
			waiting = append(waiting, name+" has no IP")
		default:
			n := cluster.Node{
				Address: net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(p.Valkey.Port)),
				Host:    pod.Spec.NodeName,
				Zone:    zones[pod.Spec.NodeName],
			}
			if p.TLSEnabled() {
				n.ServerName = defaults.PodDNSName(sts, p, name, sts.Namespace)
			}
			nodes = append(nodes, n)
		}
	}
	if len(waiting) > 0 {
		return nil, strings.Join(waiting, ", ")
	}
	return nodes, ""
}

// List lists the pods of a StatefulSet and their Valkey nodes (Nodes, without
// zones) from the first of readers that shows them all running: serve's cache
// first, then the API server, for pods the cache does not hold yet (a replica of
// serve that just started, a pod that just changed, or a pod made from a template
// of an earlier release, without the label the cache selects on). When none shows
// them all, it returns the last reader's reason to wait, or its error.
func List(ctx context.Context, sts *appsv1.StatefulSet, p *config.Policy, readers ...client.Reader) ([]corev1.Pod, []cluster.Node, string, error) {
	selector, err := metav1.LabelSelectorAsSelector(sts.Spec.Selector)
	if err != nil {
		return nil, nil, "", fmt.Errorf("the StatefulSet's selector: %w", err)
	}
	var waiting string
	for _, r := range readers {
		pods := &corev1.PodList{}
		if err = r.List(ctx, pods, client.InNamespace(sts.Namespace), client.MatchingLabelsSelector{Selector: selector}); err != nil {
			continue
		}
		var nodes []cluster.Node
		if nodes, waiting = Nodes(sts, p, pods.Items, nil); waiting == "" {
			return pods.Items, nodes, "", nil
		}
	}
	if err != nil {
		return nil, nil, "", fmt.Errorf("listing the pods: %w", err)
	}
	return nil, nil, waiting, nil
}

func orPending(phase corev1.PodPhase) string {
	if phase == "" {
		return string(corev1.PodPending)
	}
	return string(phase)
}

// Ordinal is the ordinal of a StatefulSet's pod name, "<sts>-<ordinal>".
func Ordinal(sts, pod string) (int, bool) {
	suffix, ok := strings.CutPrefix(pod, sts+"-")
	if !ok || suffix == "" || (len(suffix) > 1 && suffix[0] == '0') {
		return 0, false
	}
	o, err := strconv.Atoi(suffix)
	return o, err == nil && o >= 0
}

// Zones maps the Kubernetes nodes the pods run on to their zone label. A node
// that cannot be read has no zone: placement then falls back to node names.
func Zones(ctx context.Context, r client.Reader, pods []corev1.Pod) (map[string]string, error) {
	zones := map[string]string{}
	for _, pod := range pods {
		name := pod.Spec.NodeName
		if name == "" {
			continue
		}
		if _, done := zones[name]; done {
			continue
		}
		node := &metav1.PartialObjectMetadata{}
		node.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Node"))
		err := r.Get(ctx, types.NamespacedName{Name: name}, node)
		switch {
		case apierrors.IsNotFound(err):
			zones[name] = ""
		case err != nil:
			return nil, fmt.Errorf("reading node %s for its zone: %w", name, err)
		default:
			zones[name] = node.Labels[corev1.LabelTopologyZone]
		}
	}
	return zones, nil
}

// Options reads the password and TLS material the StatefulSet's pods use. A
// Secret not there yet (the companion controller or cert-manager is about to make
// it) is a reason to wait, not an error.
func Options(ctx context.Context, r client.Reader, sts *appsv1.StatefulSet, p *config.Policy, timeout time.Duration) (cluster.Options, string, error) {
	opts := cluster.Options{ReplicasPerMaster: p.Cluster.ReplicasPerMaster, Timeout: timeout}
	if p.Auth.Enabled {
		name := defaults.AuthSecretName(sts, p)
		data, waiting, err := secret(ctx, r, sts.Namespace, name, defaults.PasswordKey)
		if err != nil || waiting != "" {
			return opts, waiting, err
		}
		opts.Password = string(data[defaults.PasswordKey])
	}
	if p.TLSEnabled() {
		name := defaults.TLSSecretName(sts, p)
		data, waiting, err := secret(ctx, r, sts.Namespace, name, "ca.crt", corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
		if err != nil || waiting != "" {
			return opts, waiting, err
		}
		cfg, err := clientTLS(data)
		if err != nil {
			return opts, fmt.Sprintf("Secret %s/%s: %v", sts.Namespace, name, err), nil
		}
		opts.TLS = cfg
	}
	return opts, "", nil
}

// secret reads a Secret past the cache and checks it has the keys.
func secret(ctx context.Context, r client.Reader, namespace, name string, keys ...string) (map[string][]byte, string, error) {
	s := &corev1.Secret{}
	err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, s)
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Sprintf("Secret %s/%s does not exist yet", namespace, name), nil
	case err != nil:
		return nil, "", fmt.Errorf("reading Secret %s/%s: %w", namespace, name, err)
	}
	for _, k := range keys {
		if len(s.Data[k]) == 0 {
			return nil, fmt.Sprintf("Secret %s/%s has no %s yet", namespace, name, k), nil
		}
	}
	return s.Data, "", nil
}

// clientTLS is the TLS configuration of the connections to the
// nodes: the cluster's CA, and the pods' own certificate as the client
// certificate (it is issued for client authentication too, for the cluster bus).
func clientTLS(data map[string][]byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data["ca.crt"]) {
		return nil, errors.New("ca.crt holds no PEM certificate")
	}
	cert, err := tls.X509KeyPair(data[corev1.TLSCertKey], data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return nil, fmt.Errorf("tls.crt and tls.key: %w", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
