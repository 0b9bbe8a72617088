package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newImport() *cobra.Command {
	imp := &cobra.Command{Use: "import", Short: "Write a Holdfast spec from another system's definitions"}
	imp.AddCommand(&cobra.Command{
		Use:   "tappaas ZONES.json [MODULE.json ...] -o DIR",
		Short: "Import TAPPaaS zones.json and module files",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(*cobra.Command, []string) error {
			return errors.New("not wired yet")
		},
	})
	return imp
}
