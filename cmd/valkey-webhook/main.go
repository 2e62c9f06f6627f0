// Command valkey-webhook runs and explains the valkey-webhook admission policy:
// the webhook server, and the same mutation and validation offline on YAML files.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/valkey-webhook/valkey-webhook/config"
)

// Exit codes shared by the subcommands.
const (
	exitOK       = 0
	exitDenied   = 1 // validate or mutate: admission would deny something
	exitBadInput = 2 // unreadable input, bad flags, bad policy
)

// exitError carries an exit code up to main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func badInput(err error) error { return &exitError{code: exitBadInput, err: err} }

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCommand(stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var e *exitError
	if errors.As(err, &e) {
		if e.err != nil && e.err.Error() != "" {
			fmt.Fprintln(stderr, "Error:", e.err)
		}
		return e.code
	}
	// cobra's own errors: unknown flags and commands, missing arguments.
	fmt.Fprintln(stderr, "Error:", err)
	return exitBadInput
}

// options are the flags every command takes.
type options struct {
	configFile string
}

// policy loads the policy file, or the built-in defaults without one.
func (o *options) policy() (config.Policy, error) {
	if o.configFile == "" {
		return config.Default(), nil
	}
	p, err := config.Load(o.configFile)
	if err != nil {
		return config.Policy{}, badInput(err)
	}
	return p, nil
}

func newRootCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	o := &options{}
	root := &cobra.Command{
		Use:           "valkey-webhook",
		Short:         "Admission policy for Valkey clusters on Kubernetes",
		Long:          "valkey-webhook hardens StatefulSets labeled valkey-webhook.io/cluster=enabled and denies unsafe ones, as an admission webhook (serve) or offline on YAML (mutate, validate).",
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&o.configFile, "config", "", "policy file (YAML); without it the built-in defaults apply")
	root.AddCommand(newServeCommand(o), newMutateCommand(o), newValidateCommand(o), newGenerateCommand(o), newClusterCommand(o), newPlanCommand(o))
	return root
}

// newScheme holds the types the webhooks decode and the controller writes.
func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(cmapi.AddToScheme(s))
	return s
}
