package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/agent"
	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/guest"
)

func newAgent() *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:   "agent --config FILE",
		Short: "Run the Holdfast agent inside an instance",
		Long: `Runs inside an instance: fetches the instance's guest configuration from the
cloud's guest service with the instance's own token, applies it (the overlay
member, as embedded Nebula), keeps it converged, and reports its health, which
holdfast status shows. FILE is the agent's settings (agent.json), which the
engine writes: the local engine starts the agent itself, and on Proxmox the
cloud-init user-data of the metadata service installs it (docs/agent.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if config == "" {
				return errors.New("--config: the agent's settings file is required")
			}
			if code := agent.Main(config, version, cmd.ErrOrStderr()); code != 0 {
				return errReported
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "the agent's settings file (agent.json)")

	var f stateFlags
	rotate := &cobra.Command{
		Use:   "rotate PATH INSTANCE",
		Short: "Give an instance's agent a new token; the old one is refused at once",
		Long: `Rotates the agent credential of INSTANCE in the cloud whose spec is at PATH:
its old token is refused from the next request on, and the next apply delivers
the new one (the local engine writes it into the instance; on Proxmox the VM's
seed changes, which the VM reads at its next boot).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, _, err := deploy.Compile(args[0], f.stateDir)
			if err != nil {
				return err
			}
			var in *compile.Instance
			for i := range st.Instances {
				if st.Instances[i].Name == args[1] {
					in = &st.Instances[i]
				}
			}
			if in == nil {
				return fmt.Errorf("%s has no instance %q", args[0], args[1])
			}
			creds, err := guest.OpenCredentials(f.stateDir, st.Cloud)
			if err != nil {
				return err
			}
			id := compile.InstanceID(in.Site, in.Name)
			if err := creds.Rotate(id); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: agent token rotated (generation %d); `holdfast apply %s` delivers the new one\n", id, creds.Generation(id), args[0])
			return nil
		},
	}
	f.add(rotate, false)
	cmd.AddCommand(rotate)
	return cmd
}
