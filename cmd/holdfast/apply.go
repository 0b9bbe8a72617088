package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/reconcile"
	"github.com/holdfast/holdfast/internal/sqldb"
)

// stateFlags are the flags of every command that changes or observes a cloud.
type stateFlags struct {
	stateDir string
	database string
	parallel int
	yes      bool
}

func (f *stateFlags) add(cmd *cobra.Command, changes bool) {
	cmd.Flags().StringVar(&f.stateDir, "state-dir", deploy.DefaultStateDir(), "where Holdfast keeps its state ($HOLDFAST_STATE_DIR)")
	if changes {
		cmd.Flags().IntVar(&f.parallel, "parallel", 8, "steps to run at once")
		cmd.Flags().BoolVarP(&f.yes, "yes", "y", false, "do not ask for confirmation")
	}
}

// addDatabase adds --database, to the commands that read and write the
// cloud's state and the control plane wherever it is kept.
func (f *stateFlags) addDatabase(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.database, "database", os.Getenv("HOLDFAST_DATABASE"),
		"PostgreSQL database to keep the state and the control plane in, shared by replicas: postgres://USER@HOST/DB ($HOLDFAST_DATABASE; default: SQLite files in --state-dir)")
}

// openCloud loads and locks a cloud, printing diagnostics.
func openCloud(cmd *cobra.Command, path string, f *stateFlags, progress func(reconcile.Event)) (*deploy.Cloud, error) {
	if err := sqldb.CheckURL(f.database); err != nil {
		return nil, fmt.Errorf("--database: %w", err)
	}
	c, diags, err := deploy.Open(path, deploy.Options{StateDir: f.stateDir, Database: f.database, Parallel: f.parallel, Progress: progress})
	printDiags(cmd.ErrOrStderr(), diags)
	if errors.Is(err, deploy.ErrSpec) {
		return nil, errReported
	}
	return c, err
}

// interruptible is a context cancelled by SIGINT/SIGTERM: the apply stops
// starting steps, finishes the ones under way and records them.
func interruptible() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// progressPrinter prints one line per finished step.
func progressPrinter(w io.Writer) func(reconcile.Event) {
	var mu sync.Mutex
	return func(e reconcile.Event) {
		mu.Lock()
		defer mu.Unlock()
		width := len(fmt.Sprint(e.Total))
		switch e.Status {
		case "done":
			fmt.Fprintf(w, "[%*d/%d] %s %-40s done (%s)\n", width, e.Done, e.Total, planSymbol[e.Change.Action], e.Change.ID, e.Elapsed.Round(time.Millisecond))
		case "failed":
			fmt.Fprintf(w, "[%*d/%d] %s %-40s FAILED: %v\n", width, e.Done, e.Total, planSymbol[e.Change.Action], e.Change.ID, e.Err)
		case "skipped":
			fmt.Fprintf(w, "[%*d/%d] %s %-40s skipped: %v\n", width, e.Done, e.Total, planSymbol[e.Change.Action], e.Change.ID, e.Err)
		case "retry":
			fmt.Fprintf(w, "        %s %-40s retrying (attempt %d): %v\n", planSymbol[e.Change.Action], e.Change.ID, e.Attempt, e.Err)
		}
	}
}

