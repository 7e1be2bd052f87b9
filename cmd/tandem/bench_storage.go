package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"tandem/internal/testbed"
)

func init() { benchSubcommands = append(benchSubcommands, newBenchStorageCmd) }

func newBenchStorageCmd() *cobra.Command {
	var opts testbed.StorageBenchOptions
	var asJSON, stress bool
	cmd := &cobra.Command{
		Use:   "storage",
		Short: "Fail PostgreSQL on a replicated volume over again and again; count lost commits, measure the outage and pgbench against a local disk (root)",
		Long: "storage builds a test bed of network namespaces and runs tandem with one group: a\n" +
			"replicated volume (sync), an ext4 file system on it, PostgreSQL 15 (Debian's\n" +
			"postgresql-15) and a VIP. It first runs pgbench from the client host on that database,\n" +
			"on one on a directory of the same machine's disk (not replicated: tps_ratio) and on\n" +
			"one on ext4 on a loop device over a file of that disk (tps_ratio_loop), in turn. Then a client on the client host commits transactions through the VIP\n" +
			"all along and records each commit it saw, while each fault (the active node SIGKILLed,\n" +
			"frozen, cut off from the other voters) is repeated --runs times. Per fault and overall\n" +
			"it reports failovers, lost_transactions (recorded commits missing after a failover),\n" +
			"the client-seen outage (last commit on the old node → first on the new) and the\n" +
			"takeover's split (detect, decide, lease wait, promote, mount, service, vip, total).\n" +
			"Needs root and postgresql-15; 20 runs of the three faults take about 10 minutes.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop, err := benchStart(cmd, "bench storage needs root (network namespaces, nftables, VIPs, mounts)", &opts.Binary)
			if err != nil {
				return err
			}
			defer stop()
			if stress {
				opts.Stress = testbed.DefaultStressArgs()
			}
			opts.Logf = func(format string, args ...any) {
				fmt.Fprintf(cmd.ErrOrStderr(), time.Now().Format("15:04:05 ")+format+"\n", args...)
			}
			res, err := testbed.RunStorageBench(ctx, opts)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			testbed.PrintStorageBench(cmd.OutOrStdout(), res)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Runs, "runs", 20, "runs per fault")
	f.StringSliceVar(&opts.Faults, "faults", nil, "faults to repeat (default kill,freeze,cutoff)")
	f.IntVar(&opts.Clients, "clients", 4, "sessions of the committing client")
	f.DurationVar(&opts.PgbenchTime, "pgbench-time", 10*time.Second, "each pgbench round (two on each database)")
	f.IntVar(&opts.PgbenchClients, "pgbench-clients", 4, "pgbench's sessions")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	f.BoolVar(&opts.Keep, "keep", false, "keep the work directory (logs, the client's history)")
	f.BoolVar(&stress, "stress", false, "run the soak benchmark's stress-ng load all through")
	return cmd
}
