// Command holdfast is the one binary of Holdfast: it validates, plans and
// shows a cloud spec, imports TAPPaaS definitions, and (later) applies and
// serves. Commands here only parse flags, call packages and print.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	_ "github.com/holdfast/holdfast/internal/engine/engines" // every engine: sites may name them
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// errReported means the problem was already printed; only the exit code is left.
var errReported = errors.New("reported")

func main() {
	root := newRoot()
	if err := root.Execute(); err != nil {
		var code exitCode
		switch {
		case errors.As(err, &code):
			os.Exit(int(code)) // exec: the command's own status
		case !errors.Is(err, errReported):
			fmt.Fprintln(os.Stderr, "holdfast:", err)
		}
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "holdfast",
		Short: "A sovereign private cloud in one binary",
		Long: `Holdfast turns one declarative spec of a cloud — sites, zones, roles,
instances, overlay groups, routes — into running infrastructure, and keeps it there.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServe(), newAudit(), newPing(), newOverlay(), newAgent())
	root.AddCommand(newValidate(), newPlan(), newShow(), newSchema(), newImport(), newDev(), newApply(), newDestroy(), newStatus(), newExec(), newUp())
	root.AddCommand(remoteCommands()...)
	return root
}
