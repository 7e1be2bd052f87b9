package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"slices"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"tandem/internal/api"
	"tandem/internal/config"
	"tandem/internal/keyfile"
	"tandem/internal/node"
)

func init() {
	subcommands = append(subcommands, newStatusCmd, newFailoverCmd, newStandbyCmd(true), newStandbyCmd(false),
		newMaintenanceCmd, newCleanupCmd)
}

// clientFlags choose the agent to talk to: its unix socket (default), or
// TCP with a token.
type clientFlags struct {
	socket    string
	addr      string
	tokenFile string
	config    string

	target string // the agent being talked to, and why that one, for messages
}

func (f *clientFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.socket, "socket", "", "agent's unix socket (default: api.socket of --config, else /run/tandem/tandem.sock)")
	cmd.Flags().StringVar(&f.addr, "api", "", "agent's TCP API address HOST:PORT (needs --token-file)")
	cmd.Flags().StringVar(&f.tokenFile, "token-file", "", "bearer token file for --api")
	cmd.Flags().StringVarP(&f.config, "config", "c", defaultConfig, "cluster configuration (only to find the socket)")
}

func (f *clientFlags) client() (*api.Client, error) {
	if f.addr != "" {
		if f.tokenFile == "" {
			return nil, exitWith(2, fmt.Errorf("--api needs --token-file"))
		}
		tok, err := keyfile.LoadToken(f.tokenFile)
		if err != nil {
			return nil, exitWith(2, err)
		}
		f.target = "the API at " + f.addr + " (--api)"
		return api.NewTCPClient(f.addr, tok), nil
	}
	sock := f.socket
	f.target = "the socket " + sock + " (--socket)"
	if sock == "" {
		c, err := config.Load(f.config)
		if err == nil {
			sock = c.API.Socket
			f.target = "the socket " + sock + " (api.socket of " + f.config + ")"
		} else {
			sock = "/run/tandem/tandem.sock"
			f.target = "the socket " + sock + " (the default: " + f.config + " could not be read)"
		}
	}
	return api.NewUnixClient(sock), nil
}

// call runs f with a client of the chosen agent and a 30 s deadline.
func (f *clientFlags) call(fn func(ctx context.Context, c *api.Client) error) error {
	c, err := f.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return f.explain(fn(ctx, c))
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// errUnreachable marks an agent that did not answer at all (as opposed to
// one that answered with an error).
var errUnreachable = errors.New("cannot reach the tandem agent")

// explain turns a failure to reach the agent into what to check, instead
// of the HTTP client's words; an answer of the agent passes unchanged.
func (f *clientFlags) explain(err error) error {
	var apiErr *api.Error
	if err == nil || errors.As(err, &apiErr) || !errors.Is(err, api.ErrUnreachable) {
		return err
	}
	var why string
	tcp := f.addr != ""
	switch {
	case errors.Is(err, fs.ErrNotExist):
		why = "there is no such socket: the agent is not running on this machine, or it listens on another socket"
	case errors.Is(err, syscall.ECONNREFUSED) && tcp:
		why = "the connection was refused: no agent listens there"
	case errors.Is(err, syscall.ECONNREFUSED):
		why = "the socket is there but nobody listens on it: the agent stopped or crashed"
	case errors.Is(err, fs.ErrPermission):
		why = "permission denied: run as root, or as a member of the socket's group"
	case isTimeout(err):
		why = "no answer within 30 s: the agent may be hung or overloaded"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		why = "the connection was closed without an answer: the agent is stopping or crashed"
	default:
		why = innermost(err).Error()
	}
	check := "Check that the agent runs here (systemctl status tandem, tandem-witness on the witness;\n" +
		"  journalctl -u tandem), or name another one with --socket PATH, or --api HOST:PORT --token-file FILE."
	if tcp {
		check = "Check that the agent runs on that machine (systemctl status tandem) with api.tcp_port\n" +
			"  set to that port (and api.bind_all for other machines), and that no firewall is in the way."
	}
	where := ""
	if tcp {
		where = " (on that machine)"
	}
	return fmt.Errorf("%w at %s: %s.\n  %s\n  For a post-mortem, the audit log reads without the agent%s: %s",
		errUnreachable, f.target, why, check, where, f.postMortem())
}

// postMortem is the command that reads the audit log with the agent down.
func (f *clientFlags) postMortem() string {
	if c, err := config.Load(f.config); err == nil {
		if f.config == defaultConfig {
			return "tandem events --file (" + c.Events.File + ")"
		}
		return "tandem events -c " + f.config + " --file (" + c.Events.File + ")"
	}
	return "tandem events --file STATE_DIR/events.jsonl (" + config.Default().Events.File + " by default)"
}

// innermost is the error at the end of err's chain: the system's words,
// without the HTTP client's request line around them.
func innermost(err error) error {
	for {
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			errs := u.Unwrap()
			if len(errs) == 0 {
				return err
			}
			err = errs[len(errs)-1]
		case interface{ Unwrap() error }:
			next := u.Unwrap()
			if next == nil {
				return err
			}
			err = next
		default:
			return err
		}
	}
}

