package main

import (
	"io"

	"github.com/spf13/cobra"
)

func newPasskeyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "passkey",
		Short: "List and remove your passkeys (register them in the portal)",
		Long: `Passkeys (WebAuthn) log you in alone, or as the second factor after your
password. Registering one needs the authenticator, which a browser talks to:
register them in the portal. Here you list and remove them.`,
	}
	list := remoteCmd("list", "List your passkeys", cobra.NoArgs, global, func(r *remote, _ []string) error {
		ks, err := r.c.ListPasskeys(r.ctx)
		if err != nil {
			return err
		}
		return r.print(ks, func(w io.Writer) error {
			rows := make([][]string, 0, len(ks))
			for _, k := range ks {
				rows = append(rows, []string{k.Name, k.ID, when(k.CreatedAt), dash(whenPtr(k.LastUsedAt))})
			}
			return table(w, []string{"NAME", "ID", "CREATED", "LAST USED"}, rows)
		})
	})
	remove := remoteCmd("remove NAME", "Remove one of your passkeys", cobra.ExactArgs(1), global, func(r *remote, args []string) error {
		k, err := r.c.RemovePasskeyNamed(r.ctx, args[0])
		if err != nil {
			return err
		}
		return r.done("Removed passkey %s (%s).", k.Name, k.ID)
	})
	cmd.AddCommand(list, remove)
	return cmd
}
