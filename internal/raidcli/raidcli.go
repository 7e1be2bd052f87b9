package raidcli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"tandem/internal/blockdev"
	"tandem/internal/events"
	"tandem/internal/raid"
)

// DefaultStateDir is where arrays are recorded unless --state-dir says.
const DefaultStateDir = "/var/lib/tandem"

type globals struct {
	stateDir string
	logLevel string
	force    bool
	out      io.Writer
	errOut   io.Writer
}

// Command returns `tandem raid`.
func Command() *cobra.Command {
	g := &globals{}
	cmd := &cobra.Command{
		Use:   "raid",
		Short: "Userspace software RAID 0/1/5/6/10: create, assemble, serve over NBD, manage, check, bench",
		Long: `Userspace software RAID: levels 0, 1, 5, 6 and 10 over files or block devices,
with superblocks, a write-intent bitmap, a write-hole journal, checksums, hot
spares and online rebuild. Arrays are recorded in <state-dir>/raid; commands
take a recorded NAME or the member paths, as mdadm does.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			g.out, g.errOut = cmd.OutOrStdout(), cmd.ErrOrStderr()
		},
	}
	cmd.PersistentFlags().StringVar(&g.stateDir, "state-dir", DefaultStateDir, "where arrays are recorded and served arrays keep their control socket")
	cmd.PersistentFlags().StringVar(&g.logLevel, "log-level", "warn", "debug, info, warn or error")
	cmd.AddCommand(createCmd(g), assembleCmd(g), statusCmd(g), examineCmd(g), checkCmd(g, false), checkCmd(g, true),
		serveCmd(g), failCmd(g), removeCmd(g), addCmd(g), replaceCmd(g), rateCmd(g), benchCmd(g))
	return cmd
}

func (g *globals) logger() *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		lvl = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(g.errOut, &slog.HandlerOptions{Level: lvl}))
}

// bus publishes health events to the audit log shared with the agent
// (<state-dir>/events.jsonl) when it can be opened.
func (g *globals) bus(log *slog.Logger) (*events.Bus, func()) {
	b := &events.Bus{}
	l, err := events.OpenLog(filepath.Join(g.stateDir, "events.jsonl"), 0)
	if err != nil {
		log.Debug("raid: no audit log", "err", err)
		return b, func() {}
	}
	b.Subscribe(l)
	return b, func() { l.Close() }
}

func (g *globals) options(log *slog.Logger, bus *events.Bus) raid.Options {
	host, _ := os.Hostname()
	return raid.Options{Logger: log, Events: bus, Node: host, Force: g.force}
}

// openMember opens a path with O_DIRECT, falling back to buffered I/O on
// file systems that refuse it (tmpfs).
func openMember(path string) (raid.Member, error) {
	d, err := blockdev.OpenFile(path, true)
	if err != nil && errors.Is(err, syscall.EINVAL) {
		d, err = blockdev.OpenFile(path, false)
	}
	if err != nil {
		return raid.Member{}, err
	}
	return raid.Member{Name: path, Dev: d}, nil
}

func closeMembers(ms []raid.Member) {
	for _, m := range ms {
		m.Dev.Close()
	}
}

// target is what a command's arguments name: a recorded array or paths.
type target struct {
	rec   *record
	paths []string
}

func (g *globals) resolve(args []string) (target, error) {
	if len(args) == 1 {
		if r, err := loadRecord(g.stateDir, args[0]); err == nil {
			return target{rec: r, paths: r.Members}, nil
		} else if _, serr := os.Stat(args[0]); serr != nil {
			return target{}, err
		}
	}
	return target{paths: args}, nil
}

func (t target) assembleOptions() raid.AssembleOptions {
	if t.rec == nil {
		return raid.AssembleOptions{}
	}
	u, err := parseUUID(t.rec.UUID)
	if err != nil {
		return raid.AssembleOptions{Name: t.rec.Name}
	}
	return raid.AssembleOptions{UUID: &u}
}

func parseUUID(s string) (raid.UUID, error) {
	var u raid.UUID
	if len(s) != 32 {
		return u, fmt.Errorf("raid: bad uuid %q", s)
	}
	for i := range u {
		v, err := strconv.ParseUint(s[2*i:2*i+2], 16, 8)
		if err != nil {
			return u, fmt.Errorf("raid: bad uuid %q", s)
		}
		u[i] = byte(v)
	}
	return u, nil
}

// openTarget opens the members a target names; those that cannot be opened
// are reported and left out.
func (g *globals) openTarget(t target) []raid.Member {
	var ms []raid.Member
	for _, p := range t.paths {
		m, err := openMember(p)
		if err != nil {
			fmt.Fprintf(g.errOut, "raid: %s: left out: %v\n", p, err)
			continue
		}
		ms = append(ms, m)
	}
	return ms
}

// refuseServed fails when a member belongs to an array that a `serve`
// with this state dir is running: assembling it again (by NAME or by member
// paths) would write superblocks under the running server.
func (g *globals) refuseServed(ms []raid.Member) error {
	asked := map[string]bool{}
	for _, m := range ms {
		ex, err := raid.Examine(m)
		if err != nil || asked[ex.Name] {
			continue
		}
		asked[ex.Name] = true
		if g.control(ex.Name) != nil {
			return fmt.Errorf("raid: %s belongs to array %s, which is being served (control socket %s); use fail/remove/add/replace/check on it, or stop the server first", m.Name, ex.Name, socketPath(g.stateDir, ex.Name))
		}
	}
	return nil
}

// assemble opens and assembles a target and records it.
func (g *globals) assemble(t target, o raid.Options) (*raid.Array, error) {
	ms := g.openTarget(t)
	if err := g.refuseServed(ms); err != nil {
		closeMembers(ms)
		return nil, err
	}
	a, err := raid.Assemble(ms, t.assembleOptions(), o)
	if err != nil {
		closeMembers(ms)
		return nil, err
	}
	used := map[string]bool{}
	for _, p := range a.LeftOut() {
		fmt.Fprintf(g.errOut, "raid: %s: left out: %v\n", p.Name, p.Err)
		used[p.Name] = true
	}
	for _, m := range ms {
		if used[m.Name] {
			m.Dev.Close()
		}
	}
	rec := t.rec
	if rec == nil {
		rec = &record{Name: a.Name(), UUID: a.UUID().String(), Level: a.Geometry().Level.String(), Created: time.Now()}
		if old, err := loadRecord(g.stateDir, a.Name()); err == nil && old.UUID == rec.UUID {
			rec = old
		} else if err == nil {
			// Another array of that name is recorded: keep its record (it
			// would vanish from status and --scan otherwise).
			fmt.Fprintf(g.errOut, "raid: not recorded: another array named %s (%s) is recorded; this one is %s\n", old.Name, old.UUID, rec.UUID)
			return a, nil
		}
	}
	for _, m := range ms {
		if !used[m.Name] {
			rec.addMembers(m.Name)
		}
	}
	if err := saveRecord(g.stateDir, rec); err != nil {
		fmt.Fprintf(g.errOut, "raid: cannot record the array: %v\n", err)
	}
	return a, nil
}

// runJobs waits for resync/rebuild, printing progress.
func (g *globals) runJobs(ctx context.Context, a *raid.Array) error {
	done := make(chan error, 1)
	go func() { done <- a.WaitIdle(ctx) }()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
			if p := a.Progress(); p != nil {
				fmt.Fprintf(g.errOut, "%s\n", progressLine(p))
			}
		}
	}
}

func progressLine(p *raid.Progress) string {
	what := p.Kind
	if p.Member != "" {
		what += " of " + p.Member
	}
	limit := ""
	if p.Limit > 0 {
		limit = fmt.Sprintf(" (limit %.1f MB/s)", float64(p.Limit)/1e6)
	}
	return fmt.Sprintf("%s = %5.1f%% (%d/%d stripes) speed=%.1fMB/s finish=%s%s", what, p.Fraction*100, p.Done, p.Total, p.Rate/1e6, p.ETA.Round(time.Second), limit)
}

func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	mult := int64(1)
	for _, suf := range []struct {
		s string
		m int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(s, suf.s) {
			s, mult = strings.TrimSuffix(s, suf.s), suf.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("raid: bad size %q", s)
	}
	return n * mult, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