func newStatusCmd() *cobra.Command {
	var f clientFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Who is active, since when, and are all nodes and links healthy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(func(ctx context.Context, c *api.Client) error {
				s, err := c.Status(ctx)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(cmd.OutOrStdout(), s)
				}
				printStatus(cmd.OutOrStdout(), s, time.Now())
				return nil
			})
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t).Round(time.Second)
	if d < time.Second {
		return "just now"
	}
	return d.String() + " ago"
}

func printStatus(w io.Writer, s node.Status, now time.Time) {
	quorum := "quorum"
	if !s.Quorum {
		quorum = "NO QUORUM"
	}
	leader := s.Leader
	if leader == "" {
		leader = "none"
	}
	fmt.Fprintf(w, "cluster %s — seen from %s (%s) — %s, raft leader %s\n", s.Cluster, s.Node, s.Role, quorum, leader)
	if s.Maintenance {
		fmt.Fprintln(w, "MAINTENANCE MODE: nothing is managed")
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tACTIVE ON\tSTATE\tEPOCH\tSINCE\tNOTES")
	for _, g := range s.Groups {
		on := g.Holder
		if on == "" {
			on = "-"
		}
		st := groupState(g)
		if g.Holder != "" && !nodeUp(s, g.Holder) {
			// Its last report may be stale: a holder cut off from the
			// quorum has lost its lease and stopped, or is about to.
			st = "UNREACHABLE (last: " + st + ")"
		}
		var notes []string
		if g.Handover != "" {
			notes = append(notes, "handing over to "+g.Handover)
		}
		if g.PhaseError != "" && g.Phase != "running" {
			notes = append(notes, g.PhaseError)
		}
		if g.Reason != "" {
			notes = append(notes, g.Reason)
		}
		if g.Waiting != "" {
			notes = append(notes, "waiting for "+g.Waiting)
		}
		if g.Blocked != "" {
			notes = append(notes, "blocked: "+g.Blocked+" (tandem cleanup "+g.Name+")")
		}
		if g.Pinned != "" {
			notes = append(notes, "pinned to "+g.Pinned)
		}
		if len(g.Failures) > 0 {
			var fs []string
			for n, c := range g.Failures {
				fs = append(fs, fmt.Sprintf("%s×%d", n, c))
			}
			sort.Strings(fs)
			notes = append(notes, "failures "+strings.Join(fs, " "))
		}
		if len(g.Banned) > 0 {
			notes = append(notes, "banned on "+strings.Join(g.Banned, ","))
		}
		if t := g.Takeover; t != nil && t.To == g.Holder && (t.Epoch == 0 || t.Epoch == g.Epoch) {
			notes = append(notes, fmt.Sprintf("took over from %s (detect %d ms)", t.From, t.DetectMs))
		}
		since := g.StartedAt
		if since.IsZero() {
			since = g.Since
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", g.Name, on, st, g.Epoch, ago(now, since), strings.Join(notes, "; "))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tSTATE\tSINCE\tLINKS (rtt, loss)")
	for _, n := range s.Nodes {
		st := "up"
		if !n.Up {
			st = "DOWN"
		}
		if n.Standby {
			st += ", standby"
		}
		if n.Maintenance {
			st += ", maintenance"
		}
		if n.Leaving {
			st += ", leaving"
		}
		if n.ConfigDiffers {
			st += ", CONFIG DIFFERS (" + n.Config + " ≠ " + s.Config + ")"
		}
		name := n.Name
		if n.Self {
			name += " (this)"
		}
		var links []string
		for _, l := range n.Links {
			if l.Up {
				links = append(links, fmt.Sprintf("#%d up %.2fms %.0f%%", l.Index, l.RTT, l.Loss*100))
			} else {
				links = append(links, fmt.Sprintf("#%d DOWN", l.Index))
			}
		}
		if n.Self {
			links = []string{"-"}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, n.Role, st, ago(now, n.Since), strings.Join(links, ", "))
	}
	tw.Flush()
	if len(s.Local) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "ON %s\tPHASE\tRESOURCES (+running -stopped !failed ?unknown, op under way)\tRESTARTS\tLAST ERROR\n", strings.ToUpper(s.Node))
		for _, g := range s.Local {
			var rs []string
			for _, r := range g.Resources {
				mark := map[string]string{"running": "+", "stopped": "-", "failed": "!"}[r.State]
				if mark == "" {
					mark = "?"
				}
				item := mark + r.Name
				if r.Op != "" {
					item += "(" + r.Op + ")"
				}
				rs = append(rs, item)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", g.Name, g.Phase, strings.Join(rs, " "), g.Restarts, g.LastError)
		}
		tw.Flush()
	}
	if len(s.Volumes) > 0 {
		printVolumes(w, s)
	}
	if len(s.FenceDevices) > 0 {
		printFenceDevices(w, s, now)
	}
	var drops []string
	for k, v := range s.Drops {
		drops = append(drops, fmt.Sprintf("%s %d", k, v))
	}
	if len(drops) > 0 {
		sort.Strings(drops)
		fmt.Fprintf(w, "\ndropped datagrams: %s\n", strings.Join(drops, ", "))
	}
}

// nodeUp: the status's node sees name up.
func nodeUp(s node.Status, name string) bool {
	for _, n := range s.Nodes {
		if n.Name == name {
			return n.Up
		}
	}
	return false
}

// groupState is a group's state on one word: what its holder last
// reported, or what the placement says while it has not.
func groupState(g node.GroupStatus) string {
	switch {
	case g.Blocked != "":
		return "BLOCKED"
	case g.Holder == "":
		return "stopped"
	case g.Handover != "":
		return "moving"
	case g.Phase == "":
		return "starting"
	case g.Phase == "degraded" || g.Phase == "failed":
		return strings.ToUpper(g.Phase)
	}
	return g.Phase
}

func newFailoverCmd() *cobra.Command {
	var f clientFlags
	var to string
	var force bool
	cmd := &cobra.Command{
		Use:   "failover GROUP",
		Short: "Planned switchover of GROUP to another node (--to NODE, or the best other node)",
		Long: "failover stops GROUP on its node, which hands its lease back, and starts it on the\n" +
			"target at once. The group stays pinned to the target until `tandem cleanup GROUP`.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if force && to == "" {
				return exitWith(2, fmt.Errorf("--force needs --to NODE: a forced move names its target"))
			}
			return f.call(func(ctx context.Context, c *api.Client) error {
				if force {
					lost, err := c.ForceFailover(ctx, args[0], to)
					for _, l := range lost {
						fmt.Fprintf(cmd.ErrOrStderr(), "WARNING: %s\n", l)
					}
					if err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s is moving to %s\n", args[0], to)
					return nil
				}
				got, err := c.Failover(ctx, args[0], to)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s is moving to %s\n", args[0], got)
				return nil
			})
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&to, "to", "", "target node")
	cmd.Flags().BoolVar(&force, "force", false, "move even onto a node whose replica of the group's volume is not UpToDate, losing what it lacks (needs --to; prints what is lost)")
	return cmd
}

