// Command pve-emulator serves an emulated Proxmox VE API (in memory, with
// optional faults) until interrupted: a cluster to try the proxmox engine
// against without one. It is its own binary so that holdfast, which
// operators run in production, carries no test fixture.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/engine/proxmox/pve"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "pve-emulator:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	var (
		listen, token, durations string
		nodes                    []string
		faults                   pveemu.Faults
		seed                     uint64
		template                 int
		plainHTTP                bool
	)
	cmd := &cobra.Command{
		Use:   "pve-emulator",
		Short: "Serve an emulated Proxmox VE API (in memory, with optional faults) until interrupted",
		Long: `Serve an emulated Proxmox VE API as PVE serves it on port 8006: HTTPS with a
fresh self-signed certificate, whose SHA-256 fingerprint is printed for a spec's
proxmox: fingerprint: to pin. --http serves plain HTTP instead.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if token == "" {
				token = "root@pam!holdfast=" + rand.Text()
			}
			id, secret, ok := strings.Cut(token, "=")
			if !ok || !strings.Contains(id, "!") || secret == "" {
				return fmt.Errorf("--token %q: want USER@REALM!TOKENID=SECRET", token)
			}
			cfg := pveemu.Config{Tokens: map[string]string{id: secret}, Seed: seed, Faults: faults}
			if durations != "" {
				d, err := pveemu.ParseDurations(durations)
				if err != nil {
					return fmt.Errorf("--durations: %w", err)
				}
				cfg.Durations = d
			}
			emu := pveemu.New(cfg)
			for _, n := range nodes {
				if err := emu.AddNode(pveemu.Node{Name: n}); err != nil {
					return fmt.Errorf("--nodes: %w", err)
				}
			}
			if template > 0 && len(nodes) > 0 {
				err := emu.AddTemplate(pveemu.Template{Node: nodes[0], VMID: template, Name: "debian-12-cloudinit", DiskGiB: 4})
				if err != nil {
					return fmt.Errorf("--template: %w", err)
				}
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			var cert *tls.Certificate
			scheme := "http"
			if !plainHTTP {
				host, _, _ := net.SplitHostPort(listen)
				c, err := pveemu.SelfSignedCertificate(host)
				if err != nil {
					_ = ln.Close()
					return err
				}
				cert, scheme = &c, "https"
			}
			url := scheme + "://" + ln.Addr().String() + pveemu.APIPrefix
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Proxmox VE API emulator on %s (nodes %s", url, strings.Join(nodes, ", "))
			if template > 0 && len(nodes) > 0 {
				fmt.Fprintf(out, "; template %d on %s", template, nodes[0])
			}
			fmt.Fprintln(out, ")")
			curl := "curl"
			if cert != nil {
				fmt.Fprintf(out, "fingerprint: %s\n", pve.Fingerprint(cert.Leaf))
				curl = "curl -k" // the certificate is self-signed
			}
			fmt.Fprintf(out, "token: %s\n  %s -H 'Authorization: PVEAPIToken=%s' %s/version\n", token, curl, token, url)

			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			srv := pveemu.NewServer(emu, cert)
			srv.ErrorLog = log.New(cmd.ErrOrStderr(), "", log.LstdFlags)
			go func() {
				<-ctx.Done()
				shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(shutdown)
			}()
			if cert != nil {
				err = srv.ServeTLS(ln, "", "")
			} else {
				err = srv.Serve(ln)
			}
			if !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8006", "address to serve the API on")
	f.BoolVar(&plainHTTP, "http", false, "serve plain HTTP instead of HTTPS")
	f.StringSliceVar(&nodes, "nodes", []string{"pve1"}, "cluster node names")
	f.StringVar(&token, "token", "", "API token USER@REALM!TOKENID=SECRET to accept (default: root@pam!holdfast with a random secret)")
	f.IntVar(&template, "template", 9000, "VMID of a cloud-init template created on the first node (0: none)")
	f.StringVar(&durations, "durations", "", "task durations: TYPE=DURATION entries (qmclone=200ms,qmstart=100ms) and/or a scale factor of the defaults (0.1)")
	f.Float64Var(&faults.ErrorRate, "error-rate", 0, "share of requests answered with a 5xx (0-1)")
	f.Float64Var(&faults.DropRate, "drop-rate", 0, "share of requests whose connection is dropped (0-1)")
	f.Float64Var(&faults.StuckRate, "stuck-rate", 0, "share of tasks that never finish (0-1)")
	f.Float64Var(&faults.LostRate, "lost-rate", 0, "share of requests carried out whose answer is dropped (0-1)")
	f.DurationVar(&faults.Latency, "latency", 0, "latency added to every request")
	f.Uint64Var(&seed, "seed", 1, "seed of the fault injection")
	return cmd
}
