package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/deploy"
)

func newShow() *cobra.Command {
	var stateDir string
	show := &cobra.Command{
		Use:   "show zones|instances|flows|routes|leases|state PATH",
		Short: "Show the compiled zones, instances, flows or routes of a spec",
		Long: `Compiles the spec and prints one part of the desired state. The JSON form
(-o json) is a stable contract, documented in docs/cli.md; 'state' prints the
whole desired state as JSON.`,
	}
	show.AddCommand(
		showCmd("zones", "Zones with their VLAN, subnet, gateway and DHCP range", func(st *compile.State) (any, []string, [][]string) {
			rows := make([][]string, 0, len(st.Zones))
			for _, z := range st.Zones {
				vlan := "-"
				if z.VLAN != nil {
					vlan = strconv.Itoa(*z.VLAN)
				}
				dhcp := "-"
				if z.DHCPStart != "" {
					dhcp = z.DHCPStart + "-" + z.DHCPEnd
				}
				rows = append(rows, []string{z.Name, z.Type, vlan, z.CIDR, z.Gateway, dhcp, z.State, dash(strings.Join(z.AccessTo, ","))})
			}
			return st.Zones, []string{"NAME", "TYPE", "VLAN", "CIDR", "GATEWAY", "DHCP", "STATE", "ACCESS-TO"}, rows
		}),
		showCmd("instances", "Instances with their site, node, VMID, address and name", func(st *compile.State) (any, []string, [][]string) {
			rows := make([][]string, 0, len(st.Instances))
			for _, in := range st.Instances {
				rows = append(rows, []string{in.Name, in.Site, in.Node, dash(in.Role), strconv.Itoa(in.VMID), in.Zone, in.IP, in.MAC, in.FQDN,
					dash(strings.Join(in.Groups, ",")), dash(in.OverlayIP)})
			}
			return st.Instances, []string{"NAME", "SITE", "NODE", "ROLE", "VMID", "ZONE", "IP", "MAC", "FQDN", "GROUPS", "OVERLAY-IP"}, rows
		}),
		showCmd("flows", "The allowed flows; everything else is denied", func(st *compile.State) (any, []string, [][]string) {
			rows := make([][]string, 0, len(st.Flows))
			for _, f := range st.Flows {
				rows = append(rows, []string{f.From, f.To, f.Proto, dash(strings.Join(f.Ports, ",")), f.Kind, f.EnforcedBy})
			}
			return st.Flows, []string{"FROM", "TO", "PROTO", "PORTS", "KIND", "ENFORCED-BY"}, rows
		}),
		showCmd("routes", "Public routes with their front ends and backends", func(st *compile.State) (any, []string, [][]string) {
			rows := make([][]string, 0, len(st.Routes))
			for _, r := range st.Routes {
				rows = append(rows, []string{r.Name, r.Host + ":" + strconv.Itoa(r.Port), r.Proto, dash(r.Address), strings.Join(r.Frontends, ","),
					strings.Join(r.Backends, ",") + ":" + strconv.Itoa(r.BackendPort), dash(strings.Join(r.Failover, ","))})
			}
			return st.Routes, []string{"NAME", "HOST", "PROTO", "ADDRESS", "FRONTENDS", "BACKENDS", "FAILOVER"}, rows
		}),
	)
	state := &cobra.Command{
		Use:   "state PATH",
		Short: "The whole desired state as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := compileOrReport(cmd, args[0], stateDir)
			if err != nil {
				return err
			}
			return writeJSON(cmd.OutOrStdout(), st)
		},
	}
	state.Flags().StringVar(&stateDir, "state-dir", deploy.DefaultStateDir(), "where Holdfast keeps its state")
	show.AddCommand(state, newShowLeases())
	return show
}

func newShowLeases() *cobra.Command {
	var f stateFlags
	cmd := &cobra.Command{
		Use:   "leases PATH",
		Short: "DHCP leases and reservations of the zones with a DHCP range",
		Long: `Lists every compiled instance's reservation in a zone with a DHCP range (its
MAC always gets its address: on Proxmox, the reservations the router serving
the zone must hold) and the leases the cloud's DHCP servers handed out (the
local engine's site edges), with their expiry.`,
		Args: cobra.ExactArgs(1),
	}
	out := outputFlag(cmd, "table", "json")
	f.add(cmd, false)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*out, "table", "json"); err != nil {
			return err
		}
		c, err := openCloud(cmd, args[0], &f, nil)
		if err != nil {
			return err
		}
		defer c.Close()
		ls, err := c.Leases(cmd.Context())
		if err != nil {
			return err
		}
		if *out == "json" {
			return writeJSON(cmd.OutOrStdout(), ls)
		}
		if len(ls) == 0 {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "no leases")
			return err
		}
		rows := make([][]string, 0, len(ls))
		for _, l := range ls {
			exp := "reserved"
			if l.Expires != nil {
				exp = l.Expires.Local().Format(time.DateTime)
			}
			rows = append(rows, []string{l.IP.String(), l.MAC, dash(l.Hostname), exp, l.Zone, l.Site})
		}
		return table(cmd.OutOrStdout(), []string{"ADDRESS", "MAC", "HOSTNAME", "EXPIRES", "ZONE", "SITE"}, rows)
	}
	return cmd
}

func showCmd(what, short string, view func(*compile.State) (any, []string, [][]string)) *cobra.Command {
	cmd := &cobra.Command{Use: what + " PATH", Short: short, Args: cobra.ExactArgs(1)}
	out := outputFlag(cmd, "table", "json")
	var stateDir string
	cmd.Flags().StringVar(&stateDir, "state-dir", deploy.DefaultStateDir(), "where Holdfast keeps its state (its allocations are shown once applied)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*out, "table", "json"); err != nil {
			return err
		}
		st, err := compileOrReport(cmd, args[0], stateDir)
		if err != nil {
			return err
		}
		data, header, rows := view(st)
		if *out == "json" {
			return writeJSON(cmd.OutOrStdout(), data)
		}
		if len(rows) == 0 {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "no %s\n", what)
			return err
		}
		return table(cmd.OutOrStdout(), header, rows)
	}
	return cmd
}
