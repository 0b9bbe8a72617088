package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/client"
)

// quotaFlags are a tenant's limits on the command line.
type quotaFlags struct {
	q api.Quota
}

func (f *quotaFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.IntVar(&f.q.Instances, "instances", 0, "quota: instances")
	fl.IntVar(&f.q.VCPUs, "vcpus", 0, "quota: vCPUs over all instances")
	fl.Int64Var(&f.q.MemoryMiB, "memory-mib", 0, "quota: memory over all instances, MiB")
	fl.Int64Var(&f.q.DiskGiB, "disk-gib", 0, "quota: disk over all instances, GiB")
	fl.IntVar(&f.q.Networks, "networks", 0, "quota: networks")
}

var quotaNames = []string{"instances", "vcpus", "memory-mib", "disk-gib", "networks"}

// over returns base with the quota flags that were given.
func (f *quotaFlags) over(cmd *cobra.Command, base api.Quota) (api.Quota, int) {
	fl := cmd.Flags()
	n := 0
	for _, name := range quotaNames {
		if !fl.Changed(name) {
			continue
		}
		n++
		switch name {
		case "instances":
			base.Instances = f.q.Instances
		case "vcpus":
			base.VCPUs = f.q.VCPUs
		case "memory-mib":
			base.MemoryMiB = f.q.MemoryMiB
		case "disk-gib":
			base.DiskGiB = f.q.DiskGiB
		case "networks":
			base.Networks = f.q.Networks
		}
	}
	return base, n
}

func newTenantCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tenant", Short: "Manage tenants (operators), show your own"}

	var display string
	var qf quotaFlags
	create := remoteCmd("create NAME", "Create a tenant", cobra.ExactArgs(1), global, func(r *remote, args []string) error {
		in := api.TenantCreate{Name: args[0], DisplayName: display}
		q, n := qf.over(r.cmd, api.Quota{})
		switch n {
		case 0: // the server's default quota
		case len(quotaNames):
			in.Quota = &q
		default:
			return errors.New("give all of --instances, --vcpus, --memory-mib, --disk-gib, --networks, or none for the server's default quota")
		}
		t, err := r.c.CreateTenant(r.ctx, in)
		if err != nil {
			return err
		}
		return r.print(t, func(w io.Writer) error { return tenantFields(w, t) })
	})
	create.Flags().StringVar(&display, "display-name", "", "human name")
	qf.add(create)

	list := remoteCmd("list", "List tenants (operators: all; others: their own)", cobra.NoArgs, global, func(r *remote, _ []string) error {
		ts, err := client.ListAll(r.ctx, 0, r.c.ListTenants)
		if err != nil {
			return err
		}
		return r.print(ts, func(w io.Writer) error {
			rows := make([][]string, 0, len(ts))
			for _, t := range ts {
				rows = append(rows, []string{t.Name, dash(t.DisplayName), use(t.Usage.Instances, t.Quota.Instances), use(t.Usage.VCPUs, t.Quota.VCPUs),
					use(t.Usage.MemoryMiB, t.Quota.MemoryMiB), use(t.Usage.DiskGiB, t.Quota.DiskGiB), use(t.Usage.Networks, t.Quota.Networks)})
			}
			return table(w, []string{"NAME", "DISPLAY NAME", "INSTANCES", "VCPUS", "MEMORY MIB", "DISK GIB", "NETWORKS"}, rows)
		})
	})

	show := remoteCmd("show NAME", "Show a tenant with its quota and usage", cobra.ExactArgs(1), global, func(r *remote, args []string) error {
		t, err := r.c.GetTenant(r.ctx, args[0])
		if err != nil {
			return err
		}
		return r.print(t, func(w io.Writer) error { return tenantFields(w, t) })
	})

	var udisplay string
	var uq quotaFlags
	update := remoteCmd("update NAME", "Change a tenant's display name or quota (only the flags given)", cobra.ExactArgs(1), global, func(r *remote, args []string) error {
		t, err := r.c.GetTenant(r.ctx, args[0])
		if err != nil {
			return err
		}
		var in api.TenantUpdate
		if r.cmd.Flags().Changed("display-name") {
			in.DisplayName = &udisplay
		}
		if q, n := uq.over(r.cmd, t.Quota); n > 0 {
			in.Quota = &q
		}
		if in.DisplayName == nil && in.Quota == nil {
			return errors.New("nothing to change: give --display-name or quota flags")
		}
		// If-Match: a change made by someone else since the read is not
		// overwritten; the server answers 412 and nothing changes.
		t, err = r.c.UpdateTenant(r.ctx, args[0], t.Version, in)
		if err != nil {
			return err
		}
		return r.print(t, func(w io.Writer) error { return tenantFields(w, t) })
	})
	update.Flags().StringVar(&udisplay, "display-name", "", "human name")
	uq.add(update)

	del := remoteCmd("delete NAME", "Delete a tenant that owns no networks or instances", cobra.ExactArgs(1), global, func(r *remote, args []string) error {
		if err := r.c.DeleteTenant(r.ctx, args[0]); err != nil {
			return err
		}
		return r.done("Deleted tenant %s.", args[0])
	})

	useCmd := remoteCmd("use NAME", "Make a tenant the default --tenant of the commands that follow", cobra.ExactArgs(1), global, func(r *remote, args []string) error {
		if _, err := r.c.GetTenant(r.ctx, args[0]); err != nil {
			return err
		}
		r.cfg.Tenant = args[0]
		if err := r.cfg.Save(r.path); err != nil {
			return err
		}
		return r.done("Default tenant: %s.", args[0])
	})

	cmd.AddCommand(create, list, show, update, del, useCmd)
	return cmd
}

