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

	"tandem/internal/api"
	"tandem/internal/config"
	"tandem/internal/fence"
	"tandem/internal/node"
)

func init() { subcommands = append(subcommands, newFenceCmd) }

func newFenceCmd() *cobra.Command {
	var f clientFlags
	var test string
	var yes, local bool
	cmd := &cobra.Command{
		Use:   "fence NODE --yes [--local] | fence --test DEVICE",
		Short: "Fence (power off) NODE through its fence devices, or test a device",
		Long: "fence NODE --yes asks this machine's agent to power NODE off through the fence\n" +
			"devices and levels of the configuration (docs/fencing.md) and waits until it is\n" +
			"confirmed off (off then status off, or reboot) or every level failed (exit status\n" +
			"1). The agent's audit log records who asked and every attempt, and a confirmed\n" +
			"fence of its peer counts as one of its own: a takeover waiting for it may start.\n" +
			"A fence that outlasts 25 s goes on in the agent (exit status 3; see tandem events).\n" +
			"With --local the fence agents run from this command instead, without an agent\n" +
			"(nothing is recorded but its output). Without --yes it refuses: a fenced node\n" +
			"loses everything it runs.\n\n" +
			"fence --test DEVICE runs the device's monitor action, then status for each of its\n" +
			"plugs, and prints the result and how long it took; it powers nothing off.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (test == "") == (len(args) == 0) {
				return exitWith(2, errors.New("give NODE (with --yes) or --test DEVICE"))
			}
			if test == "" && !yes {
				return exitWith(2, fmt.Errorf("fencing %s powers it off with everything it runs; add --yes to do it", args[0]))
			}
			if test == "" && !local {
				return fenceByAgent(cmd, &f, args[0])
			}
			c, err := config.Load(f.config)
			if err != nil {
				if probs := config.AsProblems(err); probs != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), probs.Error())
				}
				return exitWith(2, fmt.Errorf("%s: not a valid configuration", f.config))
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if test != "" {
				return fenceTest(ctx, cmd, c, test)
			}
			return fenceLocally(ctx, cmd, c, args[0])
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&test, "test", "", "test DEVICE: monitor, then status of each plug; powers nothing off")
	cmd.Flags().BoolVar(&yes, "yes", false, "really fence NODE")
	cmd.Flags().BoolVar(&local, "local", false, "run the fence agents from this command, not through the agent")
	return cmd
}

// fenceByAgent asks the agent to fence node.
func fenceByAgent(cmd *cobra.Command, f *clientFlags, node string) error {
	return f.call(func(ctx context.Context, c *api.Client) error {
		r, err := c.Fence(ctx, node)
		if err != nil {
			var ae *api.Error
			if errors.As(err, &ae) && ae.Code/100 == 4 {
				return exitWith(2, err)
			}
			return err
		}
		if r.UnderWay {
			return exitWith(3, errors.New(r.Message))
		}
		return printFence(cmd, node, r.Result, r.Error)
	})
}

// fenceLocally runs the fence from this command.
func fenceLocally(ctx context.Context, cmd *cobra.Command, c *config.Config, target string) error {
	if len(c.FenceLevelsOf(target)) == 0 {
		return exitWith(2, fmt.Errorf("no fence device fences %s (fence_devices[].nodes)", target))
	}
	f, err := node.FencerFromConfig(c)
	if err != nil {
		return exitWith(2, err)
	}
	actor := "tandem fence"
	if u, err := user.Current(); err == nil {
		actor = "tandem fence by " + u.Username
	}
	r, err := f.FenceBy(ctx, target, "by hand", actor)
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	return printFence(cmd, target, r, msg)
}

// printFence prints each attempt and the outcome; a fence that failed is
// exit status 1.
func printFence(cmd *cobra.Command, node string, r fence.FenceResult, failure string) error {
	out := cmd.OutOrStdout()
	for _, a := range r.Attempts {
		res := "ok"
		if !a.OK {
			res = "failed: " + a.Err
		}
		fmt.Fprintf(out, "level %d %s %s (attempt %d): %s in %v\n", a.Level, a.Device, a.Action, a.Attempt, res, a.Duration.Round(time.Millisecond))
	}
	if failure != "" || !r.Confirmed {
		if failure == "" {
			failure = node + " not confirmed off"
		}
		return exitWith(1, errors.New(failure))
	}
	fmt.Fprintf(out, "%s fenced: confirmed off by level %d in %v\n", node, r.Level, r.Duration.Round(time.Millisecond))
	return nil
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
	d, err := node.FenceDeviceFromConfig(c, *dev)
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
		if dev.Kind == config.FenceKindWatchdog {
			plug = node
		}
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