func newStandbyCmd(on bool) func() *cobra.Command {
	return func() *cobra.Command {
		var f clientFlags
		use, short := "standby NODE", "Move every group off NODE and keep them off"
		if !on {
			use, short = "unstandby NODE", "Let NODE run groups again"
		}
		cmd := &cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return f.call(func(ctx context.Context, c *api.Client) error {
					if err := c.Standby(ctx, args[0], on); err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s: standby %s\n", args[0], onOff(on))
					return nil
				})
			},
		}
		f.add(cmd)
		return cmd
	}
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

func newMaintenanceCmd() *cobra.Command {
	var f clientFlags
	var nodeName string
	cmd := &cobra.Command{
		Use:       "maintenance on|off",
		Short:     "Stop managing (resources are left as they are) or resume",
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"on", "off"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] != "on" && args[0] != "off" {
				return exitWith(2, fmt.Errorf("maintenance takes on or off, not %q", args[0]))
			}
			return f.call(func(ctx context.Context, c *api.Client) error {
				if err := c.Maintenance(ctx, nodeName, args[0] == "on"); err != nil {
					return err
				}
				scope := "cluster"
				if nodeName != "" {
					scope = nodeName
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: maintenance %s\n", scope, args[0])
				return nil
			})
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&nodeName, "node", "", "only this node (default: the whole cluster)")
	return cmd
}

func newCleanupCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "cleanup GROUP",
		Short: "Forget GROUP's failures, bans, fatal block and admin pin",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(func(ctx context.Context, c *api.Client) error {
				if err := c.Cleanup(ctx, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: failures cleared\n", args[0])
				return nil
			})
		},
	}
	f.add(cmd)
	return cmd
}

// printVolumes prints each volume: the cluster's record of its replicas
// and this node's replica as its engine sees it.
func printVolumes(w io.Writer, s node.Status) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VOLUME\tGROUP\tREPLICAS (cluster record)\tHERE")
	for _, v := range s.Volumes {
		var reps []string
		for _, n := range slices.Sorted(maps.Keys(v.Replicas)) {
			r := v.Replicas[n]
			reps = append(reps, fmt.Sprintf("%s %s (epoch %d)", n, r.Disk, r.Epoch))
		}
		if len(reps) == 0 {
			reps = []string{"none reported yet"}
		}
		here := "-"
		if l := v.Local; l != nil {
			here = fmt.Sprintf("%s %s, peer %s %s", l.Role, l.Disk, l.Connection, l.PeerDisk)
			if l.Sync != "" {
				here += fmt.Sprintf(", %s %.1f%%", l.Sync, l.ResyncPct)
			}
			if l.OutOfSync > 0 {
				here += fmt.Sprintf(", out of sync %d bytes", l.OutOfSync)
			}
		}
		switch v.Attach {
		case "":
		case "none":
			here += ", filesystem cannot attach it (no nbd, nor nbdfuse+loop: its start says why)"
		default:
			here += ", filesystem attached by " + v.Attach
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", v.Name, v.Group, strings.Join(reps, ", "), here)
	}
	tw.Flush()
}

// printFenceDevices prints each fence device and this node's last monitor
// of it.
func printFenceDevices(w io.Writer, s node.Status, now time.Time) {
	fmt.Fprintf(w, "\nFence devices (monitored from %s):\n", s.Node)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tKIND\tFENCES\tMONITOR\tCHECKED")
	for _, d := range s.FenceDevices {
		kind := d.Kind
		if d.Agent != "" {
			kind += " " + d.Agent
		}
		result, checked := "not checked yet", "-"
		if !d.Checked.IsZero() {
			checked = now.Sub(d.Checked).Round(time.Second).String() + " ago"
			result = fmt.Sprintf("ok (%d ms)", d.Ms)
			if !d.OK {
				result = "FAILED: " + d.Error
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Name, kind, strings.Join(d.Nodes, ","), result, checked)
	}
	tw.Flush()
}