// confirm asks on the terminal; without one, it refuses rather than guess.
func confirm(cmd *cobra.Command, question string) (bool, error) {
	in, ok := cmd.InOrStdin().(*os.File)
	if !ok || !isTerminal(in) {
		return false, errors.New("not a terminal: pass --yes to apply without confirmation")
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s [y/N] ", question)
	line, _ := bufio.NewReader(in).ReadString('\n')
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes", nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func newApply() *cobra.Command {
	var f stateFlags
	cmd := &cobra.Command{
		Use:   "apply PATH",
		Short: "Converge the infrastructure to the spec",
		Long: `Compiles the spec, observes what exists, prints the plan, asks (unless
--yes), and carries it out, showing each step. Running it again with nothing
changed reports 0 changes and touches nothing; what was removed or changed
behind Holdfast's back is repaired. Interrupting it (Ctrl-C) lets the steps
under way finish; a crash or kill -9 is resumed by the next apply.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := runApply(cmd, args[0], &f)
			if err != nil {
				return err
			}
			return c.Close()
		},
	}
	f.add(cmd, true)
	f.addDatabase(cmd)
	return cmd
}

// runApply is apply's work, shared with up.
func runApply(cmd *cobra.Command, path string, f *stateFlags) (*deploy.Cloud, error) {
	ctx, stop := interruptible()
	defer stop()
	out := cmd.OutOrStdout()
	c, err := openCloud(cmd, path, f, progressPrinter(out))
	if err != nil {
		return nil, err
	}
	p, err := c.Plan(ctx)
	if err != nil {
		c.Close()
		return nil, err
	}
	if len(p.Changes) == 0 {
		fmt.Fprintf(out, "No changes: %d resources are as the spec says.\n", p.Summary.Unchanged)
		return c, nil
	}
	if err := printPlan(out, p); err != nil {
		c.Close()
		return nil, err
	}
	if !f.yes {
		ok, err := confirm(cmd, fmt.Sprintf("Apply these %d changes?", len(p.Changes)))
		if err != nil || !ok {
			c.Close()
			if err == nil {
				err = errors.New("cancelled")
			}
			return nil, err
		}
	}
	start := time.Now()
	res, err := c.Apply(ctx, p)
	fmt.Fprintf(out, "\nApplied in %s: %d done, %d failed, %d skipped.\n", time.Since(start).Round(time.Millisecond), res.Done, res.Failed, res.Skipped)
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func newDestroy() *cobra.Command {
	var f stateFlags
	cmd := &cobra.Command{
		Use:   "destroy PATH",
		Short: "Remove everything Holdfast made for the cloud",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := interruptible()
			defer stop()
			out := cmd.OutOrStdout()
			c, err := openCloud(cmd, args[0], &f, progressPrinter(out))
			if err != nil {
				return err
			}
			defer c.Close()
			p, err := c.DestroyPlan(ctx)
			if err != nil {
				return err
			}
			if len(p.Changes) == 0 {
				_, err := fmt.Fprintln(out, "Nothing to destroy.")
				return err
			}
			if err := printPlan(out, p); err != nil {
				return err
			}
			if !f.yes {
				ok, err := confirm(cmd, fmt.Sprintf("Destroy these %d resources?", len(p.Changes)))
				if err != nil {
					return err
				}
				if !ok {
					return errors.New("cancelled")
				}
			}
			start := time.Now()
			res, err := c.Apply(ctx, p)
			fmt.Fprintf(out, "\nDestroyed in %s: %d done, %d failed, %d skipped.\n", time.Since(start).Round(time.Millisecond), res.Done, res.Failed, res.Skipped)
			return err
		},
	}
	f.add(cmd, true)
	f.addDatabase(cmd)
	return cmd
}

func newStatus() *cobra.Command {
	var f stateFlags
	cmd := &cobra.Command{
		Use:   "status PATH",
		Short: "Show what exists, marking drift",
		Long: `Observes every resource of the cloud and compares it with the spec: ok,
missing, drifted (with what was found wrong) or unexpected (exists, not in the
spec). Exits 1 when anything is not ok.`,
		Args: cobra.ExactArgs(1),
	}
	out := outputFlag(cmd, "table", "json")
	f.add(cmd, false)
	f.addDatabase(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*out, "table", "json"); err != nil {
			return err
		}
		c, err := openCloud(cmd, args[0], &f, nil)
		if err != nil {
			return err
		}
		defer c.Close()
		st, err := c.Status(cmd.Context())
		if err != nil {
			return err
		}
		bad := 0
		for _, s := range st {
			if s.State != "ok" {
				bad++
			}
		}
		if *out == "json" {
			err = writeJSON(cmd.OutOrStdout(), st)
		} else {
			rows := make([][]string, 0, len(st))
			for _, s := range st {
				agent := ""
				if s.Agent != nil {
					agent = s.Agent.State
					if s.Agent.Detail != "" {
						agent += ": " + s.Agent.Detail
					}
				}
				var doors []string
				for _, fe := range s.Frontends {
					doors = append(doors, fe.Frontend+" "+fe.State+": "+fe.Detail)
				}
				if len(doors) > 0 {
					agent = strings.Join(doors, "; ")
				}
				rows = append(rows, []string{s.ID.String(), s.State, dash(strings.Join(s.Drift, "; ")), dash(agent)})
			}
			err = table(cmd.OutOrStdout(), []string{"RESOURCE", "STATE", "DRIFT", "AGENT"}, rows)
		}
		if err == nil && bad > 0 {
			fmt.Fprintf(cmd.ErrOrStderr(), "%d of %d resources are not as the spec says; `holdfast apply` repairs them\n", bad, len(st))
			return errReported
		}
		return err
	}
	return cmd
}
