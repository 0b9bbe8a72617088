package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/engine"
	"github.com/holdfast/holdfast/internal/spec"
	"github.com/holdfast/holdfast/internal/tappaas"
)

func newImport() *cobra.Command {
	imp := &cobra.Command{Use: "import", Short: "Write a Holdfast spec from another system's definitions"}
	var (
		dir     string
		asJSON  bool
		options tappaas.Options
	)
	cmd := &cobra.Command{
		Use:   "tappaas ZONES.json [MODULE.json ...] -o DIR",
		Short: "Import TAPPaaS zones.json and module files",
		Long: `Reads TAPPaaS's zones.json and module definitions as TAPPaaS writes them and
writes a Holdfast spec into DIR (cloud.yaml, zones.yaml, instances.yaml).
Everything that could not be mapped is listed with its file and JSON path;
the written spec is validated before anything is written.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				return errors.New("missing -o DIR: the directory to write the spec to")
			}
			s, report, err := tappaas.Import(args[0], args[1:], options)
			if err != nil {
				var el spec.ErrorList
				if errors.As(err, &el) {
					printDiags(cmd.ErrOrStderr(), spec.Diagnostics(el))
					return errReported
				}
				return err
			}
			diags := spec.Validate(s)
			printDiags(cmd.ErrOrStderr(), diags)
			if diags.HasErrors() {
				return errReported
			}
			if err := spec.Write(s, dir); err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), report)
			}
			if r := report.String(); r != "" {
				fmt.Fprintln(cmd.OutOrStdout(), r)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %d zones, %d instances; %d item(s) not mapped (listed above)\n",
				dir, len(s.Zones), len(s.Instances), len(report.NotMapped))
			return err
		},
	}
	cmd.Flags().StringVarP(&dir, "output", "o", "", "directory to write the spec to")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().StringVar(&options.Cloud, "cloud", tappaas.DefaultCloud, "cloud name")
	cmd.Flags().StringVar(&options.Domain, "domain", tappaas.DefaultDomain, "DNS domain")
	cmd.Flags().StringVar(&options.Engine, "engine", tappaas.DefaultEngine, "engine of the site: "+strings.Join(engine.Names(), ", "))
	imp.AddCommand(cmd)
	return imp
}
