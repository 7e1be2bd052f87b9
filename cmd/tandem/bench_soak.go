package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"tandem/internal/testbed"
)

func init() { benchSubcommands = append(benchSubcommands, newBenchSoakCmd, newBenchWakeupsCmd) }

// newBenchWakeupsCmd is the soak's wake-up meter: a Go program shaped like
// the agent (one processor, Go timers) that sleeps --interval in a loop
// and measures how late it wakes. The bed runs it under SCHED_RR (as the
// daemons) and at normal priority.
func newBenchWakeupsCmd() *cobra.Command {
	var interval, stallAt time.Duration
	cmd := &cobra.Command{
		Use:    "wakeups",
		Short:  "Measure timer wake-up lateness until SIGTERM; print late wake-ups and a summary as JSON lines",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			runtime.GOMAXPROCS(1) // as the agent runs
			stop := make(chan os.Signal, 1)
			signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
			enc := json.NewEncoder(cmd.OutOrStdout())
			w := testbed.WakeupRecorder{StallAt: stallAt}
			t := time.NewTimer(interval)
			due := time.Now().Add(interval)
			for {
				select {
				case <-stop:
					return enc.Encode(map[string]any{"summary": w.Summary()})
				case now := <-t.C:
					n := len(w.Stalls)
					w.Observe(due, now.Sub(due))
					if len(w.Stalls) > n {
						enc.Encode(map[string]any{"stall": w.Stalls[n]})
					}
					due = time.Now().Add(interval)
					t.Reset(interval)
				}
			}
		},
	}
	cmd.Flags().DurationVar(&interval, "interval", 10*time.Millisecond, "sleep between wake-ups")
	cmd.Flags().DurationVar(&stallAt, "stall", 50*time.Millisecond, "report each wake-up at least this late")
	return cmd
}

func newBenchSoakCmd() *cobra.Command {
	var opts testbed.SoakOptions
	var profiles []string
	var stressArgs string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "soak",
		Short: "Count false failovers under stress-ng, per timing profile of tandem and keepalived (root)",
		Long: "soak builds a fresh test bed for each profile, starts tandem (or keepalived) with that\n" +
			"timing and the client's prober, then runs stress-ng on the machine (CPU, memory, sync()\n" +
			"and fsync storms on every core) for --duration, injecting no fault. It reports the moves\n" +
			"of the serving node the client saw (each a false failover), failed probes and the longest\n" +
			"gap, split brain, tandem's lease_lost / takeover / node_down events, keepalived's state\n" +
			"changes, and the machine's load and timer wake-up lateness in the window (a Go program\n" +
			"like the agent, at the daemons' SCHED_RR priority and at normal priority).\n\n" +
			"Profiles: tandem (its defaults), tandem:HEARTBEAT/NODE_TIMEOUT[/LEASE] (the lease defaults\n" +
			"to the node timeout), keepalived (advert_int 1s) or keepalived:ADVERT; bare numbers are ms.\n" +
			"Default: " + strings.Join(testbed.DefaultSoakProfiles, ",") + ".\n" +
			"Needs root; installs stress-ng and keepalived if missing. Work directories of profiles\n" +
			"that moved or lost a lease are kept and named in the report.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if os.Geteuid() != 0 {
				return exitWith(2, fmt.Errorf("bench soak needs root (network namespaces, nftables, VIPs)"))
			}
			for _, s := range profiles {
				p, err := testbed.ParseSoakProfile(s)
				if err != nil {
					return exitWith(2, err)
				}
				opts.Profiles = append(opts.Profiles, p)
			}
			if stressArgs != "" {
				opts.Stress = strings.Fields(stressArgs)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			opts.Binary = exe
			opts.Logf = func(format string, args ...any) {
				fmt.Fprintf(cmd.ErrOrStderr(), time.Now().Format("15:04:05 ")+format+"\n", args...)
			}
			res, err := testbed.RunSoak(ctx, opts)
			if len(res.Profiles) > 0 || err == nil {
				if asJSON {
					printJSON(cmd.OutOrStdout(), res)
				} else {
					testbed.PrintSoak(cmd.OutOrStdout(), res)
				}
			}
			return err
		},
	}
	cmd.Flags().DurationVar(&opts.Duration, "duration", 10*time.Minute, "how long each profile runs under stress")
	cmd.Flags().StringSliceVar(&profiles, "profiles", nil, "profiles to run, in order (default "+strings.Join(testbed.DefaultSoakProfiles, ",")+")")
	cmd.Flags().StringVar(&stressArgs, "stress", "", "stress-ng stressor arguments (default \""+strings.Join(testbed.DefaultStressArgs(), " ")+"\")")
	cmd.Flags().BoolVar(&opts.NoStress, "no-stress", false, "the same window without stress-ng (a baseline)")
	cmd.Flags().BoolVar(&opts.StressRealtime, "stress-realtime", false, "run stress-ng under SCHED_RR at the daemons' priority (what not to do)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	cmd.Flags().BoolVar(&opts.Keep, "keep", false, "keep every profile's work directory")
	return cmd
}
