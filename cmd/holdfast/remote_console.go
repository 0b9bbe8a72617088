package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// newConsoleCmd is `holdfast instance console NAME`: this terminal joined
// to a terminal on the instance.
func newConsoleCmd() *cobra.Command {
	return remoteCmd("console NAME", "Open a terminal on a running instance (Ctrl-] leaves)", cobra.ExactArgs(1), inTenant, func(r *remote, args []string) error {
		in, out := r.cmd.InOrStdin(), r.cmd.OutOrStdout()
		cols, rows := 80, 24
		if f, ok := in.(*os.File); ok {
			if c, rw, err := term.GetSize(int(f.Fd())); err == nil {
				cols, rows = c, rw
			}
		}
		con, err := r.c.OpenConsole(r.ctx, r.tenant, args[0], cols, rows)
		if err != nil {
			return err
		}
		defer con.Close()
		fmt.Fprintf(r.cmd.ErrOrStderr(), "Console of %s; Ctrl-] leaves.\r\n", args[0])
		err = con.Attach(r.ctx, in, out)
		fmt.Fprint(r.cmd.ErrOrStderr(), "\r\n")
		return err
	})
}
