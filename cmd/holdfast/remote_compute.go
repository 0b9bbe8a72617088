package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/client"
)

// noWaitFlag adds --no-wait to a command that starts an operation.
func noWaitFlag(cmd *cobra.Command, b *bool) {
	cmd.Flags().BoolVar(b, "no-wait", false, "print the operation at once instead of waiting for it")
}

func newNetworkCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "network", Short: "Manage a tenant's networks"}

	var createNoWait bool
	create := remoteCmd("create NAME", "Create a network from the operator's pool, and wait until it is ready", cobra.ExactArgs(1), inTenant, func(r *remote, args []string) error {
		op, err := r.c.CreateNetwork(r.ctx, r.tenant, api.NetworkCreate{Name: args[0]})
		return r.follow(op, err, createNoWait)
	})
	noWaitFlag(create, &createNoWait)

	list := remoteCmd("list", "List the tenant's networks", cobra.NoArgs, inTenant, func(r *remote, _ []string) error {
		ns, err := client.ListAll(r.ctx, 0, client.InTenant(r.tenant, r.c.ListNetworks))
		if err != nil {
			return err
		}
		return r.print(ns, func(w io.Writer) error {
			rows := make([][]string, 0, len(ns))
			for _, n := range ns {
				rows = append(rows, []string{n.Name, n.CIDR, n.Gateway, strconv.Itoa(n.VLAN), n.Status})
			}
			return table(w, []string{"NAME", "CIDR", "GATEWAY", "VLAN", "STATUS"}, rows)
		})
	})

	show := remoteCmd("show NAME", "Show a network", cobra.ExactArgs(1), inTenant, func(r *remote, args []string) error {
		n, err := r.c.GetNetwork(r.ctx, r.tenant, args[0])
		if err != nil {
			return err
		}
		return r.print(n, func(w io.Writer) error {
			return fields(w, "Name", n.Name, "Tenant", n.Tenant, "Zone", n.Zone, "CIDR", n.CIDR, "Gateway", n.Gateway,
				"VLAN", strconv.Itoa(n.VLAN), "VNI", strconv.Itoa(n.VNI), "Status", n.Status, "Created", when(n.CreatedAt))
		})
	})

	var delNoWait bool
	del := remoteCmd("delete NAME", "Delete a network without instances", cobra.ExactArgs(1), inTenant, func(r *remote, args []string) error {
		op, err := r.c.DeleteNetwork(r.ctx, r.tenant, args[0])
		return r.follow(op, err, delNoWait)
	})
	noWaitFlag(del, &delNoWait)

	cmd.AddCommand(create, list, show, del)
	return cmd
}

func newInstanceCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "instance", Short: "Manage a tenant's instances"}

	var in api.InstanceCreate
	var createNoWait bool
	create := remoteCmd("create NAME", "Create an instance, and wait until it runs", cobra.ExactArgs(1), inTenant, func(r *remote, args []string) error {
		in := in
		in.Name = args[0]
		op, err := r.c.CreateInstance(r.ctx, r.tenant, in)
		return r.follow(op, err, createNoWait)
	})
	fl := create.Flags()
	fl.StringVar(&in.Flavor, "flavor", "", "flavor (holdfast flavor list)")
	fl.StringVar(&in.Template, "template", "", "template (holdfast template list)")
	fl.StringVar(&in.Network, "network", "", "the tenant's network to attach it to")
	fl.StringVar(&in.Project, "project", "", "project (default: default)")
	fl.StringSliceVar(&in.SSHKeys, "ssh-key", nil, "name of one of the tenant's SSH keys to put in (repeatable)")
	noWaitFlag(create, &createNoWait)
	for _, f := range []string{"flavor", "template", "network"} {
		_ = create.MarkFlagRequired(f) // the flag exists
	}

	list := remoteCmd("list", "List the tenant's instances", cobra.NoArgs, inTenant, func(r *remote, _ []string) error {
		is, err := client.ListAll(r.ctx, 0, client.InTenant(r.tenant, r.c.ListInstances))
		if err != nil {
			return err
		}
		return r.print(is, func(w io.Writer) error {
			rows := make([][]string, 0, len(is))
			for _, i := range is {
				rows = append(rows, []string{i.Name, i.Status, i.Power, i.Flavor, i.Template, i.Network, dash(i.IP), i.Project})
			}
			return table(w, []string{"NAME", "STATUS", "POWER", "FLAVOR", "TEMPLATE", "NETWORK", "IP", "PROJECT"}, rows)
		})
	})

	show := remoteCmd("show NAME", "Show an instance", cobra.ExactArgs(1), inTenant, func(r *remote, args []string) error {
		i, err := r.c.GetInstance(r.ctx, r.tenant, args[0])
		if err != nil {
			return err
		}
		return r.print(i, func(w io.Writer) error {
			return fields(w, "Name", i.Name, "Tenant", i.Tenant, "Project", i.Project, "Status", i.Status, "Power", i.Power,
				"Flavor", fmt.Sprintf("%s (%d vCPU, %d MiB, %d GiB)", i.Flavor, i.CPUs, i.MemoryMiB, i.DiskGiB),
				"Template", i.Template, "Network", i.Network, "IP", i.IP, "FQDN", i.FQDN, "Node", i.Node,
				"SSH keys", strings.Join(i.SSHKeys, ","), "Error", i.Error,
				"Created", when(i.CreatedAt), "Updated", when(i.UpdatedAt), "Version", itoa(i.Version))
		})
	})

	// The actions; each waits for its operation unless --no-wait.
	type action = func(r *remote, name string) (*api.Operation, error)
	var resizeFlavor, rebuildTemplate string
	var actions []*cobra.Command
	for _, a := range []struct {
		use, short string
		do         action
	}{
		{"start NAME", "Start an instance", func(r *remote, n string) (*api.Operation, error) {
			return r.c.StartInstance(r.ctx, r.tenant, n, 0)
		}},
		{"stop NAME", "Stop an instance", func(r *remote, n string) (*api.Operation, error) {
			return r.c.StopInstance(r.ctx, r.tenant, n, 0)
		}},
		{"reboot NAME", "Reboot a running instance", func(r *remote, n string) (*api.Operation, error) {
			return r.c.RebootInstance(r.ctx, r.tenant, n, 0)
		}},
		{"resize NAME --flavor FLAVOR", "Give an instance another flavor (disks only grow)", func(r *remote, n string) (*api.Operation, error) {
			return r.c.ResizeInstance(r.ctx, r.tenant, n, 0, api.InstanceResize{Flavor: resizeFlavor})
		}},
		{"rebuild NAME", "Recreate an instance from a template, discarding its state", func(r *remote, n string) (*api.Operation, error) {
			return r.c.RebuildInstance(r.ctx, r.tenant, n, 0, api.InstanceRebuild{Template: rebuildTemplate})
		}},
		{"delete NAME", "Delete an instance and its disk", func(r *remote, n string) (*api.Operation, error) {
			return r.c.DeleteInstance(r.ctx, r.tenant, n, 0)
		}},
	} {
		var noWait bool
		c := remoteCmd(a.use, a.short, cobra.ExactArgs(1), inTenant, func(r *remote, args []string) error {
			op, err := a.do(r, args[0])
			return r.follow(op, err, noWait)
		})
		noWaitFlag(c, &noWait)
		switch c.Name() {
		case "resize":
			c.Flags().StringVar(&resizeFlavor, "flavor", "", "the new flavor")
			_ = c.MarkFlagRequired("flavor") // the flag exists
		case "rebuild":
			c.Flags().StringVar(&rebuildTemplate, "template", "", "the new template (default: the instance's own)")
		}
		actions = append(actions, c)
	}

	cmd.AddCommand(append([]*cobra.Command{create, list, show, newConsoleCmd()}, actions...)...)
	return cmd
}

func newOperationCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "operation", Short: "Follow the long work started by changes to networks and instances"}
	show := remoteCmd("show ID", "Show an operation", cobra.ExactArgs(1), global, func(r *remote, args []string) error {
		op, err := r.c.GetOperation(r.ctx, args[0])
		return r.follow(op, err, true)
	})
	var timeout time.Duration
	wait := remoteCmd("wait ID", "Wait until an operation is done; exit 1 when it failed", cobra.ExactArgs(1), global, func(r *remote, args []string) error {
		if timeout > 0 {
			var cancel context.CancelFunc
			r.ctx, cancel = context.WithTimeout(r.ctx, timeout)
			defer cancel()
		}
		err := r.follow(&api.Operation{ID: args[0]}, nil, false)
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("operation %s is not done after %s", args[0], timeout)
		}
		return err
	})
	wait.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long, e.g. 10m (default: never)")
	list := remoteCmd("list", "List the tenant's operations, newest first", cobra.NoArgs, inTenant, func(r *remote, _ []string) error {
		ops, err := client.ListAll(r.ctx, 0, client.InTenant(r.tenant, r.c.ListOperations))
		if err != nil {
			return err
		}
		return r.print(ops, func(w io.Writer) error {
			rows := make([][]string, 0, len(ops))
			for _, o := range ops {
				rows = append(rows, []string{o.ID, o.Kind, o.Target, o.Status, strconv.Itoa(o.Progress) + "%", when(o.CreatedAt)})
			}
			return table(w, []string{"ID", "KIND", "TARGET", "STATUS", "PROGRESS", "CREATED"}, rows)
		})
	})
	cmd.AddCommand(show, wait, list)
	return cmd
}

func newFlavorCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "flavor", Short: "The sizes instances may have (operators publish them)"}
	list := remoteCmd("list", "List flavors", cobra.NoArgs, global, func(r *remote, _ []string) error {
		fs, err := client.ListAll(r.ctx, 0, r.c.ListFlavors)
		if err != nil {
			return err
		}
		return r.print(fs, func(w io.Writer) error {
			rows := make([][]string, 0, len(fs))
			for _, f := range fs {
				rows = append(rows, []string{f.Name, strconv.Itoa(f.CPUs), itoa(f.MemoryMiB), itoa(f.DiskGiB)})
			}
			return table(w, []string{"NAME", "VCPUS", "MEMORY MIB", "DISK GIB"}, rows)
		})
	})
	var f api.Flavor
	set := remoteCmd("set NAME", "Publish a flavor or change it", cobra.ExactArgs(1), global, func(r *remote, args []string) error {
		f := f
		f.Name = args[0]
		out, err := r.c.PutFlavor(r.ctx, f)
		if err != nil {
			return err
		}
		return r.print(out, func(w io.Writer) error {
			return fields(w, "Name", out.Name, "vCPUs", strconv.Itoa(out.CPUs), "Memory MiB", itoa(out.MemoryMiB), "Disk GiB", itoa(out.DiskGiB))
		})
	})
	set.Flags().IntVar(&f.CPUs, "cpus", 0, "vCPUs")
	set.Flags().Int64Var(&f.MemoryMiB, "memory-mib", 0, "memory, MiB")
	set.Flags().Int64Var(&f.DiskGiB, "disk-gib", 0, "disk, GiB")
	for _, n := range []string{"cpus", "memory-mib", "disk-gib"} {
		_ = set.MarkFlagRequired(n) // the flag exists
	}
	del := remoteCmd("delete NAME", "Withdraw a flavor", cobra.ExactArgs(1), global, func(r *remote, args []string) error {
		if err := r.c.DeleteFlavor(r.ctx, args[0]); err != nil {
			return err
		}
		return r.done("Withdrew flavor %s.", args[0])
	})
	cmd.AddCommand(list, set, del)
	return cmd
}

func newTemplateCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "template", Short: "The images instances are made from (operators publish them)"}
	list := remoteCmd("list", "List templates", cobra.NoArgs, global, func(r *remote, _ []string) error {
		ts, err := client.ListAll(r.ctx, 0, r.c.ListTemplates)
		if err != nil {
			return err
		}
		return r.print(ts, func(w io.Writer) error {
			rows := make([][]string, 0, len(ts))
			for _, t := range ts {
				rows = append(rows, []string{t.Name, dash(t.Image), dash(t.OS), dash(t.Description)})
			}
			return table(w, []string{"NAME", "IMAGE", "OS", "DESCRIPTION"}, rows)
		})
	})
	var t api.Template
	set := remoteCmd("set NAME", "Publish a template or change it", cobra.ExactArgs(1), global, func(r *remote, args []string) error {
		t := t
		t.Name = args[0]
		out, err := r.c.PutTemplate(r.ctx, t)
		if err != nil {
			return err
		}
		return r.print(out, func(w io.Writer) error {
			return fields(w, "Name", out.Name, "Image", out.Image, "OS", out.OS, "Description", out.Description)
		})
	})
	set.Flags().StringVar(&t.Image, "image", "", "engine image: what the site's engine creates the instance from (a rootfs directory on the local engine, a template VM on others); empty runs the host's file system on the local engine")
	set.Flags().StringVar(&t.OS, "os", "", "operating system, for people")
	set.Flags().StringVar(&t.Description, "description", "", "description, for people")
	del := remoteCmd("delete NAME", "Withdraw a template", cobra.ExactArgs(1), global, func(r *remote, args []string) error {
		if err := r.c.DeleteTemplate(r.ctx, args[0]); err != nil {
			return err
		}
		return r.done("Withdrew template %s.", args[0])
	})
	cmd.AddCommand(list, set, del)
	return cmd
}

func newEventsCmd() *cobra.Command {
	var tenant string
	var since int64
	cmd := remoteCmd("events", "Stream lifecycle events as they happen, until interrupted", cobra.NoArgs, global, func(r *remote, _ []string) error {
		w := r.cmd.OutOrStdout()
		for e, err := range r.c.Events(r.ctx, client.EventOptions{Tenant: tenant, LastEventID: since}) {
			if errors.Is(err, context.Canceled) {
				return nil // interrupted: the way to stop
			}
			if err != nil {
				return err
			}
			if r.out == "json" {
				if err := writeJSONLine(w, e); err != nil {
					return err
				}
				continue
			}
			fmt.Fprintf(w, "%s  %-6d  %-22s  %s\n", e.Time.Local().Format("2006-01-02 15:04:05"), e.ID, e.Type, e.Object)
		}
		return nil
	})
	cmd.Flags().StringVar(&tenant, "tenant", "", "only this tenant's events")
	cmd.Flags().Int64Var(&since, "since", 0, "first replay the events after this id that the server still holds")
	return cmd
}