func use[T int | int64](used, quota T) string {
	return strconv.FormatInt(int64(used), 10) + "/" + strconv.FormatInt(int64(quota), 10)
}

func tenantFields(w io.Writer, t *api.Tenant) error {
	return fields(w, "Name", t.Name, "Display name", t.DisplayName, "Created", when(t.CreatedAt), "Version", itoa(t.Version),
		"Instances", use(t.Usage.Instances, t.Quota.Instances), "vCPUs", use(t.Usage.VCPUs, t.Quota.VCPUs),
		"Memory MiB", use(t.Usage.MemoryMiB, t.Quota.MemoryMiB), "Disk GiB", use(t.Usage.DiskGiB, t.Quota.DiskGiB),
		"Networks", use(t.Usage.Networks, t.Quota.Networks))
}

func newUserCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Manage users (operators; tenant admins create their tenant's)"}

	var email, tenant, role string
	var operator, pwStdin bool
	create := remoteCmd("create NAME", "Create a user, asking for their password", cobra.ExactArgs(1), global, func(r *remote, args []string) error {
		pw, err := readSecret(r.cmd, "Password for "+args[0]+" (12 characters or more): ", pwStdin)
		if err != nil {
			return err
		}
		in := api.UserCreate{Name: args[0], Email: email, Password: pw, Operator: operator}
		var u *api.User
		if tenant != "" {
			u, err = r.c.CreateTenantUser(r.ctx, tenant, role, in)
		} else {
			if r.cmd.Flags().Changed("role") {
				return errors.New("--role needs --tenant")
			}
			u, err = r.c.CreateUser(r.ctx, in)
		}
		if err != nil {
			return err
		}
		return r.print(u, func(w io.Writer) error { return userFields(w, u) })
	})
	fl := create.Flags()
	fl.StringVar(&email, "email", "", "e-mail address")
	fl.BoolVar(&operator, "operator", false, "make the user an operator of the whole cloud")
	fl.BoolVar(&pwStdin, "password-stdin", false, "read the password from the first line of standard input")
	fl.StringVar(&tenant, "tenant", "", "create the user as a member of this tenant (tenant admins may)")
	fl.StringVar(&role, "role", api.RoleMember, "role in --tenant: tenant-admin, member or viewer")
	create.MarkFlagsMutuallyExclusive("operator", "tenant")

	list := remoteCmd("list", "List users", cobra.NoArgs, global, func(r *remote, _ []string) error {
		us, err := client.ListAll(r.ctx, 0, r.c.ListUsers)
		if err != nil {
			return err
		}
		return r.print(us, func(w io.Writer) error {
			rows := make([][]string, 0, len(us))
			for _, u := range us {
				rows = append(rows, []string{u.Name, dash(u.Email), yesNo(u.Operator), yesNo(u.TOTP), dash(memberships(u.Memberships))})
			}
			return table(w, []string{"NAME", "EMAIL", "OPERATOR", "TOTP", "TENANTS"}, rows)
		})
	})

	show := remoteCmd("show NAME", "Show a user", cobra.ExactArgs(1), global, func(r *remote, args []string) error {
		u, err := r.c.GetUser(r.ctx, args[0])
		if err != nil {
			return err
		}
		return r.print(u, func(w io.Writer) error { return userFields(w, u) })
	})

	del := remoteCmd("delete NAME", "Delete a user and end their sessions", cobra.ExactArgs(1), global, func(r *remote, args []string) error {
		if err := r.c.DeleteUser(r.ctx, args[0]); err != nil {
			return err
		}
		return r.done("Deleted user %s.", args[0])
	})

	var passwdStdin bool
	passwd := remoteCmd("passwd", "Change your password; your sessions end, this one is renewed", cobra.NoArgs, global, func(r *remote, _ []string) error {
		cur, next, err := readPasswordChange(r.cmd, passwdStdin)
		if err != nil {
			return err
		}
		if err := r.c.ChangePassword(r.ctx, api.PasswordChange{Current: cur, New: next}); err != nil {
			return err
		}
		if r.cfg.Session != nil {
			// The server ends every session of the user, this one too:
			// log in again with the new password (the hook saves it).
			if _, err := r.c.Login(r.ctx, api.LoginRequest{User: r.cfg.User, Password: next}); err != nil {
				r.cfg.Session = nil
				_ = r.cfg.Save(r.path) // the session is over either way
				return fmt.Errorf("the password was changed; log in again (holdfast login): %w", err)
			}
		}
		return r.done("Password changed.")
	})
	passwd.Flags().BoolVar(&passwdStdin, "password-stdin", false, "read the current and the new password from the first two lines of standard input")

	cmd.AddCommand(create, list, show, del, passwd)
	return cmd
}

