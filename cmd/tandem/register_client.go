package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"tandem/internal/blockreg"
)

func init() { subcommands = append(subcommands, newRegisterClientCmd) }

// bench-register-client is the test bed's block-register workload: it runs
// on the client host against a volume group's NBD export and records every
// operation (JSON lines) until SIGTERM; --final reads every block once.
func newRegisterClientCmd() *cobra.Command {
	cfg := blockreg.DefaultConfig()
	var out string
	var stamp uint16
	cmd := &cobra.Command{
		Use:    "bench-register-client",
		Short:  "Write and read registers (blocks) of an NBD export, recording each operation; JSON lines",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			if out != "" {
				f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
				if err != nil {
					return exitWith(2, err)
				}
				defer f.Close()
				w = f
			}
			cfg.Stamp = stamp
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rec := blockreg.NewRecorder(w)
			if err := blockreg.Run(ctx, cfg, rec.Record); err != nil {
				return err
			}
			if err := rec.Err(); err != nil {
				return fmt.Errorf("record the history: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Addr, "addr", "", "the NBD export's host:port")
	f.StringVar(&cfg.Export, "export", "", "the export's name")
	f.IntVar(&cfg.Blocks, "blocks", cfg.Blocks, "registers, spread over the export")
	f.IntVar(&cfg.BlockSize, "block-size", cfg.BlockSize, "bytes of a register")
	f.IntVar(&cfg.Clients, "clients", cfg.Clients, "clients, one operation in flight each")
	f.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "an operation's timeout (its outcome is then unknown)")
	f.IntVar(&cfg.WritePercent, "write-percent", cfg.WritePercent, "share of writes (write + flush)")
	f.DurationVar(&cfg.Pace, "pace", cfg.Pace, "a client's think time after each operation")
	f.Uint64Var(&cfg.Seed, "seed", 1, "draws the operations")
	f.Uint16Var(&stamp, "stamp", 0, "goes into every write's number (a different one per run on one volume)")
	f.BoolVar(&cfg.Final, "final", false, "read every block once and exit")
	f.StringVar(&out, "out", "", "append the history to this file (default: stdout)")
	return cmd
}
