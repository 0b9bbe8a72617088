package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/spec"
)

func newValidate() *cobra.Command {
	return &cobra.Command{
		Use:   "validate PATH",
		Short: "Check a spec file or directory and report every problem",
		Long: `Loads the spec (a file, or every *.yaml in a directory), validates it and
compiles it, and reports every error and warning as file:line:col: message.
Exits 1 when there is any error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, st, _, diags := compile.File(args[0], compile.Allocations{})
			printDiags(cmd.ErrOrStderr(), diags)
			if st == nil {
				return errReported
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid (%d zones, %d instances, %d flows)\n", args[0], len(st.Zones), len(st.Instances), len(st.Flows))
			return nil
		},
	}
}

// printDiags prints findings and a count of them.
func printDiags(w io.Writer, diags spec.Diagnostics) {
	var errs, warns int
	for _, d := range diags {
		fmt.Fprintln(w, d)
		if d.Severity == spec.Error {
			errs++
		} else {
			warns++
		}
	}
	if errs > 0 {
		fmt.Fprintf(w, "%d error(s), %d warning(s)\n", errs, warns)
	}
}

// compileOrReport compiles the spec at path against the cloud's stored
// allocations (if it was applied), printing diagnostics; it returns
// errReported when the spec has errors.
func compileOrReport(cmd *cobra.Command, path, stateDir string) (*compile.State, error) {
	st, diags, err := deploy.Compile(path, stateDir)
	printDiags(cmd.ErrOrStderr(), diags)
	if errors.Is(err, deploy.ErrSpec) {
		return nil, errReported
	}
	return st, err
}
