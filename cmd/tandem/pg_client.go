package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"tandem/internal/testbed"
)

func init() { subcommands = append(subcommands, newPGClientCmd) }

// bench-pg-client is the storage proof's database client: it runs on the
// test bed's client host, commits transactions through the VIP and
// records each one it saw committed (JSON lines) until SIGTERM; --ranges
// prints which sequence numbers the database holds.
func newPGClientCmd() *cobra.Command {
	var cfg testbed.PGClientConfig
	var out string
	var ranges bool
	cmd := &cobra.Command{
		Use:    "bench-pg-client",
		Short:  "Commit transactions to PostgreSQL through a VIP, recording each acknowledged commit; JSON lines",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Addr == "" {
				return exitWith(2, fmt.Errorf("--addr is required"))
			}
			if ranges {
				ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
				defer cancel()
				r, err := testbed.PGRanges(ctx, cfg.Addr)
				if err != nil {
					return err
				}
				return json.NewEncoder(cmd.OutOrStdout()).Encode(r)
			}
			w := cmd.OutOrStdout()
			if out != "" {
				f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
				if err != nil {
					return exitWith(2, err)
				}
				defer f.Close()
				w = f
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			enc := json.NewEncoder(w)
			var werr error
			err := testbed.RunPGClient(ctx, cfg, func(r testbed.PGRecord) {
				if werr == nil {
					werr = enc.Encode(r)
				}
			})
			if werr != nil {
				return fmt.Errorf("record the history: %w", werr)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Addr, "addr", "", "the database's host:port (the VIP)")
	f.IntVar(&cfg.Clients, "clients", 4, "sessions committing at once, one transaction in flight each")
	f.DurationVar(&cfg.OpTimeout, "op-timeout", 500*time.Millisecond, "a commit unanswered by then has an unknown outcome; the session dials again")
	f.DurationVar(&cfg.DialTimeout, "dial-timeout", 200*time.Millisecond, "one connection attempt")
	f.StringVar(&out, "out", "", "append the history to this file (default: stdout)")
	f.BoolVar(&ranges, "ranges", false, "print the runs of sequence numbers the database holds, as JSON, and exit")
	return cmd
}
