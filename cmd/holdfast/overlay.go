package main

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/overlay"
)

func newOverlay() *cobra.Command {
	ov := &cobra.Command{Use: "overlay", Short: "The cloud's Nebula overlay: certificates from its CA"}
	ov.AddCommand(newOverlayCert())
	return ov
}

func newOverlayCert() *cobra.Command {
	var (
		o           overlay.WorkstationOptions
		ip          string
		groups      []string
		lighthouses []string
		asJSON      bool
	)
	cmd := &cobra.Command{
		Use:   "cert NAME --ip ADDR/BITS --groups G[,G...] -o DIR",
		Short: "Issue an overlay certificate for an operator's workstation",
		Long: `Issues a Nebula host certificate named NAME from the cloud's overlay CA
(creating the CA if the cloud has none yet) and writes into DIR what the
stock Nebula client needs: ca.crt, host.crt, host.key (0600) and config.yml.
Join with: sudo nebula -config DIR/config.yml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Dir == "" {
				return errors.New("missing -o DIR: the directory to write the certificate to")
			}
			prefix, err := netip.ParsePrefix(ip)
			if err != nil {
				return fmt.Errorf("--ip %q: want the overlay address with its prefix length, e.g. 10.10.10.200/24", ip)
			}
			for _, l := range lighthouses {
				lh, err := overlay.ParseLighthouse(l)
				if err != nil {
					return fmt.Errorf("--lighthouse: %w", err)
				}
				o.Lighthouses = append(o.Lighthouses, lh)
			}
			o.Member = overlay.Member{Name: args[0], IP: prefix, Groups: groups}
			w, err := overlay.IssueWorkstation(o)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), w)
			}
			out := cmd.OutOrStdout()
			if w.CACreated {
				fmt.Fprintf(out, "created the overlay CA of cloud %s (fingerprint %s)\n", w.Cloud, w.CAFingerprint)
			}
			fmt.Fprintf(out, "issued %s %s groups [%s], fingerprint %s, expires %s\n",
				w.Name, w.IP, strings.Join(w.Groups, ","), w.Fingerprint, w.NotAfter.Format(time.RFC3339))
			fmt.Fprintf(out, "wrote %s, %s, %s, %s\n", w.CA, w.Cert, w.Key, w.Config)
			_, err = fmt.Fprintf(out, "join with: sudo nebula -config %s\n", w.Config)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&o.Dir, "output", "o", "", "directory to write ca.crt, host.crt, host.key and config.yml to")
	fl.StringVar(&ip, "ip", "", "overlay address with prefix length, e.g. 10.10.10.200/24")
	fl.StringSliceVar(&groups, "groups", nil, "the certificate's groups, comma-separated")
	fl.StringArrayVar(&lighthouses, "lighthouse", nil, "a lighthouse for config.yml: OVERLAY_IP=HOST:PORT[,HOST:PORT] (repeatable)")
	fl.DurationVar(&o.Validity, "validity", overlay.DefaultHostValidity, "how long the certificate is valid")
	fl.StringVar(&o.Cloud, "cloud", "", "the cloud whose CA signs (default: the only cloud under --state-dir)")
	fl.StringVar(&o.StateDir, "state-dir", deploy.DefaultStateDir(), "where Holdfast keeps its state ($HOLDFAST_STATE_DIR)")
	fl.BoolVar(&asJSON, "json", false, "print what was written as JSON")
	_ = cmd.MarkFlagRequired("ip")
	return cmd
}
