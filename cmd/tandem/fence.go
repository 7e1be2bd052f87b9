package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"os/user"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"tandem/internal/config"
	"tandem/internal/fence"
)

func init() { subcommands = append(subcommands, newFenceCmd) }

func newFenceCmd() *cobra.Command {
	var cfgPath, test string
	var yes bool
	cmd := &cobra.Command{
		Use:   "fence NODE --yes | fence --test DEVICE",
		Short: "Fence (power off) NODE through its fence devices, or test a device",
		Long: "fence NODE --yes powers NODE off through the fence devices and levels of the\n" +
			"configuration (docs/fencing.md), from this machine, and waits until it is confirmed\n" +
			"off (off then status off, or reboot) or every level failed (exit status 1).\n" +
			"Without --yes it refuses: a fenced node loses everything it runs.\n" +
			"It runs the agents locally; through the cluster (so the agents run on the node\n" +
			"that survives and the audit log records it) comes with the fencing integration.\n\n" +
			"fence --test DEVICE runs the device's monitor action, then status for each of its\n" +
			"plugs, and prints the result and how long it took; it powers nothing off.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			if (test == "") == (len(args) == 0) {
				return exitWith(2, errors.New("give NODE (with --yes) or --test DEVICE"))
			}
			c, err := config.Load(cfgPath)
			if err != nil {
				if probs := config.AsProblems(err); probs != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), probs.Error())
				}
				return exitWith(2, fmt.Errorf("%s: not a valid configuration", cfgPath))
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if test != "" {
				return fenceTest(ctx, cmd, c, test)
			}
			node := args[0]
			if !yes {
				return exitWith(2, fmt.Errorf("fencing %s powers it off with everything it runs; add --yes to do it", node))
			}
			if len(c.FenceLevelsOf(node)) == 0 {
				return exitWith(2, fmt.Errorf("no fence device fences %s (fence_devices[].nodes)", node))
			}
			f, err := fence.FromConfig(c)
			if err != nil {
				return exitWith(2, err)
			}
			actor := "tandem fence"
			if u, err := user.Current(); err == nil {
				actor = "tandem fence by " + u.Username
			}
			r, err := f.FenceBy(ctx, node, "by hand", actor)
			for _, a := range r.Attempts {
				res := "ok"
				if !a.OK {
					res = "failed: " + a.Err
				}
				fmt.Fprintf(out, "level %d %s %s (attempt %d): %s in %v\n", a.Level, a.Device, a.Action, a.Attempt, res, a.Duration.Round(time.Millisecond))
			}
			if err != nil {
				return exitWith(1, err)
			}
			fmt.Fprintf(out, "%s fenced: confirmed off by level %d in %v\n", node, r.Level, r.Duration.Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", defaultConfig, "cluster configuration file (its fence_devices and fence_levels)")
	cmd.Flags().StringVar(&test, "test", "", "test DEVICE: monitor, then status of each plug; powers nothing off")
	cmd.Flags().BoolVar(&yes, "yes", false, "really fence NODE")
	return cmd
}

func fenceTest(ctx context.Context, cmd *cobra.Command, c *config.Config, name string) error {
	out := cmd.OutOrStdout()
	var dev *config.FenceDevice
	for i := range c.FenceDevices {
		if c.FenceDevices[i].Name == name {
			dev = &c.FenceDevices[i]
		}
	}
	if dev == nil {
		return exitWith(2, fmt.Errorf("no fence device %q in the configuration", name))
	}
	d, err := fence.DeviceFromConfig(*dev)
	if err != nil {
		return exitWith(2, err)
	}
	start := time.Now()
	_, err = d.Run(ctx, fence.Monitor, "")
	if err != nil {
		fmt.Fprintf(out, "%s monitor: failed in %v: %v\n", name, time.Since(start).Round(time.Millisecond), err)
		return exitWith(1, fmt.Errorf("fence device %s does not answer", name))
	}
	fmt.Fprintf(out, "%s monitor: ok in %v\n", name, time.Since(start).Round(time.Millisecond))
	failed := false
	for _, node := range dev.Nodes {
		plug := dev.Plugs[node]
		start := time.Now()
		r, err := d.Run(ctx, fence.Status, plug)
		took := time.Since(start).Round(time.Millisecond)
		if err != nil {
			failed = true
			fmt.Fprintf(out, "%s status of %s: failed in %v: %v\n", name, node, took, err)
			continue
		}
		fmt.Fprintf(out, "%s status of %s: power %s in %v\n", name, node, r.Power, took)
	}
	if failed {
		return exitWith(1, fmt.Errorf("fence device %s: a status failed", name))
	}
	return nil
}
