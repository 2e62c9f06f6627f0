package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newValidateCommand(o *options) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "validate -f FILE|DIR|-",
		Short: "Apply the admission validation to YAML, offline",
		Long: `validate runs the admission chain on every object of the input, as the API
server would on CREATE: the mutating webhook first, then the validating webhooks
(labeled StatefulSets, and the enforcement for unlabeled Valkey clusters). It prints
each denial with its field path, and each warning.

Exit codes: 0 nothing denied, 1 something denied, 2 unreadable input.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			docs, offline, err := offlineInput(o, file, cmd.InOrStdin())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			denials := 0
			for _, doc := range docs {
				mutated, v, err := offline.Mutate(cmd.Context(), doc.JSON)
				if err != nil {
					return malformed(doc, err)
				}
				printWarnings(out, doc, v.Warnings)
				if v.Denied != nil {
					printDenial(out, doc, v.Denied)
					denials++
					continue
				}
				verdicts, err := offline.Validate(cmd.Context(), mutated)
				if err != nil {
					return malformed(doc, err)
				}
				allowed := true
				for _, v := range verdicts {
					printWarnings(out, doc, v.Warnings)
					if v.Denied != nil {
						printDenial(out, doc, v.Denied)
						allowed = false
					}
				}
				if allowed {
					fmt.Fprintf(out, "%s %s: allowed\n", doc.Where(), objectName(doc.JSON))
				} else {
					denials++
				}
			}
			if denials > 0 {
				return &exitError{code: exitDenied, err: fmt.Errorf("%d of %d objects denied", denials, len(docs))}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "file, directory (its *.yaml, *.yml, *.json) or - for standard input")
	return cmd
}
