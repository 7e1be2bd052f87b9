package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"tandem/internal/api"
	"tandem/internal/config"
	"tandem/internal/events"
)

func init() { subcommands = append(subcommands, newEventsCmd) }

// fromConfig is the value of a bare --file: the audit log of --config.
const fromConfig = "events.file"

// pathValue is a string flag shown as PATH in the usage.
type pathValue string

func (p *pathValue) String() string     { return string(*p) }
func (p *pathValue) Set(s string) error { *p = pathValue(s); return nil }
func (p *pathValue) Type() string       { return "path" }

type eventsFlags struct {
	client                             clientFlags
	kinds, group, node, subject, since string
	limit                              int
	asJSON                             bool
	file                               pathValue
	verify                             bool
	anchor                             string
}

func newEventsCmd() *cobra.Command {
	var f eventsFlags
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show the audit log of this node (every transition and admin action), or verify it",
		Long: "events asks the agent for its audit log. With --file it reads the log itself, so it works\n" +
			"with the agent down (a post-mortem): --file alone reads events.file of --config, --file PATH\n" +
			"another copy. Lines that are not events (torn by a crash) are skipped and listed on stderr.\n\n" +
			"--verify checks the log's hash chain and exits with status 1 at a broken link, naming the\n" +
			"first one; it prints the head (SEQ:HASH) to keep elsewhere, and --anchor SEQ:HASH checks\n" +
			"later that the log still holds that entry unchanged. See docs/events.md.",
		Args: func(cmd *cobra.Command, args []string) error {
			// "--file PATH" (pflag reads a bare --file, then PATH as an argument).
			if len(args) == 1 && f.file == fromConfig {
				f.file = pathValue(args[0])
				return nil
			}
			return cobra.NoArgs(cmd, args)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.verify {
				return f.runVerify(cmd.OutOrStdout())
			}
			return f.runShow(cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f.client.add(cmd)
	fl := cmd.Flags()
	fl.Lookup("config").Usage = "cluster configuration (to find the socket, and the audit log's path)"
	fl.StringVar(&f.kinds, "kind", "", "only these kinds, comma-separated (e.g. takeover,node_down)")
	fl.StringVar(&f.group, "group", "", "only this group")
	fl.StringVar(&f.node, "node", "", "only events reported by this node")
	fl.StringVar(&f.subject, "subject", "", "only events about this node, link, group or resource")
	fl.StringVar(&f.since, "since", "", "only since an RFC 3339 time or a duration back (1h)")
	fl.IntVar(&f.limit, "limit", 0, "only the newest N")
	fl.BoolVar(&f.asJSON, "json", false, "print JSON lines")
	fl.Var(&f.file, "file", "read the log file `PATH` itself, without the agent (alone: events.file of --config)")
	fl.Lookup("file").NoOptDefVal = fromConfig
	fl.BoolVar(&f.verify, "verify", false, "check the log's hash chain (of --file, else events.file of --config); exit 1 if broken")
	fl.StringVar(&f.anchor, "anchor", "", "with --verify: a head SEQ:HASH printed by an earlier --verify, which must still be there")
	return cmd
}

// logPath is the file to read: --file, or events.file of --config.
func (f *eventsFlags) logPath() (string, error) {
	if f.file != "" && f.file != fromConfig {
		return string(f.file), nil
	}
	c, err := config.Load(f.client.config)
	if err != nil {
		return "", exitWith(2, fmt.Errorf("no --file PATH, and the audit log's path (events.file) comes from %s:\n%w", f.client.config, err))
	}
	return c.Events.File, nil
}

func (f *eventsFlags) runShow(out, errOut io.Writer) error {
	kinds, err := events.ParseKinds(f.kinds)
	if err != nil {
		return exitWith(2, err)
	}
	var evs []events.Event
	if f.file != "" {
		path, err := f.logPath()
		if err != nil {
			return err
		}
		filter, err := f.filter(kinds, time.Now())
		if err != nil {
			return exitWith(2, err)
		}
		res, err := events.ScanFile(path, filter)
		if err != nil {
			return err
		}
		reportBadLines(errOut, path, res.Bad, res.BadCount)
		evs = res.Events
	} else {
		res, err := f.fromAgent()
		if err != nil {
			return err
		}
		reportBadLines(errOut, "the agent's audit log", res.Bad, res.BadCount)
		evs = res.Events
	}
	if f.asJSON {
		enc := json.NewEncoder(out)
		for _, e := range evs {
			enc.Encode(e)
		}
		return nil
	}
	for _, e := range evs {
		fmt.Fprintln(out, eventLine(e))
	}
	return nil
}

// fromAgent asks the agent; when it cannot be reached, the error says how
// to read the file instead (clientFlags.explain).
func (f *eventsFlags) fromAgent() (events.Result, error) {
	q := url.Values{}
	for k, v := range map[string]string{"kind": f.kinds, "group": f.group, "node": f.node, "subject": f.subject, "since": f.since} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.limit > 0 {
		q.Set("limit", fmt.Sprint(f.limit))
	}
	var res events.Result
	err := f.client.call(func(ctx context.Context, c *api.Client) (err error) {
		res, err = c.ScanEvents(ctx, q)
		return err
	})
	return res, err
}

// filter is what the agent's API makes of the same flags.
func (f *eventsFlags) filter(kinds []events.Kind, now time.Time) (events.Filter, error) {
	fl := events.Filter{Kinds: kinds, Group: f.group, Node: f.node, Subject: f.subject, Limit: f.limit}
	if f.limit < 0 {
		return fl, fmt.Errorf("--limit %d: want a number of events", f.limit)
	}
	if f.since != "" {
		if t, err := time.Parse(time.RFC3339, f.since); err == nil {
			fl.Since = t
		} else if d, err := time.ParseDuration(f.since); err == nil && d >= 0 {
			fl.Since = now.Add(-d)
		} else {
			return fl, fmt.Errorf("--since %q is neither an RFC 3339 time nor a duration like 1h", f.since)
		}
	}
	return fl, nil
}

func eventLine(e events.Event) string {
	line := fmt.Sprintf("%s %-16s", e.Time.Local().Format("2006-01-02 15:04:05.000"), e.Kind)
	for _, kv := range [][2]string{{"node", e.Node}, {"group", e.Group}, {"subject", e.Subject}, {"actor", e.Actor}} {
		if kv[1] != "" {
			line += " " + kv[0] + "=" + kv[1]
		}
	}
	if e.Epoch != 0 {
		line += fmt.Sprintf(" epoch=%d", e.Epoch)
	}
	if e.Message != "" {
		line += " — " + e.Message
	}
	if len(e.Attrs) > 0 {
		b, _ := json.Marshal(e.Attrs)
		line += " " + string(b)
	}
	return line
}

// reportBadLines says which lines were skipped, so that a torn or foreign
// line is seen rather than silently missing.
func reportBadLines(w io.Writer, path string, bad []events.BadLine, count int) {
	if count == 0 {
		return
	}
	fmt.Fprintf(w, "%s: skipped %d line(s) that are not events:\n", path, count)
	for _, b := range bad {
		fmt.Fprintf(w, "  %s\n", clip(b.String(), 160))
	}
	if count > len(bad) {
		fmt.Fprintf(w, "  … and %d more\n", count-len(bad))
	}
}

func (f *eventsFlags) runVerify(out io.Writer) error {
	path, err := f.logPath()
	if err != nil {
		return err
	}
	var anchor *events.Link
	if f.anchor != "" {
		a, err := events.ParseLink(f.anchor)
		if err != nil {
			return exitWith(2, fmt.Errorf("--anchor: %w", err))
		}
		anchor = &a
	}
	v, err := events.VerifyFile(path, anchor)
	if err != nil {
		return err
	}
	printVerification(out, path, v)
	if !v.OK() {
		return exitWith(1, fmt.Errorf("%s: the hash chain is broken at line %d (%d broken link(s))", path, v.Breaks[0].Line, v.BreakCount))
	}
	return nil
}

func printVerification(w io.Writer, path string, v *events.Verification) {
	chained := v.Entries - v.Unchained
	if v.Checkpoint != nil {
		chained--
	}
	if v.OK() {
		fmt.Fprintf(w, "%s: the hash chain holds: %d entries", path, chained)
		if chained > 0 {
			fmt.Fprintf(w, ", seq %d to %d", v.First, v.Head.Seq)
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintf(w, "%s: the hash chain is BROKEN\n", path)
		fmt.Fprintf(w, "  first broken link: %s\n", v.Breaks[0])
		for _, b := range v.Breaks[1:] {
			fmt.Fprintf(w, "  then: %s\n", b)
		}
		if v.BreakCount > len(v.Breaks) {
			fmt.Fprintf(w, "  … and %d more broken links\n", v.BreakCount-len(v.Breaks))
		}
	}
	if cp := v.Checkpoint; cp != nil {
		fmt.Fprintf(w, "  starts at a compaction checkpoint: %s\n", cp.Message)
	}
	if v.Unchained > 0 {
		fmt.Fprintf(w, "  %d entries at the start were written before the chain existed: not covered by it\n", v.Unchained)
	}
	if v.BadCount > 0 {
		fmt.Fprintf(w, "  %d line(s) are not events (torn by a crash, or not written by tandem); the chain links past them:\n", v.BadCount)
		for _, b := range v.Bad {
			fmt.Fprintf(w, "    %s\n", clip(b.String(), 160))
		}
	}
	if v.AnchorNote != "" {
		fmt.Fprintf(w, "  anchor: %s\n", v.AnchorNote)
	}
	if v.Head.Hash != "" {
		fmt.Fprintf(w, "  head: %s\n", v.Head)
		if v.OK() {
			fmt.Fprintln(w, "  (keep the head elsewhere: --verify --anchor HEAD later shows the log was not cut short or rewritten)")
		}
	}
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
