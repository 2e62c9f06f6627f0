package bench

import (
	"context"

	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/valkey-webhook/valkey-webhook/webhook"
)

// FloorServer is the floor of the benchmark: controller-runtime's webhook server
// with the options and TLS setup `valkey-webhook serve` uses (tls.crt and tls.key
// in certDir, watched for changes), answering on valkey-webhook's three paths. Each
// webhook allows every request without decoding the object: what is left is the
// cost of TLS, HTTP, reading the AdmissionReview and writing the answer, which no
// webhook served this way can avoid.
func FloorServer(host string, port int, certDir string) crwebhook.Server {
	srv := crwebhook.NewServer(crwebhook.Options{Host: host, Port: port, CertDir: certDir})
	allow := admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
		return admission.Allowed("")
	})
	for _, path := range []string{webhook.MutatePath, webhook.ValidatePath, webhook.EnforcePath} {
		srv.Register(path, &admission.Webhook{Handler: allow})
	}
	return srv
}
