package raidcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"tandem/internal/raid"
)

func createCmd(g *globals) *cobra.Command {
	var level, layout, chunk, bitmapChunk, journal, size string
	var spares []string
	var noSums, wait bool
	cmd := &cobra.Command{
		Use:   "create --level L [--chunk C] [--spare M]… NAME M1 M2 …",
		Short: "Create an array on members (files or block devices) and record it",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) (retErr error) {
			name, paths := args[0], args[1:]
			if err := validName(name); err != nil {
				return err
			}
			if _, err := loadRecord(g.stateDir, name); err == nil && !g.force {
				return fmt.Errorf("raid: an array named %q is already recorded; use --force to replace the record", name)
			}
			lvl, err := raid.ParseLevel(level)
			if err != nil {
				return err
			}
			lay, err := raid.ParseLayout(layout)
			if err != nil {
				return err
			}
			co := raid.CreateOptions{Name: name, Level: lvl, Layout: lay, NoChecksums: noSums, Force: g.force}
			for _, f := range []struct {
				s   string
				dst *int64
			}{{chunk, &co.Chunk}, {bitmapChunk, &co.BitmapChunk}, {journal, &co.JournalSize}} {
				if f.s != "" {
					if *f.dst, err = parseSize(f.s); err != nil {
						return err
					}
				}
			}
			all := append(append([]string(nil), paths...), spares...)
			if size != "" {
				n, err := parseSize(size)
				if err != nil {
					return err
				}
				// Files made here go again if the array is not created:
				// bad input leaves nothing behind.
				var made []string
				defer func() {
					if retErr != nil {
						for _, p := range made {
							os.Remove(p)
						}
					}
				}()
				for _, p := range all {
					if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
						if err := createFile(p, n); err != nil {
							return err
						}
						made = append(made, p)
					}
				}
			}
			if err := sameFiles(all); err != nil {
				return err
			}
			ms := g.openTarget(target{paths: paths})
			ss := g.openTarget(target{paths: spares})
			if len(ms) != len(paths) || len(ss) != len(spares) {
				closeMembers(append(ms, ss...))
				return errors.New("raid: cannot open every member; nothing written")
			}
			log := g.logger()
			bus, done := g.bus(log)
			defer done()
			o := g.options(log, bus)
			// Without --wait the initial resync waits for assemble or serve,
			// as create says: started now, it could finish before Close, or
			// not, depending on how long recording the array takes.
			o.NoBackground = !wait
			a, err := raid.Create(ms, ss, co, o)
			if err != nil {
				closeMembers(append(ms, ss...))
				return err
			}
			rec := &record{Name: name, UUID: a.UUID().String(), Level: lvl.String(), Created: time.Now()}
			rec.addMembers(paths...)
			rec.addMembers(spares...)
			if err := saveRecord(g.stateDir, rec); err != nil {
				a.Close()
				return err
			}
			geo := a.Geometry()
			fmt.Fprintf(g.out, "created %s: %s, %d members, chunk %d KiB, %d MiB usable, uuid %s\n",
				name, geo.Level, geo.Members, geo.Chunk>>10, a.Size()>>20, a.UUID())
			if wait {
				if err := g.runJobs(cmd.Context(), a); err != nil {
					a.Close()
					return err
				}
			} else {
				fmt.Fprintln(g.out, "the initial resync runs when the array is assembled or served")
			}
			return a.Close()
		},
	}
	f := cmd.Flags()
	f.StringVarP(&level, "level", "l", "", "RAID level: 0, 1, 5, 6 or 10")
	f.StringVar(&layout, "layout", "", "layout: left-symmetric (5/6), n2, f2 or o2 (10)")
	f.StringVarP(&chunk, "chunk", "c", "", "chunk size (default 64K)")
	f.StringArrayVar(&spares, "spare", nil, "hot spare member (repeatable)")
	f.StringVar(&bitmapChunk, "bitmap-chunk", "", "member data per write-intent bitmap bit (default 64M)")
	f.StringVar(&journal, "journal-size", "", "write-hole journal per member, RAID 5/6 (default 16M)")
	f.StringVar(&size, "size", "", "create member files that do not exist, of this size")
	f.BoolVar(&noSums, "no-checksums", false, "turn off per-block checksums (on by default)")
	f.BoolVar(&wait, "wait", false, "run the initial resync now")
	f.BoolVar(&g.force, "force", false, "overwrite members that belong to another array")
	cmd.MarkFlagRequired("level")
	return cmd
}

