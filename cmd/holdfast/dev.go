package main

import (
	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/specgen"
)

func newDev() *cobra.Command {
	dev := &cobra.Command{Use: "dev", Short: "Tools for developing and testing Holdfast"}
	var p specgen.Params
	gen := &cobra.Command{
		Use:   "gen-spec",
		Short: "Write a large synthetic spec to stdout, for benchmarks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return specgen.Write(cmd.OutOrStdout(), p)
		},
	}
	gen.Flags().IntVar(&p.Instances, "instances", 10000, "number of instances")
	gen.Flags().IntVar(&p.Zones, "zones", 100, "number of zones (at most 500)")
	gen.Flags().IntVar(&p.Sites, "sites", 3, "number of sites (at most 9)")
	gen.Flags().IntVar(&p.Nodes, "nodes", 3, "nodes per site")
	dev.AddCommand(gen)
	return dev
}
