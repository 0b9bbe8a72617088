package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/reconcile"
)

func newPlan() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plan PATH",
		Short: "Show what applying the spec would change",
		Long: `Compiles the spec and compares it with what exists, printing the changes
in the order apply would make them. Once the cloud has been applied (it has
state under --state-dir), what exists is observed through its engines, drift
included; before that, every resource is a create. A cloud with sites on
infrastructure others use too (a cluster other guests run on) is always
planned against it (read only): VMIDs other guests hold and the nodes' free
memory decide allocation and placement.`,
		Args: cobra.ExactArgs(1),
	}
	out := outputFlag(cmd, "table", "json")
	var f stateFlags
	f.add(cmd, false)
	f.addDatabase(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*out, "table", "json"); err != nil {
			return err
		}
		st, err := compileOrReport(cmd, args[0], f.stateDir)
		if err != nil {
			return err
		}
		p := reconcile.Diff(st.Resources, nil)
		if f.database != "" || deploy.HasState(f.stateDir, st.Cloud) || deploy.SharesInfrastructure(st) {
			// Applied before, or on a cluster others use too: compare with
			// what really exists (and allocate around what others hold).
			c, err := openCloud(cmd, args[0], &f, nil)
			if err != nil {
				return err
			}
			defer c.Close()
			if p, err = c.Plan(cmd.Context()); err != nil {
				return err
			}
		}
		if *out == "json" {
			return writeJSON(cmd.OutOrStdout(), p)
		}
		return printPlan(cmd.OutOrStdout(), p)
	}
	return cmd
}

var planSymbol = map[reconcile.Action]string{reconcile.Create: "+", reconcile.Update: "~", reconcile.Delete: "-"}

func printPlan(w io.Writer, p reconcile.Plan) error {
	rows := make([][]string, 0, len(p.Changes))
	for _, c := range p.Changes {
		rows = append(rows, []string{planSymbol[c.Action], c.ID.String(), summarize(c)})
	}
	if err := table(w, []string{"", "RESOURCE", "DETAILS"}, rows); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\nPlan: %d to create, %d to update, %d to delete, %d unchanged.\n",
		p.Summary.Create, p.Summary.Update, p.Summary.Delete, p.Summary.Unchanged)
	return err
}

// summarize shows the attributes that matter at a glance for each kind.
func summarize(c reconcile.Change) string {
	attrs := c.After
	if c.Action == reconcile.Delete {
		attrs = c.Before
	}
	if c.Action == reconcile.Update {
		parts := make([]string, 0, len(c.Fields)+len(c.Drift))
		for _, d := range c.Drift {
			parts = append(parts, "repair: "+d)
		}
		for _, f := range c.Fields {
			parts = append(parts, fmt.Sprintf("%s: %s -> %s", f, dash(c.Before[f]), dash(c.After[f])))
		}
		return strings.Join(parts, "; ")
	}
	keys := map[string][]string{
		compile.ResSite:     {"engine", "nodes"},
		compile.ResNetwork:  {"vlan", "cidr", "gateway"},
		compile.ResFirewall: {"flows"},
		compile.ResInstance: {"vmid", "node", "nics"},
		compile.ResRoute:    {"host", "backends"},
	}[c.Kind]
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		if v := attrs[k]; v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, " ")
}