// sameFiles refuses two paths that name one file or device (a symlink, a
// /dev/disk/by-id name, "./m0" and "m0"): an array would hold a member
// twice.
func sameFiles(paths []string) error {
	type named struct {
		path string
		fi   os.FileInfo
	}
	var seen []named
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			continue // reported when it is opened
		}
		for _, o := range seen {
			if o.path != p && os.SameFile(o.fi, fi) { // the same string: the engine says "given twice"
				return fmt.Errorf("raid: %s and %s are the same file or device; nothing written", o.path, p)
			}
		}
		seen = append(seen, named{p, fi})
	}
	return nil
}

func createFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("raid: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("raid: %w", err)
	}
	return nil
}

func assembleCmd(g *globals) *cobra.Command {
	var scan bool
	cmd := &cobra.Command{
		Use:   "assemble [--scan] [NAME | M1 M2 …]",
		Short: "Bring an array up, replay its journal and finish resync or rebuild, then stop it cleanly",
		RunE: func(cmd *cobra.Command, args []string) error {
			var targets []target
			if scan {
				names, err := listRecords(g.stateDir)
				if err != nil {
					return err
				}
				for _, n := range names {
					r, err := loadRecord(g.stateDir, n)
					if err != nil {
						return err
					}
					targets = append(targets, target{rec: r, paths: r.Members})
				}
			} else {
				if len(args) == 0 {
					return errors.New("raid: name an array or its members, or use --scan")
				}
				t, err := g.resolve(args)
				if err != nil {
					return err
				}
				targets = append(targets, t)
			}
			log := g.logger()
			bus, done := g.bus(log)
			defer done()
			var errs []error
			for _, t := range targets {
				if t.rec != nil && g.control(t.rec.Name) != nil {
					fmt.Fprintf(g.out, "%s: served (running)\n", t.rec.Name)
					continue
				}
				// What is pending is read before assembling: the array
				// starts its resync at once, and a small one was over
				// before its status was read (CI beside stress-ng).
				pending, perr := g.status(t)
				a, err := g.assemble(t, g.options(log, bus))
				if err != nil {
					errs = append(errs, err)
					continue
				}
				st := a.Status()
				if perr == nil && pending.ResyncPending > st.ResyncPending {
					st = pending
				}
				if st.ResyncPending > 0 {
					fmt.Fprintf(g.out, "%s: resync %s\n", st.Name, pendingWhat(st))
				}
				err = g.runJobs(cmd.Context(), a)
				printStatus(g.out, a.Status())
				errs = append(errs, err, a.Close())
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVar(&scan, "scan", false, "assemble every recorded array")
	cmd.Flags().BoolVar(&g.force, "force", false, "start a dirty, degraded RAID 5/6")
	return cmd
}

func statusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--json] [NAME | M1 M2 …]",
		Short: "Show arrays like /proc/mdstat: level, state, members and roles, rebuild progress, mismatches",
		RunE: func(cmd *cobra.Command, args []string) error {
			var targets []target
			if len(args) == 0 {
				names, err := listRecords(g.stateDir)
				if err != nil {
					return err
				}
				for _, n := range names {
					r, err := loadRecord(g.stateDir, n)
					if err == nil {
						targets = append(targets, target{rec: r, paths: r.Members})
					}
				}
			} else {
				t, err := g.resolve(args)
				if err != nil {
					return err
				}
				targets = append(targets, t)
			}
			var all []raid.Status
			var errs []error
			for _, t := range targets {
				st, err := g.status(t)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				all = append(all, st)
			}
			if asJSON {
				if err := printJSON(g.out, all); err != nil {
					return err
				}
			} else {
				for _, st := range all {
					printStatus(g.out, st)
				}
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// status asks the running server, or reads the superblocks.
func (g *globals) status(t target) (raid.Status, error) {
	if t.rec != nil {
		if c := g.control(t.rec.Name); c != nil {
			var st raid.Status
			err := c.call("GET", "status", controlRequest{}, &st)
			return st, err
		}
	}
	ms := g.openTarget(t)
	defer closeMembers(ms)
	st, problems, err := raid.Inspect(ms, t.assembleOptions())
	for _, p := range problems {
		fmt.Fprintf(g.errOut, "raid: %s: left out: %v\n", p.Name, p.Err)
	}
	if err == nil && t.rec == nil {
		if c := g.control(st.Name); c != nil {
			err = c.call("GET", "status", controlRequest{}, &st)
		}
	}
	return st, err
}

func printStatus(w io.Writer, st raid.Status) {
	var parts []string
	for _, m := range st.Members {
		tag := ""
		switch m.State {
		case "spare":
			tag = "(S)"
		case "faulty":
			tag = "(F)"
		case "rebuilding", "replacing":
			tag = "(R)"
		}
		if m.Slot >= 0 {
			parts = append(parts, fmt.Sprintf("%s[%d]%s", m.Name, m.Slot, tag))
		} else {
			parts = append(parts, m.Name+tag)
		}
	}
	layout := ""
	if st.Layout != "" {
		layout = " " + st.Layout
	}
	fmt.Fprintf(w, "%s : %s %s%s %s\n", st.Name, st.State, st.Level, layout, strings.Join(parts, " "))
	bar := ""
	for i := 0; i < st.Slots; i++ {
		c := "_"
		for _, m := range st.Members {
			if m.Slot == i && m.State == "in_sync" {
				c = "U"
			}
		}
		bar += c
	}
	sums := "checksums"
	if !st.Checksums {
		sums = "no checksums"
	}
	fmt.Fprintf(w, "      %d blocks, chunk %dk, %s [%d/%d] [%s] events %d\n", st.Size/1024, st.Chunk/1024, sums, st.Slots, st.InSync, bar, st.Events)
	if p := st.Progress; p != nil {
		fmt.Fprintf(w, "      %s\n", progressLine(p))
	} else if st.ResyncPending > 0 {
		fmt.Fprintf(w, "      resync=PENDING %s; it runs when the array is assembled or served\n", pendingWhat(st))
	}
	if st.Mismatches > 0 || st.Repaired > 0 || st.ReadErrors > 0 {
		fmt.Fprintf(w, "      mismatches %d, repaired blocks %d, read errors %d\n", st.Mismatches, st.Repaired, st.ReadErrors)
	}
	if st.DirtyRegions > 0 {
		fmt.Fprintf(w, "      bitmap: %d dirty regions\n", st.DirtyRegions)
	}
}

// pendingWhat says how much awaits resync: all of a new array, or the
// regions written when it was last stopped without a clean shutdown.
func pendingWhat(st raid.Status) string {
	if st.ResyncPending == st.Regions {
		return fmt.Sprintf("(all %d bitmap regions: new, or not stopped cleanly)", st.Regions)
	}
	return fmt.Sprintf("(%d of %d bitmap regions: not stopped cleanly)", st.ResyncPending, st.Regions)
}

func examineCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "examine M…",
		Short: "Print what each member's superblock says",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var errs []error
			for _, p := range args {
				m, err := openMember(p)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				e, err := raid.Examine(m)
				m.Dev.Close()
				if err != nil {
					errs = append(errs, err)
					continue
				}
				role := fmt.Sprint(e.Role)
				switch e.Role {
				case raid.RoleSpare:
					role = "spare"
				case raid.RoleFaulty:
					role = "faulty"
				}
				fmt.Fprintf(g.out, "%s: array %q uuid %s %s %d members chunk %dk role %s events %d clean %v\n",
					p, e.Name, e.Array, e.Geometry.Level, e.Geometry.Members, e.Geometry.Chunk>>10, role, e.Events, e.Clean)
			}
			return errors.Join(errs...)
		},
	}
}

func checkCmd(g *globals, repair bool) *cobra.Command {
	use, short := "check", "Verify every stripe and checksum and report mismatches (changes nothing)"
	if repair {
		use, short = "repair", "Verify every stripe and fix what is wrong, using checksums to know which copy is right"
	}
	return &cobra.Command{
		Use:   use + " NAME | M1 M2 …",
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res raid.CheckResult
			err := g.act(cmd.Context(), args, func(c *controlClient) error {
				return c.call("POST", "check", controlRequest{Repair: repair}, &res)
			}, func(a *raid.Array) error {
				var err error
				res, err = a.Check(cmd.Context(), repair)
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "%s: %d stripes, %d mismatches, %d checksum errors, %d blocks repaired, %d unrecoverable\n",
				use, res.Stripes, res.Mismatches, res.ChecksumErrors, res.Repaired, res.Unrecoverable)
			if res.Unrecoverable > 0 {
				return errors.New("raid: some stripes could not be made right")
			}
			return nil
		},
	}
}

// act runs an administrative action on the served array through its
// control socket, or else assembles the array, acts, finishes any rebuild
// and stops it cleanly.
func (g *globals) act(ctx context.Context, args []string, served func(*controlClient) error, offline func(*raid.Array) error) error {
	t, err := g.resolve(args)
	if err != nil {
		return err
	}
	name := ""
	if t.rec != nil {
		name = t.rec.Name
	} else if st, err := g.status(t); err == nil {
		name = st.Name
	}
	if c := g.control(name); name != "" && c != nil {
		return served(c)
	}
	log := g.logger()
	bus, done := g.bus(log)
	defer done()
	a, err := g.assemble(t, g.options(log, bus))
	if err != nil {
		return err
	}
	err = offline(a)
	if err == nil {
		err = g.runJobs(ctx, a)
	}
	return errors.Join(err, a.Close())
}

func failCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "fail NAME MEMBER",
		Short: "Mark a member faulty (a spare takes over)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.act(cmd.Context(), args[:1], func(c *controlClient) error {
				return c.call("POST", "fail", controlRequest{Member: args[1]}, nil)
			}, func(a *raid.Array) error { return a.Fail(args[1]) })
		},
	}
}

func removeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME MEMBER",
		Short: "Remove a faulty or spare member",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.act(cmd.Context(), args[:1], func(c *controlClient) error {
				return c.call("POST", "remove", controlRequest{Member: args[1]}, nil)
			}, func(a *raid.Array) error {
				if err := a.Remove(args[1]); err != nil {
					return err
				}
				return g.unrecordMember(a.Name(), args[1])
			})
		},
	}
}

func addCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "add NAME PATH",
		Short: "Add a member: a returning member resyncs what it missed (bitmap), any other becomes a spare",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.act(cmd.Context(), args[:1], func(c *controlClient) error {
				return c.call("POST", "add", controlRequest{Path: args[1], Force: force}, nil)
			}, func(a *raid.Array) error {
				if err := joinMember(a, args[1], force, a.Add); err != nil {
					return err
				}
				return g.recordMember(a.Name(), args[1])
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "take a member that belongs to another array or holds other data")
	return cmd
}

func replaceCmd(g *globals) *cobra.Command {
	var with string
	var force bool
	cmd := &cobra.Command{
		Use:   "replace NAME OLD --with NEW",
		Short: "Copy an active member onto a new one while it stays in service, then retire it",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.act(cmd.Context(), args[:1], func(c *controlClient) error {
				return c.call("POST", "replace", controlRequest{Member: args[1], Path: with, Force: force}, nil)
			}, func(a *raid.Array) error {
				if err := joinMember(a, with, force, func(m raid.Member) error { return a.Replace(args[1], m) }); err != nil {
					return err
				}
				return g.recordMember(a.Name(), with)
			})
		},
	}
	cmd.Flags().StringVar(&with, "with", "", "the new member")
	cmd.Flags().BoolVar(&force, "force", false, "take a member that belongs to another array or holds other data")
	cmd.MarkFlagRequired("with")
	return cmd
}

