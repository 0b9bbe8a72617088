package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/client"
)

// The commands below talk to a control plane (holdfast serve) through
// package client; they parse flags, call it and print.

func remoteCommands() []*cobra.Command {
	return []*cobra.Command{
		newLogin(), newLogout(), newWhoami(),
		newTenantCmd(), newUserCmd(), newMemberCmd(), newInvitationCmd(), newAPIKeyCmd(), newTOTPCmd(), newPasskeyCmd(), newSSHKeyCmd(),
		newNetworkCmd(), newInstanceCmd(), newOperationCmd(), newFlavorCmd(), newTemplateCmd(), newEventsCmd(),
	}
}

// remote is what a command that calls the API has at hand.
type remote struct {
	cmd    *cobra.Command
	ctx    context.Context
	out    string // output format
	path   string // the config file
	cfg    *client.Config
	c      *client.Client
	tenant string // for tenant-scoped commands
}

// scope says whether a command acts in a tenant.
type scope int

const (
	global scope = iota
	inTenant
)

// remoteCmd makes a command that calls the API as the config's user: it
// has -o table|json (and --tenant when in a tenant), loads the config,
// and reports problems on standard error.
func remoteCmd(use, short string, args cobra.PositionalArgs, sc scope, run func(r *remote, args []string) error) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Args: args}
	out := outputFlag(cmd, "table", "json")
	var tenant string
	if sc == inTenant {
		cmd.Flags().StringVar(&tenant, "tenant", "", "tenant to act in (default: the one set at login or by holdfast tenant use)")
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*out, "table", "json"); err != nil {
			return err
		}
		r, err := openRemote(cmd, *out)
		if err != nil {
			return report(cmd, err)
		}
		if r.cfg.Session == nil && r.cfg.APIKey == nil && cmd.Name() != "logout" {
			return report(cmd, client.ErrNoConfig)
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		r.ctx = ctx
		if sc == inTenant {
			if r.tenant = tenant; r.tenant == "" {
				r.tenant = r.cfg.Tenant
			}
			if r.tenant == "" {
				return report(cmd, errors.New("which tenant? give --tenant NAME, or set a default with holdfast tenant use NAME"))
			}
		}
		return report(cmd, run(r, args))
	}
	return cmd
}

func openRemote(cmd *cobra.Command, out string) (*remote, error) {
	path, err := client.DefaultConfigPath()
	if err != nil {
		return nil, err
	}
	cfg, err := client.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	c, err := cfg.Client(path, client.WithUserAgent("holdfast-cli/"+version))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &remote{cmd: cmd, out: out, path: path, cfg: cfg, c: c}, nil
}

// report prints an error — for a problem its detail and each bad field —
// on standard error, and says only "exit 1" to main.
func report(cmd *cobra.Command, err error) error {
	if err == nil {
		return nil
	}
	w := cmd.ErrOrStderr()
	var oe *client.OperationError
	var p *api.Problem
	switch {
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(w, "holdfast: interrupted")
	case errors.As(err, &oe):
		fmt.Fprintln(w, "holdfast:", oe.Error())
		if oe.Operation.Error != nil {
			printFieldErrors(w, oe.Operation.Error)
		}
	case errors.As(err, &p):
		msg := p.Detail
		if msg == "" {
			msg = strings.ToLower(p.Title)
		}
		fmt.Fprintf(w, "holdfast: %s (%d %s)\n", msg, p.Status, p.Title)
		printFieldErrors(w, p)
		if p.Status == 401 && !strings.HasSuffix(p.Type, "/login-failed") && !strings.HasSuffix(p.Type, "/totp-required") &&
			!strings.HasSuffix(p.Type, "/second-factor-required") {
			fmt.Fprintln(w, "  log in again: holdfast login")
		}
	default:
		fmt.Fprintln(w, "holdfast:", err)
	}
	return errReported
}

func printFieldErrors(w io.Writer, p *api.Problem) {
	for _, f := range p.Errors {
		fmt.Fprintf(w, "  %s: %s\n", f.Field, f.Message)
	}
}

// print writes v as JSON, or as the table tab writes.
func (r *remote) print(v any, tab func(w io.Writer) error) error {
	w := r.cmd.OutOrStdout()
	if r.out == "json" {
		return writeJSON(w, v)
	}
	return tab(w)
}

// writeJSONLine writes v as one line of JSON (a stream of them is NDJSON).
func writeJSONLine(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }

// done says what a command without an answer did (not in JSON).
func (r *remote) done(format string, a ...any) error {
	if r.out != "json" {
		fmt.Fprintf(r.cmd.OutOrStdout(), format+"\n", a...)
	}
	return nil
}

// fields writes "Key:  value" lines.
func fields(w io.Writer, kv ...string) error {
	rows := make([][]string, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		rows = append(rows, []string{kv[i] + ":", dash(kv[i+1])})
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func whenPtr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return when(*t)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// follow prints an operation a command started (err is the command's),
// after waiting for it with a progress line on standard error unless
// noWait.
func (r *remote) follow(op *api.Operation, err error, noWait bool) error {
	if err != nil {
		return err
	}
	if !noWait {
		p := newProgress(r.cmd.ErrOrStderr())
		op, err = r.c.WaitOperationProgress(r.ctx, op.ID, 2*time.Second, p.show)
		p.end()
		if err != nil {
			return err
		}
	}
	return r.print(op, func(w io.Writer) error { return opFields(w, op) })
}

func opFields(w io.Writer, op *api.Operation) error {
	errText := ""
	if op.Error != nil {
		errText = op.Error.Error()
	}
	return fields(w, "Operation", op.ID, "Kind", op.Kind, "Target", op.Target, "Status", op.Status,
		"Progress", strconv.Itoa(op.Progress)+"%", "Message", op.Message, "Error", errText,
		"Created", when(op.CreatedAt), "Updated", when(op.UpdatedAt))
}

// progress shows an operation's state as it changes: one line rewritten in
// place on a terminal, a line per change otherwise.
type progress struct {
	w    io.Writer
	tty  bool
	last string
}

func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, tty: ok && isTerminal(f)}
}

func (p *progress) show(op *api.Operation) {
	line := fmt.Sprintf("%s %s: %s %d%%", op.Kind, op.Target, op.Status, op.Progress)
	if op.Message != "" {
		line += " " + op.Message
	}
	if line == p.last {
		return
	}
	p.last = line
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K"+line)
	} else {
		fmt.Fprintln(p.w, line)
	}
}

func (p *progress) end() {
	if p.tty && p.last != "" {
		fmt.Fprintln(p.w)
	}
}

// readSecret reads a password: from a terminal without echo, after a
// prompt, unless fromStdin; else the first line of standard input.
func readSecret(cmd *cobra.Command, prompt string, fromStdin bool) (string, error) {
	in := cmd.InOrStdin()
	if f, ok := in.(*os.File); ok && !fromStdin && isTerminal(f) {
		fmt.Fprint(cmd.ErrOrStderr(), prompt)
		s, err := readNoEcho(f)
		fmt.Fprintln(cmd.ErrOrStderr())
		return s, err
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("no password on standard input")
	}
	return line, nil
}
