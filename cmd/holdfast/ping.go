package main

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/deploy"
)

func newPing() *cobra.Command {
	var stateDir, cloud string
	var count int
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "ping INSTANCE ADDRESS",
		Short: "Send ICMP echo requests from inside an instance (engines that offer it: local)",
		Long: `Pings ADDRESS from INSTANCE's network namespace, as the instance itself
would: the zone's firewall decides, exactly as for the instance's own
traffic. Exit status 1 when no reply came. Needs no ping binary in the
instance.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			dst, err := netip.ParseAddr(args[1])
			if err != nil {
				return fmt.Errorf("address %q: %w", args[1], err)
			}
			ctx, stop := interruptible()
			defer stop()
			in, err := deploy.FindInstance(ctx, stateDir, "", cloud, args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			got := 0
			for i := range count {
				start := time.Now()
				if err := in.Ping(ctx, dst, timeout); errors.Is(err, deploy.ErrNotOffered) {
					return err
				} else if err != nil {
					fmt.Fprintf(out, "no reply from %s (seq %d): %v\n", dst, i+1, err)
				} else {
					got++
					fmt.Fprintf(out, "reply from %s: seq %d time=%.2f ms\n", dst, i+1, float64(time.Since(start).Microseconds())/1000)
				}
				if ctx.Err() != nil {
					break
				}
			}
			fmt.Fprintf(out, "%d sent, %d received\n", count, got)
			if got == 0 {
				return errReported
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", deploy.DefaultStateDir(), "where Holdfast keeps its state")
	cmd.Flags().StringVar(&cloud, "cloud", "", "the instance's cloud, when several clouds have one by that name")
	cmd.Flags().IntVarP(&count, "count", "c", 3, "echo requests to send")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Second, "how long to wait for each reply")
	return cmd
}
