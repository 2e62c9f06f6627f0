package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/valkey-webhook/valkey-webhook/internal/manifest"
)

func newMutateCommand(o *options) *cobra.Command {
	var file, output string
	var diff bool
	cmd := &cobra.Command{
		Use:   "mutate -f FILE|DIR|-",
		Short: "Apply the admission mutation to YAML, offline",
		Long: `mutate runs the mutating webhook on every object of the input, as the API server
would on CREATE, and prints the objects as they would be stored. Objects that are
not labeled StatefulSets pass through unchanged. With --diff it prints only the JSON
patch (RFC 6902) the webhook returns for each changed object.

Exit codes: 0 done, 1 admission would deny an object, 2 unreadable input.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "yaml" && output != "json" {
				return badInput(fmt.Errorf("-o must be yaml or json, not %q", output))
			}
			docs, offline, err := offlineInput(o, file, cmd.InOrStdin())
			if err != nil {
				return err
			}
			var objects [][]byte
			denied := false
			for _, doc := range docs {
				out, v, err := offline.Mutate(cmd.Context(), doc.JSON)
				if err != nil {
					return malformed(doc, err)
				}
				if v.Denied != nil {
					printDenial(cmd.ErrOrStderr(), doc, v.Denied)
					denied = true
					continue
				}
				if diff {
					if len(v.Patch) > 0 {
						if err := printPatch(cmd, doc, v.Patch); err != nil {
							return err
						}
					}
					continue
				}
				objects = append(objects, out)
			}
			if !diff && len(objects) > 0 {
				write := manifest.WriteYAML
				if output == "json" {
					write = manifest.WriteJSON
				}
				if err := write(cmd.OutOrStdout(), objects); err != nil {
					return err
				}
			}
			if denied {
				return &exitError{code: exitDenied, err: fmt.Errorf("admission would deny some objects; see above")}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "file, directory (its *.yaml, *.yml, *.json) or - for standard input")
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "output format: yaml or json")
	cmd.Flags().BoolVar(&diff, "diff", false, "print only the JSON patch of each changed object")
	return cmd
}

// printPatch prints one object's patch as a YAML list under a comment naming it.
func printPatch(cmd *cobra.Command, doc manifest.Document, patch []byte) error {
	out, err := yaml.JSONToYAML(patch)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(cmd.OutOrStdout(), "# %s %s\n%s", doc.Where(), objectName(doc.JSON), out)
	return err
}
