package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/deploy"
)

// defaultExample is what `holdfast up` brings up without a PATH.
const defaultExample = "examples/tasmanian"

func newUp() *cobra.Command {
	var f stateFlags
	var sf serveFlags
	var noServe bool
	cmd := &cobra.Command{
		Use:   "up [PATH]",
		Short: "Bring up a cloud on this machine and say how to reach it",
		Long: `Applies the spec at PATH (default ` + defaultExample + `) without asking, then
prints what is running and how to reach it, then serves the cloud's control
plane (as holdfast serve does) until interrupted; --no-serve stops after the
apply. Needs root: the local engine makes network namespaces, bridges,
nftables rules and containers (the host's own network is never changed).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := defaultExample
			if len(args) == 1 {
				path = args[0]
			}
			if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%s not found: run holdfast up from the repository root, or give a spec PATH", path)
			}
			if os.Geteuid() != 0 {
				return errors.New("the local engine needs root (network namespaces, nftables, cgroups): run as root")
			}
			f.yes = true
			c, err := runApply(cmd, path, &f)
			if err != nil {
				return err
			}
			printReach(cmd, c, path)
			// The control plane reconciles the cloud itself: let go of it.
			if err := c.Close(); err != nil || noServe {
				return err
			}
			ctx, stop := interruptible()
			defer stop()
			return runServe(ctx, cmd, path, &f, &sf)
		},
	}
	f.add(cmd, true)
	f.addDatabase(cmd)
	sf.add(cmd)
	cmd.Flags().BoolVar(&noServe, "no-serve", false, "only apply; do not serve the control plane")
	return cmd
}

// printReach says what runs where and how to get at it.
func printReach(cmd *cobra.Command, c *deploy.Cloud, path string) {
	st := c.Desired
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "\nCloud %q is up: %d instances in %d zones.\n\n", st.Cloud, len(st.Instances), len(st.Zones))
	rows := make([][]string, 0, len(st.Instances))
	for _, in := range st.Instances {
		var ports []string
		for _, p := range in.Ports {
			ports = append(ports, strconv.Itoa(p.Port)+"/"+p.Proto)
		}
		rows = append(rows, []string{in.Name, in.Site + "/" + in.Node, in.Zone, in.IP, dash(strings.Join(ports, ","))})
	}
	_ = table(out, []string{"INSTANCE", "SITE/NODE", "ZONE", "ADDRESS", "SERVES"}, rows)
	fmt.Fprintf(out, "\nReach it:\n")
	if len(st.Instances) > 0 {
		name := st.Instances[0].Name
		fmt.Fprintf(out, "  holdfast exec %s -- sh                  a shell inside %s (stdio and exit status pass through)\n", name, name)
		fmt.Fprintf(out, "  holdfast exec %s -- hostname\n", name)
	}
	// A public port, as the internet would reach it.
	for _, f := range st.Flows {
		if f.From != "internet" || len(f.Ports) == 0 || f.ToCIDR == "" {
			continue
		}
		ip := strings.TrimSuffix(f.ToCIDR, "/32")
		port := strings.SplitN(f.Ports[0], "-", 2)[0]
		if line, ok := c.FromInternet(f.To, fmt.Sprintf("bash -c 'cat </dev/tcp/%s/%s'", ip, port)); ok {
			fmt.Fprintf(out, "  %s   %s:%s from the internet\n", line, f.To, port)
		}
		break
	}
	// An overlay member's port, as another member whose groups may
	// reach it does.
	if from, to, port, ok := overlayExample(st); ok {
		fmt.Fprintf(out, "  holdfast exec %s -- bash -c 'cat </dev/tcp/%s/%d'   %s over the Nebula overlay\n",
			from, strings.SplitN(to.OverlayIP, "/", 2)[0], port, to.Name)
	}
	fmt.Fprintf(out, `  holdfast status %[1]s                what runs, any drift, and each agent's health
  holdfast show flows %[1]s            what the firewall lets through; all else is dropped
  holdfast destroy %[1]s               remove it all

Instances without a command answer on their ports: a TCP connection gets one
line naming the instance, UDP is echoed. Overlay members run the Holdfast
agent, which joins them to the overlay once the control plane below serves it.
`, path)
}

// overlayExample is a pair of members and a TCP port of the second that
// the first may reach by its groups (the second's inbound rules).
func overlayExample(st *compile.State) (from string, to compile.Member, port int, ok bool) {
	if st.Overlay == nil {
		return "", compile.Member{}, 0, false
	}
	ports := map[string][]int{}
	for _, in := range st.Instances {
		for _, p := range in.Ports {
			if p.Proto == "tcp" {
				ports[in.Name] = append(ports[in.Name], p.Port)
			}
		}
	}
	for _, b := range st.Overlay.Members {
		for _, a := range st.Overlay.Members {
			if a.Name == b.Name {
				continue
			}
			for _, p := range ports[b.Name] {
				if b.Admits(a, "tcp", p) {
					return a.Name, b, p, true
				}
			}
		}
	}
	return "", compile.Member{}, 0, false
}
