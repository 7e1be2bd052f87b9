package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"tandem/internal/api"
	"tandem/internal/config"
	"tandem/internal/drill"
	"tandem/internal/keyfile"
)

func init() { subcommands = append(subcommands, newDrillCmd) }

// Exit statuses of tandem drill besides 0 (passed): 1 failed (or not
// recorded), 2 bad usage, 3 refused by the pre-check (nothing changed).
const drillRefusedStatus = 3

func newDrillCmd() *cobra.Command {
	var f clientFlags
	var o drill.Options
	var asJSON, yes bool
	var activeSocket, activeAPI string
	cmd := &cobra.Command{
		Use:   "drill GROUP",
		Short: "Failover drill: switch GROUP to its standby, check it answers there, switch back, measure, record",
		Long: "drill rehearses a failover of GROUP. A pre-check refuses (exit status 3, nothing changed)\n" +
			"unless the cluster has quorum, the group runs healthy, and the standby is up, eligible and\n" +
			"holds an UpToDate, connected replica of each of the group's volumes. Then it switches the\n" +
			"group to the standby (a planned switchover), checks that the group runs there with every\n" +
			"resource running and that --check answers, holds it there for --hold, and switches back.\n" +
			"It prints the measured times and records a `drill` event in the agent's audit log.\n\n" +
			"--unplanned --yes kills the active node's agent (SIGKILL, as a crash) instead, so the\n" +
			"standby takes over on its own; the drill then waits for the killed node to be back and in\n" +
			"sync (systemd restarts the agent) before switching back. Run it against the standby's or\n" +
			"the witness's agent; the active node's agent is reached with --active-socket or\n" +
			"--active-api, else at its first link address on api.tcp_port with api.token_file.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Group = args[0]
			if o.Unplanned && !yes {
				return exitWith(2, errors.New("--unplanned kills the active node's agent (SIGKILL): add --yes to mean it"))
			}
			if !o.Unplanned && (activeSocket != "" || activeAPI != "") {
				return exitWith(2, errors.New("--active-socket and --active-api go with --unplanned"))
			}
			if o.Check != "" {
				if _, err := drill.ParseCheck(o.Check); err != nil {
					return exitWith(2, err)
				}
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			if o.Unplanned {
				o.Crash = &activeAgent{main: c, flags: &f, socket: activeSocket, addr: activeAPI, group: o.Group}
			}
			errw := cmd.ErrOrStderr()
			if !asJSON {
				o.Progress = func(step string) { fmt.Fprintf(errw, "%s  %s\n", time.Now().Format("15:04:05.000"), step) }
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := drill.Run(ctx, c, o)
			if err != nil {
				return f.explain(err)
			}
			if asJSON {
				if err := printJSON(cmd.OutOrStdout(), res); err != nil {
					return err
				}
			} else {
				printDrill(cmd.OutOrStdout(), res)
			}
			switch {
			case res.Result == drill.Refused:
				return exitWith(drillRefusedStatus, fmt.Errorf("drill of %s refused: %s", o.Group, strings.Join(res.Refusals, "; ")))
			case res.Result == drill.Fail:
				return exitWith(1, fmt.Errorf("drill of %s failed: %s", o.Group, res.Error))
			case !res.Recorded:
				return exitWith(1, fmt.Errorf("the drill passed but is not in the audit log: %s", res.RecordErr))
			}
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&o.To, "to", "", "the standby to switch to (default: the group's other data node)")
	cmd.Flags().StringVar(&o.Check, "check", "", "the service must answer this on the standby: http://…, https://… (status < 400) or tcp://HOST:PORT")
	cmd.Flags().DurationVar(&o.Hold, "hold", 0, "stay on the standby this long before switching back (checked again at its end)")
	cmd.Flags().BoolVar(&o.Unplanned, "unplanned", false, "kill the active node's agent (SIGKILL) instead of a planned switchover; needs --yes")
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm --unplanned")
	cmd.Flags().StringVar(&activeSocket, "active-socket", "", "with --unplanned: the active node's agent's unix socket")
	cmd.Flags().StringVar(&activeAPI, "active-api", "", "with --unplanned: the active node's agent's TCP API HOST:PORT (token: --token-file, else api.token_file)")
	cmd.Flags().DurationVar(&o.SwitchTimeout, "switch-timeout", 60*time.Second, "how long each switch may take")
	cmd.Flags().DurationVar(&o.VerifyTimeout, "verify-timeout", 30*time.Second, "how long the service may take to answer after a switch")
	cmd.Flags().DurationVar(&o.RejoinTimeout, "rejoin-timeout", 5*time.Minute, "with --unplanned: how long to wait for the killed node to be back and in sync")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func printDrill(w io.Writer, r *drill.Result) {
	fmt.Fprintf(w, "%s drill of %s: %s\n", r.Kind, r.Group, strings.ToUpper(r.Result))
	for _, s := range r.Refusals {
		fmt.Fprintf(w, "  refused: %s\n", s)
	}
	for _, s := range r.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", s)
	}
	if r.Result != drill.Refused {
		fmt.Fprintf(w, "  %s → %s → %s\n", r.From, r.To, r.From)
		row := func(name string, ms int64, note string) {
			v := "-"
			if ms > 0 {
				v = strconv.FormatInt(ms, 10) + " ms"
			}
			fmt.Fprintf(w, "  %-12s %10s  %s\n", name, v, note)
		}
		sw := "request → running on " + r.To
		if r.Kind == "unplanned" {
			sw = "kill → running on " + r.To
		}
		row("switch", r.SwitchMs, sw)
		if t := r.Takeover; t != nil {
			var parts []string
			for _, k := range []string{"detect", "decide", "start"} {
				if v, ok := t[k+"_ms"]; ok {
					parts = append(parts, fmt.Sprintf("%s %v", k, v))
				}
			}
			fmt.Fprintf(w, "  %-12s %10s  %s ms (as %s recorded the takeover)\n", "", "", strings.Join(parts, " + "), r.To)
		}
		check := "every resource running"
		if r.Check != "" {
			check += ", " + r.Check + " answers"
		}
		row("verify", r.VerifyMs, check)
		if r.HoldMs > 0 {
			row("hold", r.HoldMs, "")
		}
		if r.Kind == "unplanned" {
			row("rejoin", r.RejoinMs, r.From+" back and in sync")
		}
		row("switch back", r.SwitchBackMs, "request → running on "+r.From)
		row("verify back", r.VerifyBackMs, "")
		row("total", r.TotalMs, "")
	}
	if r.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", r.Error)
	}
	if r.Pin != "" {
		fmt.Fprintf(w, "  pin: %s\n", r.Pin)
	}
	if r.Recorded {
		fmt.Fprintln(w, "  recorded in the audit log (kind drill)")
	} else {
		fmt.Fprintf(w, "  NOT recorded in the audit log: %s\n", r.RecordErr)
	}
}

// activeAgent reaches the agent of the node that runs the group, to kill
// it for an unplanned drill.
type activeAgent struct {
	main   *api.Client
	flags  *clientFlags
	socket string
	addr   string
	group  string
}

func (a *activeAgent) CrashForDrill(ctx context.Context, group string) error {
	c, err := a.client(ctx)
	if err != nil {
		return err
	}
	return c.CrashForDrill(ctx, group)
}

func (a *activeAgent) client(ctx context.Context) (*api.Client, error) {
	if a.socket != "" {
		return api.NewUnixClient(a.socket), nil
	}
	cfg, cfgErr := config.Load(a.flags.config)
	tokenFile := a.flags.tokenFile
	if tokenFile == "" && cfgErr == nil {
		tokenFile = cfg.API.TokenFile
	}
	addr := a.addr
	if addr == "" {
		if cfgErr != nil {
			return nil, fmt.Errorf("name the active node's agent with --active-socket or --active-api (%s: %v)", a.flags.config, cfgErr)
		}
		if cfg.API.TCPPort == 0 {
			return nil, fmt.Errorf("name the active node's agent with --active-socket or --active-api (api.tcp_port is not set in %s)", a.flags.config)
		}
		s, err := a.main.Status(ctx)
		if err != nil {
			return nil, err
		}
		holder := ""
		for _, g := range s.Groups {
			if g.Name == a.group {
				holder = g.Holder
			}
		}
		for _, n := range cfg.Nodes {
			if n.Name == holder && len(n.Links) > 0 {
				ap, err := config.ParseLink(n.Links[0], cfg.Port)
				if err != nil {
					return nil, err
				}
				addr = netip.AddrPortFrom(ap.Addr(), uint16(cfg.API.TCPPort)).String()
			}
		}
		if addr == "" {
			return nil, fmt.Errorf("group %s's holder %q is not a data node of %s", a.group, holder, a.flags.config)
		}
	}
	if tokenFile == "" {
		return nil, fmt.Errorf("--active-api %s needs a token: --token-file, or api.token_file in %s", addr, a.flags.config)
	}
	tok, err := keyfile.LoadToken(tokenFile)
	if err != nil {
		return nil, err
	}
	return api.NewTCPClient(addr, tok), nil
}
