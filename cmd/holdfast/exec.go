package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/engine/local"
	"github.com/holdfast/holdfast/internal/engine/local/container"
)

// exitCode carries a command's exit status out through cobra.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func newExec() *cobra.Command {
	var stateDir, cloud string
	cmd := &cobra.Command{
		Use:   "exec INSTANCE -- COMMAND [ARG...]",
		Short: "Run a command inside an instance (local engine)",
		Long: `Runs COMMAND inside the instance's namespaces — its network, hostname,
processes, mounts — with this terminal's standard input, output and error,
and exits with the command's exit status.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := findInstance(stateDir, cloud, args[0])
			if err != nil {
				return err
			}
			ctx, stop := interruptible()
			defer stop()
			code, err := container.Exec(ctx, dir, args[1:], os.Stdin, os.Stdout, os.Stderr)
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

// findInstance finds an instance's state directory among the clouds of
// the state dir.
func findInstance(stateDir, cloud, name string) (string, error) {
	pattern := filepath.Join(stateDir, "*", local.Name, "i", name)
	if cloud != "" {
		pattern = filepath.Join(stateDir, cloud, local.Name, "i", name)
	}
	dirs, _ := filepath.Glob(pattern)
	switch len(dirs) {
	case 0:
		return "", fmt.Errorf("no instance %q on the local engine under %s", name, stateDir)
	case 1:
		return dirs[0], nil
	}
	var clouds []string
	for _, d := range dirs {
		clouds = append(clouds, filepath.Base(filepath.Dir(filepath.Dir(filepath.Dir(d)))))
	}
	return "", errors.New("instance " + name + " exists in clouds " + strings.Join(clouds, ", ") + ": say which with --cloud")
}
