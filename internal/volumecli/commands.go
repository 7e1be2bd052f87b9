package volumecli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"tandem/internal/volume"
	"tandem/internal/volume/meta"
)

// running returns the client of a running volume, or an error that says
// how to start it.
func (g *globals) running(name string) (*controlClient, error) {
	if _, err := loadRecord(g.stateDir, name); err != nil {
		return nil, err
	}
	c := dialControl(g.stateDir, name)
	if c == nil {
		return nil, fmt.Errorf("volume %s is not up on this node (no process answers on %s): start it with 'tandem volume up %s'", name, socketPath(g.stateDir, name), name)
	}
	return c, nil
}

func statusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [NAME...]",
		Short: "Show each volume's role, disk and connection state, peer, out-of-sync bytes, resync progress, lag and write latency",
		RunE: func(cmd *cobra.Command, args []string) error {
			names := args
			if len(names) == 0 {
				var err error
				if names, err = listRecords(g.stateDir); err != nil {
					return err
				}
				if len(names) == 0 && !asJSON {
					fmt.Fprintf(g.out, "no volumes recorded in %s\n", volumeDir(g.stateDir))
					return nil
				}
			}
			var all []volume.Status
			var errs []error
			for _, n := range names {
				s, err := g.status(n)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				all = append(all, s)
			}
			if asJSON {
				if err := printJSON(g.out, all); err != nil {
					return err
				}
			} else {
				for _, s := range all {
					printStatus(g.out, s)
				}
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (a list of volumes)")
	return cmd
}

// status asks a running volume, or reads a stopped one's metadata.
func (g *globals) status(name string) (volume.Status, error) {
	rec, err := loadRecord(g.stateDir, name)
	if err != nil {
		return volume.Status{}, err
	}
	if c := dialControl(g.stateDir, name); c != nil {
		return c.status()
	}
	s := volume.Status{Name: rec.Name, UUID: rec.UUID, Node: rec.Node, Peer: rec.Peer, Mode: rec.Mode, Size: rec.Size, Role: "down", Connection: "Down"}
	if strings.HasPrefix(rec.Backing, "raid:") {
		s.Disk = "?" // not assembled just to read its metadata
		return s, nil
	}
	dev, mdev, err := openBacking(g.stateDir, rec, g.logger())
	if err != nil {
		s.DiskError = err.Error()
		return s, nil
	}
	defer dev.Close()
	o := meta.OpenOptions{Name: rec.Backing}
	if mdev != nil {
		defer mdev.Close()
		o.Meta = mdev
	}
	md, err := meta.Open(dev, o)
	if err != nil {
		s.DiskError = err.Error()
		return s, nil
	}
	defer md.Close()
	st := md.State()
	s.Size, s.Disk, s.Epoch = md.DataSize(), st.Disk.String(), uint64(st.Epoch)
	s.OutOfSync = md.Bitmap().DirtyBytes()
	s.CrashedPrimary = st.Flags&meta.Primary != 0
	return s, nil
}

func printStatus(w io.Writer, s volume.Status) {
	fmt.Fprintf(w, "volume %s  %s, %s, uuid %s\n", s.Name, formatBytes(s.Size), s.Mode, s.UUID)
	if s.Role == "down" {
		fmt.Fprintf(w, "  not up on this node (tandem volume up %s)   disk %s   epoch %d   out of sync %s\n", s.Name, s.Disk, s.Epoch, formatBytes(s.OutOfSync))
		if s.DiskError != "" {
			fmt.Fprintf(w, "  error: %s\n", s.DiskError)
		}
		return
	}
	fmt.Fprintf(w, "  %-4s %-10s %-9s disk %-12s epoch %d\n", "this", s.Node, s.Role, s.Disk, s.Epoch)
	peerRole, peerDisk := s.PeerRole, s.PeerDisk
	if s.Connection != "Connected" {
		peerRole, peerDisk = "?", "?"
	}
	fmt.Fprintf(w, "  %-4s %-10s %-9s disk %-12s %s", "peer", s.Peer, peerRole, peerDisk, s.Connection)
	if l := s.Link; l != nil {
		fmt.Fprintf(w, " via path %d %s (rtt %d µs)", l.Path, l.Remote, l.RTTus)
	}
	fmt.Fprintln(w)
	switch {
	case s.Sync != "":
		eta := ""
		if s.ResyncETA != "" {
			eta = ", ETA " + s.ResyncETA
		}
		limit := ""
		if s.RateLimit > 0 {
			limit = fmt.Sprintf(" (limit %s/s)", formatBytes(s.RateLimit))
		}
		fmt.Fprintf(w, "  resync %s: %.1f%% of %s, %s/s%s%s\n", s.Sync, s.ResyncPct, formatBytes(s.ResyncTotal), formatBytes(int64(s.ResyncRate)), eta, limit)
	case s.Connection != "Connected":
		fmt.Fprintf(w, "  NOT REPLICATING: the peer is not connected; out of sync %s (resynced when it is)\n", formatBytes(s.OutOfSync))
	case s.Disk == "Inconsistent" && s.PeerDisk == "Inconsistent":
		fmt.Fprintf(w, "  no data yet: both replicas are Inconsistent (a new volume): 'tandem volume primary %s --force' on one node syncs it to the other\n", s.Name)
	case s.OutOfSync > 0:
		fmt.Fprintf(w, "  out of sync: %s\n", formatBytes(s.OutOfSync))
	default:
		fmt.Fprintf(w, "  in sync\n")
	}
	if s.Role == "Primary" {
		fmt.Fprintf(w, "  writes p50 %d µs p99 %d µs, flush p50 %d µs, lag %s", s.WriteP50us, s.WriteP99us, s.FlushP50us, formatBytes(s.LagBytes))
		if s.Ahead {
			fmt.Fprint(w, " (ahead: the peer is outdated until it catches up)")
		}
		fmt.Fprintln(w)
	}
	if s.Verifying {
		fmt.Fprintf(w, "  verify: %s checked, %s mismatched\n", formatBytes(s.VerifyDone), formatBytes(s.VerifyBad))
	}
	if s.Suspended != "" {
		fmt.Fprintf(w, "  I/O SUSPENDED: %s\n", s.Suspended)
	}
	if s.DiskError != "" {
		fmt.Fprintf(w, "  DISK ERROR: %s\n", s.DiskError)
	}
	for _, e := range lastN(s.Events, 3) {
		fmt.Fprintf(w, "  %s %s %s\n", e.Time.Local().Format("15:04:05"), e.Kind, e.Message)
	}
}

func lastN[T any](s []T, n int) []T { return s[max(0, len(s)-n):] }

func primaryCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "primary NAME",
		Short: "Promote the volume here and serve it over NBD (refused for an Outdated or Inconsistent replica without --force)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.running(args[0])
			if err != nil {
				return err
			}
			var out struct{ Epoch uint64 }
			if err := c.call("POST", "primary", controlRequest{Force: force}, &out); err != nil {
				return err
			}
			rec, _ := loadRecord(g.stateDir, args[0])
			fmt.Fprintf(g.out, "volume %s is primary here at epoch %d; NBD export %q on %s\n", args[0], out.Epoch, args[0], rec.NBD)
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "promote an Outdated or Inconsistent replica (what it lacks is lost; a new volume's first primary)")
	return cmd
}

