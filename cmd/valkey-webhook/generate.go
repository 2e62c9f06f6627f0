package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/valkey-webhook/valkey-webhook/generator"
)

func newGenerateCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Print starter manifests for a Valkey cluster, or the manifests that install the webhook",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newGenerateClusterCommand(o), newGenerateInstallCommand())
	return cmd
}

func newGenerateClusterCommand(o *options) *cobra.Command {
	var (
		c                               generator.ClusterOptions
		hardened, auth, noAuth, initJob bool
		replicasPerMaster               int
		initImage                       string
	)
	cmd := &cobra.Command{
		Use:   "cluster --name NAME [--namespace NS]",
		Short: "Print a minimal labeled StatefulSet for one Valkey cluster (or, with --hardened, everything for a cluster without the webhook)",
		Long: `generate cluster prints the minimal StatefulSet a team commits: labeled
valkey-webhook.io/cluster=enabled, with only what the team decides and an annotation
for each choice that differs from the policy. The webhook injects the rest.

With --hardened it prints the StatefulSet as admission would store it, and every
companion object the controller would keep beside it (ConfigMap, Services,
PodDisruptionBudget, NetworkPolicy, Certificate), for clusters that do not run the
webhook, and a Job that forms the cluster: it runs valkey-webhook cluster init
(--init-image) over every pod's DNS name, retrying until the pods answer; on a
formed cluster it changes nothing; --init-hook argocd or helm makes it a hook that
runs after each sync or upgrade. With --init-job=false the Job is left out and a
comment gives the cluster init command to run instead. The password Secret is
never printed; a comment says how to create it.

Exit codes: 0 printed, 2 a flag was refused (nothing is printed).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := o.policy()
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("replicas-per-master") {
				c.ReplicasPerMaster = &replicasPerMaster
			}
			switch {
			case auth && noAuth:
				return badInput(errors.New("--auth and --no-auth: give one of them"))
			case auth:
				c.Auth = &auth
			case noAuth:
				c.Auth = new(bool)
			}
			for _, name := range []string{"init-job", "init-image", "init-hook"} {
				if !hardened && cmd.Flags().Changed(name) {
					return badInput(fmt.Errorf("--%s: the cluster-init Job is part of the --hardened output only: add --hardened, or leave --%s out", name, name))
				}
			}
			c.NoInitJob = !initJob
			if cmd.Flags().Changed("init-image") {
				c.InitImage = initImage
			}
			var out []byte
			if hardened {
				objects, header, err := generator.HardenedCluster(c, p)
				if err != nil {
					return flagError(err)
				}
				if out, err = generator.Render(objects, header); err != nil {
					return err
				}
			} else {
				sts, err := generator.MinimalCluster(c, p)
				if err != nil {
					return flagError(err)
				}
				if out, err = generator.Render(toObjects(sts), nil); err != nil {
					return err
				}
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.Name, "name", "", "name of the StatefulSet (a DNS label)")
	f.StringVar(&c.Namespace, "namespace", "", "namespace (default: none, kubectl's current one)")
	f.IntVar(&c.Replicas, "replicas", 0, "number of pods (default: masters x (1 + replicas per master))")
	f.IntVar(&c.Masters, "masters", 0, "number of masters (default: the policy's cluster.minMasters)")
	f.IntVar(&replicasPerMaster, "replicas-per-master", 0, "replicas of each master (default: the policy's cluster.replicasPerMaster)")
	f.StringVar(&c.Image, "image", "", "Valkey image (default: the policy's image.valkey)")
	f.StringVar(&c.Memory, "memory", generator.DefaultMemory, "memory limit of the valkey container; maxmemory is derived below it")
	f.StringVar(&c.Storage, "storage", "", "size of each pod's data volume (default: the policy's persistence.size)")
	f.StringVar(&c.StorageClass, "storage-class", "", "storage class of the data volumes (default: the cluster's default)")
	f.StringVar(&c.TLSIssuer, "tls-issuer", "", "cert-manager issuer KIND/NAME (Issuer/NAME or ClusterIssuer/NAME): TLS with a Certificate")
	f.StringVar(&c.TLSSecret, "tls-secret", "", "kubernetes.io/tls Secret with ca.crt: TLS with a certificate of the team's")
	f.BoolVar(&auth, "auth", false, "turn auth on (the policy's default)")
	f.BoolVar(&noAuth, "no-auth", false, "turn auth off")
	f.BoolVar(&hardened, "hardened", false, "print the hardened StatefulSet and its companion objects, for clusters without the webhook")
	f.BoolVar(&initJob, "init-job", true, "with --hardened: print the Job that forms the cluster (false: a comment gives the command instead)")
	f.StringVar(&initImage, "init-image", generator.DefaultImage, "with --hardened: the valkey-webhook image the cluster-init Job runs")
	f.StringVar(&c.InitHook, "init-hook", generator.InitHookNone, "with --hardened: make the cluster-init Job an Argo CD PostSync hook (argocd), a Helm post-install and post-upgrade hook (helm), or a plain Job (none)")
	return cmd
}

func newGenerateInstallCommand() *cobra.Command {
	var (
		in     generator.InstallOptions
		caFile string
	)
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Print the manifests that install the webhook: `valkey-webhook generate install | kubectl apply -f -`",
		Long: `generate install prints everything that installs valkey-webhook: its Namespace,
ServiceAccount, least-privilege ClusterRole and Role with their bindings, the policy
ConfigMap, the Deployment with its PodDisruptionBudget and Service, the cert-manager
Issuers and Certificates of its serving certificate, and the mutating, validating
and enforcement webhook configurations. With --cert-mode cert-manager (the default,
cert-manager installed first) cert-manager issues the serving certificate and
injects its CA; with --cert-mode self-managed, serve issues it into a Secret of its
namespace, renews it, and keeps the configurations' caBundle up to date.

With --dev-url https://HOST:PORT --ca-file FILE it prints only the webhook
configurations, calling a webhook that runs on a developer's machine
(valkey-webhook serve --kubeconfig ...).

Exit codes: 0 printed, 2 a flag was refused (nothing is printed).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if caFile != "" {
				ca, err := os.ReadFile(caFile)
				if err != nil {
					return badInput(fmt.Errorf("--ca-file: %w", err))
				}
				in.CABundle = ca
			}
			objects, err := generator.Install(in)
			if err != nil {
				return flagError(err)
			}
			out, err := generator.Render(objects, nil)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&in.Namespace, "namespace", generator.DefaultNamespace, "namespace of the webhook (never acted on by it)")
	f.StringVar(&in.Image, "image", generator.DefaultImage, "valkey-webhook image")
	f.IntVar(&in.Replicas, "replicas", 2, "replicas of the webhook Deployment")
	f.StringVar(&in.FailurePolicy, "failure-policy", "Fail", "failurePolicy of the webhooks for labeled StatefulSets: Fail or Ignore (the enforcement webhook and the scale guard's webhook for statefulsets/scale always fail open)")
	f.StringVar(&in.Enforcement, "enforcement", "warn", "enforcement.unlabeled: deny, warn or off")
	f.StringVar(&in.CertMode, "cert-mode", generator.CertModeCertManager, "how the serving certificate is issued: cert-manager (installed first), or self-managed (serve issues, renews and injects it)")
	f.StringVar(&in.DevURL, "dev-url", "", "https://HOST:PORT of a webhook running outside the cluster: print only the webhook configurations")
	f.StringVar(&caFile, "ca-file", "", "with --dev-url: PEM file of the CA that signed that webhook's certificate")
	return cmd
}

// flagError turns a generator's refusal of its options into exit code 2.
func flagError(err error) error {
	var fe generator.FlagErrors
	if errors.As(err, &fe) {
		return badInput(err)
	}
	return err
}

func toObjects(sts client.Object) []client.Object { return []client.Object{sts} }
