package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/audit"
	"github.com/holdfast/holdfast/internal/auth"
	"github.com/holdfast/holdfast/internal/auth/oidc"
	"github.com/holdfast/holdfast/internal/server"
	"github.com/holdfast/holdfast/internal/spec"
	"github.com/holdfast/holdfast/internal/sqldb"
)

// serveFlags configure the control plane.
type serveFlags struct {
	listen      string
	tlsCert     string
	tlsKey      string
	noTLS       bool
	hosts       []string
	logFormat   string
	logLevel    string
	resync      time.Duration
	noReconcile bool
	oidcIssuer  string
	oidcClient  string
	oidcSecret  string
	oidcRedir   string
	witness     string
	cpInterval  time.Duration
	guestListen string
	publicURL   string
}

func (f *serveFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8443", "address to serve the API on")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate (PEM); a self-signed one is made on first start when omitted")
	fl.StringVar(&f.tlsKey, "tls-key", "", "TLS private key (PEM) of --tls-cert")
	fl.BoolVar(&f.noTLS, "no-tls", false, "serve plain HTTP (only behind a TLS-terminating proxy)")
	fl.StringSliceVar(&f.hosts, "tls-host", nil, "extra names or addresses for the self-signed certificate")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fl.DurationVar(&f.resync, "resync", 5*time.Minute, "how often to observe the cloud and repair drift when idle (0: never)")
	fl.BoolVar(&f.noReconcile, "no-reconcile", false, "record API changes without converging the cloud (maintenance, load tests)")
	fl.StringVar(&f.oidcIssuer, "oidc-issuer", "", "OpenID Connect issuer URL, to offer login through it")
	fl.StringVar(&f.oidcClient, "oidc-client-id", "", "OpenID Connect client id")
	fl.StringVar(&f.oidcSecret, "oidc-client-secret-file", "", "file holding the OpenID Connect client secret")
	fl.StringVar(&f.oidcRedir, "oidc-redirect-url", "", "this server's callback URL registered at the provider (…/v1/auth/oidc/callback)")
	fl.StringVar(&f.witness, "audit-witness", "", "http(s) URL to POST every audit checkpoint to, besides "+server.AuditCheckpointsFile)
	fl.StringVar(&f.guestListen, "guest-listen", "", "TCP address to serve instances' agents and the Proxmox metadata service on, besides the local socket (e.g. 192.168.100.1:8442)")
	fl.StringVar(&f.publicURL, "public-url", "", "the origin browsers reach this server at, which passkeys are bound to: https://HOST[:PORT] with a host name, "+
		"not an IP address (WebAuthn allows none); default https://localhost:PORT of --listen. With a self-signed certificate, give HOST to --tls-host too")
	fl.DurationVar(&f.cpInterval, "audit-checkpoint-interval", audit.DefaultCheckpointInterval, "the longest an audit entry waits for a signed checkpoint (give audit verify the same)")
}

func (f *serveFlags) logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch f.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", f.logFormat)
}