func simpleCmd(g *globals, op, short string) *cobra.Command {
	return &cobra.Command{
		Use:   op + " NAME",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.running(args[0])
			if err != nil {
				return err
			}
			if err := c.call("POST", op, controlRequest{}, nil); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "volume %s: %s: done (tandem volume status %s)\n", args[0], op, args[0])
			return nil
		},
	}
}

func downCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "down NAME",
		Short: "Stop the volume here (refused while primary unless --force, which demotes first)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.running(args[0])
			if err != nil {
				return err
			}
			if err := c.call("POST", "down", controlRequest{Force: force}, nil); err != nil {
				return err
			}
			for range 100 {
				if dialControl(g.stateDir, args[0]) == nil {
					return nil
				}
				time.Sleep(100 * time.Millisecond)
			}
			return fmt.Errorf("volume %s: asked to stop, still running after 10 s", args[0])
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "demote a primary first (its open requests fail)")
	return cmd
}

func verifyCmd(g *globals) *cobra.Command {
	var repair, wait bool
	cmd := &cobra.Command{
		Use:   "verify NAME",
		Short: "Compare every region's checksum between the replicas while I/O goes on; --repair marks mismatches for resync",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.running(args[0])
			if err != nil {
				return err
			}
			if err := c.call("POST", "verify", controlRequest{Repair: repair}, nil); err != nil {
				return err
			}
			if !wait {
				fmt.Fprintf(g.out, "verify of %s started; 'tandem volume status %s' shows its progress\n", args[0], args[0])
				return nil
			}
			start := time.Now()
			s, err := waitIdle(cmd.Context(), c.status)
			if err != nil {
				return err
			}
			var checked, bad int64
			for _, e := range s.Events {
				if e.Kind == "verify_finished" && !e.Time.Before(start.Add(-time.Second)) {
					checked, _ = asInt(e.Attrs["bytes"])
					bad, _ = asInt(e.Attrs["mismatched_bytes"])
				}
			}
			fmt.Fprintf(g.out, "verify of %s finished: %s checked, %s out of sync", args[0], formatBytes(checked), formatBytes(bad))
			if bad > 0 && !repair {
				fmt.Fprint(g.out, " (run verify --repair to resync them from the primary)")
			}
			fmt.Fprintln(g.out)
			return nil
		},
	}
	cmd.Flags().BoolVar(&repair, "repair", false, "mark mismatched regions out of sync so the peer takes them from the primary")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the verify finished and print its result")
	return cmd
}

func asInt(v any) (int64, bool) {
	switch n := v.(type) {
	case float64:
		return int64(n), true
	case int64:
		return n, true
	case int:
		return int64(n), true
	}
	return 0, false
}

func resolveCmd(g *globals) *cobra.Command {
	var discard string
	cmd := &cobra.Command{
		Use:   "resolve NAME --discard NODE",
		Short: "Settle a split brain by hand: NODE throws away what it wrote since the split and resyncs from the other",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if discard == "" {
				return errors.New("volume: resolve needs --discard NODE: the node whose changes since the split are thrown away")
			}
			c, err := g.running(args[0])
			if err != nil {
				return err
			}
			return c.call("POST", "resolve", controlRequest{Discard: discard}, nil)
		},
	}
	cmd.Flags().StringVar(&discard, "discard", "", "the node whose changes since the split are discarded")
	return cmd
}

func rateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rate NAME RATE",
		Short: "Limit resync and verify to RATE bytes per second, live (e.g. 50M; 0 for unlimited)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := parseSize(args[1])
			if err != nil {
				return err
			}
			c, err := g.running(args[0])
			if err != nil {
				return err
			}
			return c.call("POST", "rate", controlRequest{Bytes: n}, nil)
		},
	}
}
