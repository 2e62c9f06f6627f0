package lifecycle

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"strconv"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/valkey-webhook/valkey-webhook/cluster"
	"github.com/valkey-webhook/valkey-webhook/defaults"
	"github.com/valkey-webhook/valkey-webhook/test/valkeyharness"
)

var _ = Describe("a renewed TLS certificate", func() {
	It("is loaded in place by ReloadTLS once the files hold it: the same paths, the same processes", func(ctx SpecContext) {
		c := startPods(mode{name: "TLS", tls: true}, 3)
		nodes := make([]cluster.Node, len(c.Pods))
		var ips []net.IP
		for i, p := range c.Pods {
			nodes[i] = cluster.Node{Address: p.Addr}
			ips = append(ips, net.ParseIP(p.IP))
		}
		opts := optionsOf(c)
		old := make([]*x509.Certificate, len(c.Pods))
		runIDs := make([]string, len(c.Pods))
		paths := make([]string, len(c.Pods))
		for i, p := range c.Pods {
			old[i] = servedLeaf(ctx, c, p.Addr)
			runIDs[i] = serverInfo(ctx, c, p.Addr)["run_id"]
			paths[i] = configGet(ctx, c, p.Addr, "tls-cert-file")
			Expect(paths[i]).To(HaveSuffix("/tls/tls.crt"))
		}
		// One certificate for every pod, as a TLS Secret holds: same CA, new
		// key and serial.
		data, err := c.TLS.SecretData("cache", []string{"localhost"}, ips...)
		Expect(err).NotTo(HaveOccurred())
		want := leafOf(data["tls.crt"])

		By("the Secret changed but the files did not yet: each node reads its old files again and serves what it did")
		setsBefore := configSets(ctx, c)
		res, err := cluster.ReloadTLS(ctx, nodes, opts, want)
		Expect(err).NotTo(HaveOccurred())
		Expect(res).To(HaveLen(len(nodes)))
		for i, r := range res {
			Expect(r.Address).To(Equal(nodes[i].Address))
			Expect(r.Error).To(BeEmpty())
			Expect(r.Refused).To(BeEmpty())
			Expect(r.Sent).To(BeTrue(), "%s was sent the CONFIG SET", r.Address)
			Expect(r.Before.Equal(old[i])).To(BeTrue())
			Expect(r.After.Equal(old[i])).To(BeTrue(), "%s still serves its old certificate", r.Address)
			Expect(r.Serves(want)).To(BeFalse())
		}
		for i, n := range configSets(ctx, c) {
			Expect(n).To(Equal(setsBefore[i]+1), "one CONFIG SET at %s", c.Pods[i].Addr)
		}

		By("the files change in place, as the kubelet updates a mounted Secret")
		for _, p := range c.Pods {
			Expect(p.UpdateFiles(map[string][]byte{
				defaults.TLSDir + "/tls.crt": data["tls.crt"],
				defaults.TLSDir + "/tls.key": data["tls.key"],
			})).To(Succeed())
		}
		for i, p := range c.Pods {
			Expect(servedLeaf(ctx, c, p.Addr).Equal(old[i])).To(BeTrue(), "new files alone change nothing at %s: Valkey reads them at a CONFIG SET", p.Name)
		}
		res, err = cluster.ReloadTLS(ctx, nodes, opts, want)
		Expect(err).NotTo(HaveOccurred())
		for i, r := range res {
			Expect(r.Error).To(BeEmpty())
			Expect(r.Sent).To(BeTrue())
			Expect(r.Before.Equal(old[i])).To(BeTrue())
			Expect(r.Serves(want)).To(BeTrue(), "%s serves the new certificate", r.Address)
		}
		for i, p := range c.Pods {
			Expect(servedLeaf(ctx, c, p.Addr).Equal(want)).To(BeTrue(), "a new handshake with %s gets the new certificate", p.Name)
			Expect(serverInfo(ctx, c, p.Addr)["run_id"]).To(Equal(runIDs[i]), "%s was not restarted", p.Name)
			Expect(configGet(ctx, c, p.Addr, "tls-cert-file")).To(Equal(paths[i]), "the same path")
			Expect(p.Running()).To(BeTrue())
		}

		By("a second call finds every node serving it, and sends nothing")
		setsBefore = configSets(ctx, c)
		res, err = cluster.ReloadTLS(ctx, nodes, opts, want)
		Expect(err).NotTo(HaveOccurred())
		for _, r := range res {
			Expect(r.Sent).To(BeFalse())
			Expect(r.Serves(want)).To(BeTrue())
		}
		Expect(configSets(ctx, c)).To(Equal(setsBefore))

		By("a certificate that does not name the nodes is refused, and nothing is sent")
		other, err := c.TLS.SecretData("other", []string{"other.example"})
		Expect(err).NotTo(HaveOccurred())
		res, err = cluster.ReloadTLS(ctx, nodes, opts, leafOf(other["tls.crt"]))
		Expect(err).NotTo(HaveOccurred())
		for i, r := range res {
			Expect(r.Refused).To(Equal("the certificate does not name " + c.Pods[i].IP))
			Expect(r.Sent).To(BeFalse())
			Expect(r.Serves(want)).To(BeTrue())
		}
		Expect(configSets(ctx, c)).To(Equal(setsBefore))
	})
})

// servedLeaf is the leaf certificate a pod presents in a new TLS handshake,
// verified against its IP.
func servedLeaf(ctx context.Context, c *valkeyharness.Cluster, addr string) *x509.Certificate {
	GinkgoHelper()
	cfg := c.ClientTLS()
	host, _, err := net.SplitHostPort(addr)
	Expect(err).NotTo(HaveOccurred())
	cfg.ServerName = host
	d := tls.Dialer{Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", addr)
	Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0]
}

// serverInfo is a pod's INFO server: run_id changes when the process restarts.
func serverInfo(ctx context.Context, c *valkeyharness.Cluster, addr string) map[string]string {
	GinkgoHelper()
	cl, err := c.NodeClient(addr)
	Expect(err).NotTo(HaveOccurred())
	defer cl.Close()
	info, err := cl.Do(ctx, cl.B().Info().Section("server").Build()).ToString()
	Expect(err).NotTo(HaveOccurred())
	return cluster.ParseInfo(info)
}

// configSets counts the CONFIG SET commands each pod has run.
func configSets(ctx context.Context, c *valkeyharness.Cluster) []int {
	GinkgoHelper()
	var out []int
	for _, p := range c.Pods {
		cl, err := c.NodeClient(p.Addr)
		Expect(err).NotTo(HaveOccurred())
		info, err := cl.Do(ctx, cl.B().Info().Section("commandstats").Build()).ToString()
		cl.Close()
		Expect(err).NotTo(HaveOccurred())
		calls := 0
		if stat, ok := cluster.ParseInfo(info)["cmdstat_config|set"]; ok {
			n, _, _ := strings.Cut(strings.TrimPrefix(stat, "calls="), ",")
			calls, err = strconv.Atoi(n)
			Expect(err).NotTo(HaveOccurred(), "cmdstat_config|set: %s", stat)
		}
		out = append(out, calls)
	}
	return out
}

func leafOf(certPEM []byte) *x509.Certificate {
	GinkgoHelper()
	block, _ := pem.Decode(certPEM)
	Expect(block).NotTo(BeNil())
	cert, err := x509.ParseCertificate(block.Bytes)
	Expect(err).NotTo(HaveOccurred())
	return cert
}