// joinMember opens path and hands it to join (Add or Replace), closing it
// again if that fails. Without force it refuses a device that belongs to
// another array (its superblock says so) or holds other data in its first
// 64 KiB: adding it would overwrite that, and a member of another array
// would leave that array degraded.
func joinMember(a *raid.Array, path string, force bool, join func(raid.Member) error) error {
	m, err := openMember(path)
	if err != nil {
		return err
	}
	if !force {
		if err := raid.Claimable(m, a.UUID()); err != nil {
			m.Dev.Close()
			return err
		}
	}
	if err := join(m); err != nil {
		m.Dev.Close()
		return err
	}
	return nil
}

func (g *globals) recordMember(name, path string) error {
	r, err := loadRecord(g.stateDir, name)
	if err != nil {
		return nil
	}
	r.addMembers(path)
	return saveRecord(g.stateDir, r)
}

// unrecordMember takes a removed member out of the array's record, so that
// later commands no longer offer it (and warn that it was left out). Its
// entry in the superblocks' role table stays: add PATH re-adds it with a
// bitmap resync.
func (g *globals) unrecordMember(name, path string) error {
	r, err := loadRecord(g.stateDir, name)
	if err != nil {
		return nil
	}
	r.removeMember(path)
	return saveRecord(g.stateDir, r)
}

func rateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rate NAME BYTES_PER_SEC",
		Short: "Limit the rebuild and resync of a served array (e.g. 50M; 0 lifts the limit)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := parseSize(args[1])
			if err != nil {
				return err
			}
			c := g.control(args[0])
			if c == nil {
				return fmt.Errorf("raid: %s is not being served (with --state-dir %s); offline, give serve --rebuild-rate", args[0], g.stateDir)
			}
			if err := c.call("POST", "rate", controlRequest{Bytes: n}, nil); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "%s: rebuild and resync limited to %d bytes/s (0: no limit)\n", args[0], n)
			return nil
		},
	}
}
