package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/client"
	"github.com/holdfast/holdfast/internal/deploy"
)

type loginFlags struct {
	user, totp          string
	passwordStdin       bool
	caCert, fingerprint string
	keyID, keyFile      string
}

func newLogin() *cobra.Command {
	var f loginFlags
	cmd := &cobra.Command{
		Use:   "login [URL]",
		Short: "Log in to a control plane and keep the credentials for the commands that follow",
		Long: `Logs in to the control plane at URL (default: the one logged in to before)
with a password — read from the terminal without echo, or with
--password-stdin the first line of standard input — and a TOTP code once
enrolled; or, with --api-key-secret-file, with an API key.

The server's certificate is trusted by --fingerprint (what holdfast serve
prints) or --ca-cert. For a URL on this machine without either, the
certificate of the one local server under the state directory is pinned.

The server, its trust and the session (or key) are written to
$HOLDFAST_CONFIG, else $XDG_CONFIG_HOME/holdfast/client.json, else
~/.config/holdfast/client.json, mode 0600. When the user is a member of
exactly one tenant, it becomes the default --tenant.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return report(cmd, runLogin(ctx, cmd, args, &f))
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.user, "user", "u", "", "user name (default: the one logged in before)")
	fl.BoolVar(&f.passwordStdin, "password-stdin", false, "read the password from the first line of standard input")
	fl.StringVar(&f.totp, "totp", "", "six-digit TOTP code, once a second factor is enrolled")
	fl.StringVar(&f.caCert, "ca-cert", "", "PEM file of the certificate (or CA) to trust for the server")
	fl.StringVar(&f.fingerprint, "fingerprint", "", "SHA-256 fingerprint of the server's certificate to pin, sha256:<hex>")
	fl.StringVar(&f.keyID, "api-key-id", "", "log in with this API key (its id; not needed when the file names it)")
	fl.StringVar(&f.keyFile, "api-key-secret-file", "", "file with the API key's secret, or what apikey create --save wrote")
	cmd.MarkFlagsMutuallyExclusive("ca-cert", "fingerprint")
	cmd.MarkFlagsMutuallyExclusive("api-key-secret-file", "password-stdin")
	cmd.MarkFlagsMutuallyExclusive("api-key-secret-file", "totp")
	cmd.MarkFlagsMutuallyExclusive("api-key-secret-file", "user")
	return cmd
}

func runLogin(ctx context.Context, cmd *cobra.Command, args []string, f *loginFlags) error {
	out := cmd.OutOrStdout()
	path, err := client.DefaultConfigPath()
	if err != nil {
		return err
	}
	old, err := client.LoadConfig(path)
	if err != nil {
		old = &client.Config{} // missing or unreadable: this login rewrites it
	}
	server := old.Server
	if len(args) == 1 {
		server = args[0]
		if !strings.Contains(server, "://") {
			server = "https://" + server
		}
	}
	server = strings.TrimRight(server, "/")
	if server == "" {
		return errors.New("give the server's URL: holdfast login https://HOST:PORT")
	}
	if f.keyID != "" && f.keyFile == "" {
		return errors.New("--api-key-id needs --api-key-secret-file")
	}
	cfg := &client.Config{Server: server}
	if err := trustServer(out, cfg, old, f); err != nil {
		return err
	}

	var me *api.Me
	if f.keyFile != "" {
		k, err := client.ReadAPIKeyFile(f.keyFile, f.keyID)
		if err != nil {
			return err
		}
		cfg.APIKey = &k
		c, err := cfg.Client(path)
		if err != nil {
			return err
		}
		if me, err = c.Me(ctx); err != nil {
			return err
		}
	} else {
		user := f.user
		if user == "" && old.Server == server {
			user = old.User
		}
		if user == "" {
			return errors.New("who? give --user NAME")
		}
		c, err := client.New(server, cfg.TLSOptions()...)
		if err != nil {
			return err
		}
		pw, err := readSecret(cmd, "Password for "+user+": ", f.passwordStdin)
		if err != nil {
			return err
		}
		in := api.LoginRequest{User: user, Password: pw, TOTP: f.totp}
		_, err = c.Login(ctx, in)
		var p *api.Problem
		if errors.As(err, &p) && strings.HasSuffix(p.Type, "/second-factor-required") && !acceptsField(p, "totp") {
			return errors.New("this account's second factor is a passkey, which needs a browser: log in in the portal, or here with an API key (holdfast apikey create, then holdfast login --api-key-secret-file)")
		}
		if errors.As(err, &p) && (strings.HasSuffix(p.Type, "/totp-required") || strings.HasSuffix(p.Type, "/second-factor-required")) && in.TOTP == "" {
			tty, ok := cmd.InOrStdin().(*os.File)
			if f.passwordStdin || !ok || !isTerminal(tty) {
				return errors.New("this account has a second factor: give --totp CODE")
			}
			fmt.Fprint(cmd.ErrOrStderr(), "TOTP code: ")
			if in.TOTP, err = readNoEcho(tty); err != nil {
				return err
			}
			fmt.Fprintln(cmd.ErrOrStderr())
			_, err = c.Login(ctx, in)
		}
		if err != nil {
			return err
		}
		s := c.Session()
		cfg.Session = &s
		if me, err = c.Me(ctx); err != nil {
			return err
		}
	}
	cfg.User = me.User.Name
	switch {
	case len(me.User.Memberships) == 1:
		cfg.Tenant = me.User.Memberships[0].Tenant
	case old.Server == server && old.User == cfg.User:
		cfg.Tenant = old.Tenant
	}
	if err := cfg.Save(path); err != nil {
		return fmt.Errorf("saving the credentials: %w", err)
	}
	role := ""
	if me.User.Operator {
		role = " (operator)"
	}
	how := "a session"
	if cfg.APIKey != nil {
		how = "API key " + cfg.APIKey.ID
	}
	fmt.Fprintf(out, "Logged in to %s as %s%s with %s.\n", server, me.User.Name, role, how)
	if cfg.Tenant != "" {
		fmt.Fprintf(out, "Default tenant: %s.\n", cfg.Tenant)
	}
	fmt.Fprintf(out, "Credentials saved in %s.\n", path)
	return nil
}

// acceptsField reports whether a problem names field among those that
// would do (second-factor-required names the factors accepted).
func acceptsField(p *api.Problem, field string) bool {
	for _, e := range p.Errors {
		if e.Field == field {
			return true
		}
	}
	return false
}

// trustServer sets how cfg trusts the server: the flags, else what the
// old config said for the same server, else — on this machine — the
// local server's certificate, else the system's roots.
func trustServer(out io.Writer, cfg, old *client.Config, f *loginFlags) error {
	switch {
	case f.fingerprint != "":
		if _, err := client.ParseFingerprint(f.fingerprint); err != nil {
			return err
		}
		cfg.Fingerprint = f.fingerprint
	case f.caCert != "":
		b, err := os.ReadFile(f.caCert)
		if err != nil {
			return err
		}
		if _, err := client.FingerprintPEM(b); err != nil {
			return fmt.Errorf("--ca-cert %s: %w", f.caCert, err)
		}
		cfg.CACert = string(b)
	case old.Server == cfg.Server && (old.Fingerprint != "" || old.CACert != ""):
		cfg.Fingerprint, cfg.CACert = old.Fingerprint, old.CACert
	case client.IsLoopback(cfg.Server):
		state := deploy.DefaultStateDir()
		certs := client.LocalServerCerts(state)
		switch len(certs) {
		case 0:
			return nil
		case 1:
			b, err := os.ReadFile(certs[0])
			if err != nil {
				return err
			}
			fp, err := client.FingerprintPEM(b)
			if err != nil {
				return fmt.Errorf("%s: %w", certs[0], err)
			}
			cfg.Fingerprint = fp
			fmt.Fprintf(out, "Trusting the local server's certificate %s (%s).\n", certs[0], fp)
		default:
			return fmt.Errorf("several local servers under %s (%s): give --ca-cert FILE or --fingerprint", state, strings.Join(certs, ", "))
		}
	}
	return nil
}

func newLogout() *cobra.Command {
	return remoteCmd("logout", "End the session and forget the credentials", cobra.NoArgs, global, func(r *remote, _ []string) error {
		if r.cfg.Session == nil && r.cfg.APIKey == nil {
			return r.done("Not logged in.")
		}
		if r.cfg.Session != nil {
			if err := r.c.Logout(r.ctx); err != nil {
				fmt.Fprintf(r.cmd.ErrOrStderr(), "holdfast: the server did not end the session (%v); forgetting it here\n", err)
			}
		}
		if r.cfg.APIKey != nil {
			fmt.Fprintf(r.cmd.OutOrStdout(), "Forgetting API key %s; it stays valid until revoked (holdfast apikey revoke %s).\n", r.cfg.APIKey.ID, r.cfg.APIKey.ID)
		}
		r.cfg.Session, r.cfg.APIKey = nil, nil
		if err := r.cfg.Save(r.path); err != nil {
			return err
		}
		return r.done("Logged out of %s.", r.cfg.Server)
	})
}

func newWhoami() *cobra.Command {
	return remoteCmd("whoami", "Show who the credentials log in as", cobra.NoArgs, global, func(r *remote, _ []string) error {
		me, err := r.c.Me(r.ctx)
		if err != nil {
			return err
		}
		return r.print(me, func(w io.Writer) error {
			return fields(w, "Server", r.cfg.Server, "User", me.User.Name, "Operator", yesNo(me.User.Operator),
				"Via", strings.TrimSpace(me.Via+" "+me.APIKey), "Methods", strings.Join(me.Methods, ","),
				"Tenants", memberships(me.User.Memberships), "Default tenant", r.cfg.Tenant)
		})
	})
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func memberships(ms []api.Membership) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.Tenant+":"+m.Role)
	}
	return strings.Join(s, ",")
}
