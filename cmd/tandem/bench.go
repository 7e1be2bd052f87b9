package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"tandem/internal/testbed"
)

func init() { subcommands = append(subcommands, newBenchCmd) }

// benchSubcommands are the benchmarks under `tandem bench`; a file of this
// package adds its own in init.
var benchSubcommands = []func() *cobra.Command{newBenchFailoverCmd}

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmarks that compare tandem with what users run today, measured in the same run",
		Args:  cobra.NoArgs,
	}
	for _, mk := range benchSubcommands {
		cmd.AddCommand(mk())
	}
	return cmd
}

// benchStart is the start of a benchmark on the test bed: it needs root
// (needRoot says why), ends on ^C or SIGTERM, and runs this executable
// on the bed's hosts.
func benchStart(cmd *cobra.Command, needRoot string, binary *string) (context.Context, context.CancelFunc, error) {
	if os.Geteuid() != 0 {
		return nil, nil, exitWith(2, errors.New(needRoot))
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	*binary = exe
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	return ctx, stop, nil
}

func newBenchFailoverCmd() *cobra.Command {
	var opts testbed.BenchOptions
	var asJSON, stress, twoNode bool
	var tandemProfile string
	var races int
	var fenceDelay time.Duration
	cmd := &cobra.Command{
		Use:   "failover",
		Short: "Measure unplanned failover as a client sees it, against keepalived, on a bed of network namespaces (root)",
		Long: "failover builds a test bed of network namespaces (node1, node2, a witness and a client\n" +
			"host, two bridges), runs tandem on it and, on the same bed, keepalived (VRRPv3) with\n" +
			"advert_int equal to tandem's heartbeat interval and with its default profile. For each\n" +
			"fault (the active node SIGKILLed, frozen, cut off; a partition between the data nodes)\n" +
			"it repeats --runs times and reports min / median / p95 / max of the window in which the\n" +
			"client (probing every 10 ms) got no answer, the ratio tandem / keepalived, and whether\n" +
			"the VIP was ever answered from two nodes. --tandem and --keepalived-advert choose the\n" +
			"timings compared (e.g. each tool's fastest setting that survives `tandem bench soak`).\n" +
			"Needs root; installs keepalived if missing.\n" +
			"With the default profile it takes about 15 minutes for 20 runs.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop, err := benchStart(cmd, "bench failover needs root (network namespaces, nftables, VIPs)", &opts.Binary)
			if err != nil {
				return err
			}
			defer stop()
			if tandemProfile != "" {
				if opts.Tandem, err = testbed.ParseSoakProfile(tandemProfile); err != nil || opts.Tandem.System != "tandem" {
					return exitWith(2, fmt.Errorf("--tandem %q: want tandem:HEARTBEAT/NODE_TIMEOUT[/LEASE]", tandemProfile))
				}
			}
			if stress {
				opts.Stress = testbed.DefaultStressArgs()
			}
			opts.Logf = func(format string, args ...any) { fmt.Fprintf(cmd.ErrOrStderr(), format+"\n", args...) }
			if twoNode {
				res, err := testbed.RunTwoNodeBench(ctx, testbed.TwoNodeOptions{Binary: opts.Binary, Runs: opts.Runs, Races: races,
					FenceDelay: fenceDelay, Logf: opts.Logf, Keep: opts.Keep})
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(cmd.OutOrStdout(), res)
				}
				testbed.PrintTwoNodeBench(cmd.OutOrStdout(), res)
				return nil
			}
			res, err := testbed.RunBench(ctx, opts)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			testbed.PrintBench(cmd.OutOrStdout(), res)
			return nil
		},
	}
	cmd.Flags().IntVar(&opts.Runs, "runs", 20, "runs per fault and per system")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	cmd.Flags().StringSliceVar(&opts.Faults, "faults", nil, "faults to measure (default kill,freeze,cutoff,partition,stop)")
	cmd.Flags().BoolVar(&opts.NoDefaultProfile, "no-default-profile", false, "skip keepalived's default profile (advert_int 1s), the slow part")
	cmd.Flags().BoolVar(&opts.Keep, "keep", false, "keep the work directory (logs, probe timelines)")
	cmd.Flags().StringVar(&tandemProfile, "tandem", "", "tandem's timing, tandem:HEARTBEAT/NODE_TIMEOUT[/LEASE] (default: its defaults)")
	cmd.Flags().DurationSliceVar(&opts.KeepalivedAdverts, "keepalived-advert", nil,
		"keepalived's advert_int values (centiseconds) besides its default; the first is the ratio's baseline (default: tandem's heartbeat interval)")
	cmd.Flags().BoolVar(&stress, "stress", false, "run the soak benchmark's stress-ng load all through")
	cmd.Flags().BoolVar(&twoNode, "two-node", false,
		"two-node mode: no witness, a BMC (ipmi_sim) per node driven by fence_ipmilan; kill and cutoff of the active --runs times, then --races partitions of the pair (no keepalived)")
	cmd.Flags().IntVar(&races, "races", 50, "with --two-node: partitions of the pair (the fence race)")
	cmd.Flags().DurationVar(&fenceDelay, "fence-delay", 0, "with --two-node: two_node.fence_delay (default tandem's, 2s)")
	cmd.Flags().BoolVar(&opts.TandemVIPOnly, "tandem-vip-only", false,
		"tandem's group is the VIP only and the service runs on both nodes, as with keepalived (like for like; by default tandem also moves the service)")
	return cmd
}
