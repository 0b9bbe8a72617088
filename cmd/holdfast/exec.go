package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/deploy"
)

// exitCode carries a command's exit status out through cobra.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func newExec() *cobra.Command {
	var stateDir, cloud string
	cmd := &cobra.Command{
		Use:   "exec INSTANCE -- COMMAND [ARG...]",
		Short: "Run a command inside an instance (engines that offer it: local)",
		Long: `Runs COMMAND inside the instance's namespaces — its network, hostname,
processes, mounts — with this terminal's standard input, output and error,
and exits with the command's exit status.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := interruptible()
			defer stop()
			in, err := deploy.FindInstance(ctx, stateDir, "", cloud, args[0])
			if err != nil {
				return err
			}
			code, err := in.Exec(ctx, args[1:], os.Stdin, os.Stdout, os.Stderr)
			if err != nil {
				return err
			}
			if code != 0 {
				return exitCode(code)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", deploy.DefaultStateDir(), "where Holdfast keeps its state")
	cmd.Flags().StringVar(&cloud, "cloud", "", "the instance's cloud, when several clouds have one by that name")
	return cmd
}