// readPasswordChange reads the current and the new password: from a
// terminal without echo (the new one twice), or as two lines of standard
// input.
func readPasswordChange(cmd *cobra.Command, fromStdin bool) (cur, next string, err error) {
	in := cmd.InOrStdin()
	if f, ok := in.(*os.File); ok && !fromStdin && isTerminal(f) {
		var again string
		for _, p := range []struct {
			prompt string
			into   *string
		}{{"Current password: ", &cur}, {"New password (12 characters or more): ", &next}, {"New password again: ", &again}} {
			if *p.into, err = readSecret(cmd, p.prompt, false); err != nil {
				return "", "", err
			}
		}
		if again != next {
			return "", "", errors.New("the new passwords differ")
		}
		return cur, next, nil
	}
	rd := bufio.NewReader(in)
	for _, into := range []*string{&cur, &next} {
		line, err := rd.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", "", err
		}
		if *into = strings.TrimRight(line, "\r\n"); *into == "" {
			return "", "", errors.New("give the current and the new password on two lines of standard input")
		}
	}
	return cur, next, nil
}

func userFields(w io.Writer, u *api.User) error {
	return fields(w, "Name", u.Name, "Email", u.Email, "Operator", yesNo(u.Operator), "TOTP", yesNo(u.TOTP),
		"Tenants", memberships(u.Memberships), "Created", when(u.CreatedAt))
}

func newMemberCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "member", Short: "Manage a tenant's members and their roles"}

	var role string
	add := remoteCmd("add USER", "Change a member's role (operators: also add any user; tenant admins invite)", cobra.ExactArgs(1), inTenant, func(r *remote, args []string) error {
		m, err := r.c.SetMember(r.ctx, r.tenant, api.MembershipCreate{User: args[0], Role: role})
		if err != nil {
			return err
		}
		return r.print(m, func(w io.Writer) error {
			_, err := fmt.Fprintf(w, "%s is %s of %s.\n", m.User, article(m.Role), m.Tenant)
			return err
		})
	})
	add.Flags().StringVar(&role, "role", api.RoleMember, "tenant-admin, member or viewer")

	list := remoteCmd("list", "List the tenant's members", cobra.NoArgs, inTenant, func(r *remote, _ []string) error {
		ms, err := r.c.ListMembers(r.ctx, r.tenant)
		if err != nil {
			return err
		}
		return r.print(ms, func(w io.Writer) error {
			rows := make([][]string, 0, len(ms))
			for _, m := range ms {
				rows = append(rows, []string{m.User, m.Role})
			}
			return table(w, []string{"USER", "ROLE"}, rows)
		})
	})

	remove := remoteCmd("remove USER", "Remove a user from the tenant (the user stays)", cobra.ExactArgs(1), inTenant, func(r *remote, args []string) error {
		if err := r.c.RemoveMember(r.ctx, r.tenant, args[0]); err != nil {
			return err
		}
		return r.done("Removed %s from %s.", args[0], r.tenant)
	})

	var invRole string
	invite := remoteCmd("invite USER", "Invite a user to join the tenant; they accept with holdfast invitation accept", cobra.ExactArgs(1), inTenant, func(r *remote, args []string) error {
		inv, err := r.c.Invite(r.ctx, r.tenant, api.InvitationCreate{User: args[0], Role: invRole})
		if err != nil {
			return err
		}
		return r.print(inv, func(w io.Writer) error {
			_, err := fmt.Fprintf(w, "Invited %s to %s as %s, until %s. If the account exists, %s sees the invitation and joins by accepting it.\n",
				inv.User, inv.Tenant, article(inv.Role), when(inv.ExpiresAt), inv.User)
			return err
		})
	})
	invite.Flags().StringVar(&invRole, "role", api.RoleMember, "role on accepting: tenant-admin, member or viewer")

	invitations := remoteCmd("invitations", "List the tenant's open invitations", cobra.NoArgs, inTenant, func(r *remote, _ []string) error {
		is, err := r.c.ListInvitations(r.ctx, r.tenant)
		if err != nil {
			return err
		}
		return invitationTable(r, is)
	})

	uninvite := remoteCmd("uninvite ID", "Withdraw an invitation (its ID from member invitations)", cobra.ExactArgs(1), inTenant, func(r *remote, args []string) error {
		id, err := invitationArg(args[0])
		if err != nil {
			return err
		}
		if err := r.c.WithdrawInvitation(r.ctx, r.tenant, id); err != nil {
			return err
		}
		return r.done("Withdrew invitation %d.", id)
	})

	cmd.AddCommand(add, list, remove, invite, invitations, uninvite)
	return cmd
}

func newInvitationCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "invitation", Short: "Answer your invitations into tenants"}

	list := remoteCmd("list", "List your invitations", cobra.NoArgs, global, func(r *remote, _ []string) error {
		is, err := r.c.MyInvitations(r.ctx)
		if err != nil {
			return err
		}
		return invitationTable(r, is)
	})

	accept := remoteCmd("accept ID", "Accept an invitation: join its tenant", cobra.ExactArgs(1), global, func(r *remote, args []string) error {
		id, err := invitationArg(args[0])
		if err != nil {
			return err
		}
		m, err := r.c.AcceptInvitation(r.ctx, id)
		if err != nil {
			return err
		}
		return r.print(m, func(w io.Writer) error {
			_, err := fmt.Fprintf(w, "You are %s of %s.\n", article(m.Role), m.Tenant)
			return err
		})
	})

	decline := remoteCmd("decline ID", "Decline an invitation", cobra.ExactArgs(1), global, func(r *remote, args []string) error {
		id, err := invitationArg(args[0])
		if err != nil {
			return err
		}
		if err := r.c.DeclineInvitation(r.ctx, id); err != nil {
			return err
		}
		return r.done("Declined invitation %d.", id)
	})

	cmd.AddCommand(list, accept, decline)
	return cmd
}

func invitationArg(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%q is not an invitation ID (a number, as invitation list shows)", s)
	}
	return id, nil
}

func invitationTable(r *remote, is []api.Invitation) error {
	return r.print(is, func(w io.Writer) error {
		rows := make([][]string, 0, len(is))
		for _, i := range is {
			rows = append(rows, []string{itoa(i.ID), i.Tenant, i.User, i.Role, i.InvitedBy, when(i.ExpiresAt)})
		}
		return table(w, []string{"ID", "TENANT", "USER", "ROLE", "INVITED BY", "EXPIRES"}, rows)
	})
}

func article(role string) string {
	if role == api.RoleTenantAdmin {
		return "a tenant admin"
	}
	return "a " + role
}
