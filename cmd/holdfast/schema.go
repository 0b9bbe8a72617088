package main

import (
	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/spec"
)

func newSchema() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of the spec format, for editors",
		Long: `Prints a JSON Schema (draft 2020-12) of the spec. Point your editor's YAML
language server at it, e.g. with a first line
  # yaml-language-server: $schema=./holdfast.schema.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(spec.Schema())
			return err
		},
	}
}