func newServe() *cobra.Command {
	var st stateFlags
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve [PATH]",
		Short: "Serve the control plane API of a cloud",
		Long: `Serves the control plane of the cloud whose spec is at PATH (default
` + defaultExample + `): the REST API under /v1 (OpenAPI at /v1/openapi.json),
/metrics, /healthz and /readyz. Tenant networks and instances created
through the API are converged by the same reconciler as apply.

The first start creates an operator account and prints its one-time
password. SIGINT or SIGTERM shut down gracefully: requests under way and the
reconcile pass under way finish; operations not started stay pending for the
next start.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := defaultExample
			if len(args) == 1 {
				path = args[0]
			}
			ctx, stop := interruptible()
			defer stop()
			return runServe(ctx, cmd, path, &st, &f)
		},
	}
	st.add(cmd, false)
	st.addDatabase(cmd)
	f.add(cmd)
	return cmd
}

// runServe serves until ctx ends.
func runServe(ctx context.Context, cmd *cobra.Command, path string, st *stateFlags, f *serveFlags) error {
	log, err := f.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	resync := f.resync
	if resync == 0 {
		resync = -1
	}
	publicURL := f.publicURL
	if publicURL == "" {
		if publicURL, err = server.DefaultPublicURL(f.listen); err != nil {
			return fmt.Errorf("--listen: %w", err)
		}
	}
	if err := sqldb.CheckURL(st.database); err != nil {
		return fmt.Errorf("--database: %w", err)
	}
	s, err := server.New(server.Config{SpecPath: path, StateDir: st.stateDir, Database: st.database, Logger: log, Realize: !f.noReconcile, Resync: resync,
		AuditWitness: f.witness, AuditCheckpointInterval: f.cpInterval, GuestListen: f.guestListen, PublicURL: publicURL})
	if err != nil {
		if f.publicURL != "" {
			return fmt.Errorf("--public-url: %w", err)
		}
		return err
	}
	if f.oidcIssuer != "" {
		secret, err := os.ReadFile(f.oidcSecret)
		if err != nil {
			s.Close()
			return fmt.Errorf("--oidc-client-secret-file: %w", err)
		}
		err = s.EnableOIDC(ctx, oidc.Config{Issuer: f.oidcIssuer, ClientID: f.oidcClient, RedirectURL: f.oidcRedir,
			ClientSecret: auth.SecretString(strings.TrimSpace(string(secret)))})
		if err != nil {
			s.Close()
			return err
		}
	}
	out := cmd.OutOrStdout()
	return s.Run(ctx, f.listen, server.TLS{CertFile: f.tlsCert, KeyFile: f.tlsKey, Disable: f.noTLS, Hosts: f.hosts}, func(l server.Listening) {
		fmt.Fprintf(out, "\nControl plane of %q at %s\n", s.Cloud(), l.URL)
		if l.Fingerprint != "" {
			fmt.Fprintf(out, "  TLS certificate %s\n  fingerprint     %s\n", l.CertFile, l.Fingerprint)
		}
		fmt.Fprintf(out, "  portal          %s/ (in a browser)\n", publicURL)
		fmt.Fprintf(out, "  passkeys for    %s (--public-url)\n", publicURL)
		if b := s.Bootstrap; b.User != "" {
			fmt.Fprintf(out, `
First start: an operator account was created. Its password is shown once:
  user      %s
  password  %s
Log in and change it:
  holdfast login %s --user %s
  holdfast user passwd
`, b.User, b.Password.Expose(), l.URL, b.User)
		}
		fmt.Fprintf(out, "\nServing until interrupted (Ctrl-C). The cloud keeps running when the server stops.\n")
	})
}

func newAudit() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Inspect the control plane's audit log"}
	var st stateFlags
	var v auditVerifyFlags
	verify := &cobra.Command{
		Use:   "verify [PATH]",
		Short: "Check the audit log's hash chain and signed checkpoints",
		Long: `Reads the audit log of the cloud whose spec is at PATH (default
` + defaultExample + `) and checks every entry's hash, the chain linking
each entry to the one before, and the Ed25519-signed checkpoints. Names the
entry that was edited, inserted, reordered or deleted. Exit status 1 when
the log does not verify.

The server publishes every checkpoint as it makes it to
` + server.AuditCheckpointsFile + ` beside the log; ship that file off the host
and give a copy with --checkpoints: each published checkpoint must be
signed by the key and match the log, and the log may not end before the
newest. That is what shows a log that was emptied, cut back, or rewritten
with its checkpoints deleted. Without --checkpoints, an empty log and
entries older than the checkpoint interval that no checkpoint covers do
not verify, and the report says what could not be checked.

The checkpoint key is read from audit.pub beside the log unless --key gives
it: keep a copy of audit.pub somewhere the server cannot write.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(v.out, "text", "json"); err != nil {
				return err
			}
			path := defaultExample
			if len(args) == 1 {
				path = args[0]
			}
			return runAuditVerify(cmd, path, &st, &v)
		},
	}
	st.add(verify, false)
	st.addDatabase(verify)
	fl := verify.Flags()
	fl.StringVar(&v.key, "key", "", "file with the checkpoint public key (hex); default audit.pub beside the log")
	fl.StringVar(&v.checkpoints, "checkpoints", "", "a copy of the published checkpoints ("+server.AuditCheckpointsFile+") to check the log against")
	fl.DurationVar(&v.interval, "checkpoint-interval", audit.DefaultCheckpointInterval, "the server's --audit-checkpoint-interval")
	fl.StringVarP(&v.out, "output", "o", "text", "output format: text, json")
	fl.StringVar(&v.cloud, "cloud", "", "the cloud's name, when it is served under another name than its spec's")
	cmd.AddCommand(verify)
	return cmd
}

type auditVerifyFlags struct {
	key, checkpoints, out, cloud string
	interval                     time.Duration
}

func runAuditVerify(cmd *cobra.Command, path string, st *stateFlags, v *auditVerifyFlags) error {
	if err := sqldb.CheckURL(st.database); err != nil {
		return fmt.Errorf("--database: %w", err)
	}
	cloud := v.cloud
	if cloud == "" {
		s, diags := spec.Check(path)
		if diags.HasErrors() {
			printDiags(cmd.ErrOrStderr(), diags)
			return errReported
		}
		cloud = s.Cloud.Name
	}
	dir := server.Dir(st.stateDir, cloud)
	db := sqldb.In(st.database, filepath.Join(dir, "audit.db"), "audit")
	if st.database == "" {
		if _, err := os.Stat(db.File); err != nil {
			return fmt.Errorf("no audit log for cloud %q: %w (has holdfast serve run?)", cloud, err)
		}
	}
	keyFile := v.key
	if keyFile == "" {
		keyFile = filepath.Join(dir, "audit.pub")
	}
	raw, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	pub, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%s: not a hex Ed25519 public key", keyFile)
	}
	var opts []audit.VerifyOption
	if v.checkpoints != "" {
		f, err := os.Open(v.checkpoints)
		if err != nil {
			return err
		}
		published, err := audit.ReadPublished(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", v.checkpoints, err)
		}
		opts = append(opts, audit.AgainstPublished(published))
	}
	l, err := audit.Open(db, nil, audit.CheckpointInterval(v.interval))
	if err != nil {
		return err
	}
	defer l.Close()
	rep, err := l.Verify(cmd.Context(), ed25519.PublicKey(pub), opts...)
	if err != nil {
		return err
	}
	if v.out == "json" {
		if err := writeJSON(cmd.OutOrStdout(), rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(cmd.OutOrStdout(), rep.String())
	}
	if !rep.OK() {
		return errReported
	}
	return nil
}
