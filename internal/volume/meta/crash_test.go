package meta

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"tandem/internal/blockdev"
	"tandem/internal/replication"
)

// crashWorld is what a run of metadata updates promised: the superblock
// state acknowledged and the one being written, the content last issued to
// each region, and the regions whose writes the peer does not have.
type crashWorld struct {
	acked, attempt State
	latest         map[int64][]byte // region → content of the last write issued
	mustDirty      map[int64]bool   // written while disconnected, not resynced since
	writes         int
}

type crashOp struct {
	name string
	run  func(m *Meta, w *crashWorld) error
}

const crashDevSize = 1 << 20 // small(): 64 KiB extents, 4 KiB regions

func update(name string, fn func(*State)) crashOp {
	return crashOp{name, func(m *Meta, w *crashWorld) error {
		w.attempt = w.acked
		fn(&w.attempt)
		if err := m.Update(fn); err != nil {
			return err
		}
		w.acked = w.attempt
		return nil
	}}
}

// write writes region's first 4 KiB through the activity log, as the
// volume's write path does: Begin, the bit when the peer is gone, the data,
// End (unless the write stays in flight).
func write(region int64, disconnected, end bool) crashOp {
	return crashOp{fmt.Sprintf("write(%d,disc=%v,end=%v)", region, disconnected, end), func(m *Meta, w *crashWorld) error {
		off := region * m.Bitmap().RegionSize()
		ext := off / m.AL().ExtentSize()
		if _, err := m.AL().Begin(ext); err != nil {
			return err
		}
		if disconnected {
			if err := m.Bitmap().Set(off, 4096); err != nil {
				return err
			}
			w.mustDirty[region] = true
		}
		w.writes++
		content := bytes.Repeat([]byte{byte(w.writes)}, 4096)
		binary.LittleEndian.PutUint64(content, uint64(w.writes)<<16|uint64(region))
		w.latest[region] = content
		if _, err := m.Data().WriteAt(content, off); err != nil {
			return err
		}
		if end {
			return m.AL().End(ext)
		}
		return nil
	}}
}

// resynced clears a region as a resync does once the peer has its data.
func resynced(region int64) crashOp {
	return crashOp{fmt.Sprintf("resynced(%d)", region), func(m *Meta, w *crashWorld) error {
		delete(w.mustDirty, region)
		return m.Bitmap().Clear(region*m.Bitmap().RegionSize(), m.Bitmap().RegionSize())
	}}
}

var (
	flushBitmap = crashOp{"bitmap flush", func(m *Meta, _ *crashWorld) error { return m.Bitmap().Flush() }}
	flushData   = crashOp{"data flush", func(m *Meta, _ *crashWorld) error { return m.Data().Flush() }}
	closeMeta   = crashOp{"close", func(m *Meta, _ *crashWorld) error { return m.Close() }}
)

// crashScript drives the 4-extent log of small() (extent e holds regions
// 16e..16e+15) through every path that must order writes: extents evicted
// with data not yet flushed; a disconnect, then writes whose bits are only
// in memory when their extents are evicted; a write left in flight; a
// resync clearing bits of data not yet flushed; state changes between; a
// clean close.
func crashScript() []crashOp {
	return []crashOp{
		update("up-to-date", func(s *State) { s.Disk, s.Flags = replication.UpToDate, Consistent|Primary }),
		write(1, false, true), write(17, false, true), write(18, false, true), write(33, false, true), write(49, false, true),
		write(2, false, true), write(19, false, true), write(34, false, true), write(50, false, true), // hot, unflushed
		write(65, false, true), // evicts 0, whose last write is not flushed
		flushData,
		write(81, false, true), // evicts 1 (flushed)
		update("disconnect", func(s *State) {
			s.Gen = replication.GenIDs{Current: 0xc2, Bitmap: 0xc1, History: [2]replication.GenID{replication.JustCreated}}
			s.Flags |= PeerOutdated
		}),
		write(97, true, true), write(113, true, true), write(129, true, true), write(145, true, true),
		write(161, true, true),  // evicts 6, whose bit is only in memory
		write(177, true, false), // evicts 7 likewise; stays in flight
		write(3, true, true),    // evicts 8
		update("epoch", func(s *State) { s.Epoch = 9 }),
		resynced(97), resynced(3), // 3's data is not flushed yet
		flushBitmap,
		write(193, true, true), // evicts 9
		write(209, false, true), write(4, true, true),
		resynced(145), resynced(193),
		flushBitmap,
		update("demote", func(s *State) { s.Flags &^= Primary }),
		write(225, false, true),
		closeMeta,
	}
}

// TestCrashAtEveryStep cuts the power at every write and flush of the
// script (also tearing the write that meets the cut), then opens what a
// crash could leave (only the flushed writes, all of them, random subsets
// of the unflushed ones) and recovers: the superblock holds the old or the
// new state, never garbage, and every region whose data the peer may lack
// is dirty.
func TestCrashAtEveryStep(t *testing.T) {
	base := blockdev.NewMem(crashDevSize)
	o := small()
	o.ID = replication.VolumeID{1}
	m0 := mustCreate(t, base, o)
	initial := m0.State()
	script := crashScript()
	for _, tear := range []int{0, 100} {
		for steps := 0; ; steps++ {
			mem := base.Crash()
			dev := blockdev.NewFaulty(mem)
			cut := blockdev.NewPowerCut(steps, tear)
			dev.SharePowerCut(cut)
			w := &crashWorld{acked: initial, attempt: initial, latest: map[int64][]byte{}, mustDirty: map[int64]bool{}}
			m := mustOpen(t, dev, OpenOptions{})
			var failed string
			for _, op := range script {
				if err := op.run(m, w); err != nil {
					if !errors.Is(err, blockdev.ErrPowerCut) {
						t.Fatalf("steps %d: %s: %v", steps, op.name, err)
					}
					failed = op.name
					break
				}
			}
			if !cut.Fired() {
				checkCrash(t, fmt.Sprintf("steps %d (no cut)", steps), mem, w)
				t.Logf("tear %d: cut at each of %d steps", tear, steps)
				break
			}
			images := []*blockdev.Mem{mem.Crash(), mem.CrashKeeping(func(int) bool { return true })}
			rng := rand.New(rand.NewPCG(uint64(steps), uint64(tear)))
			for range 4 {
				images = append(images, mem.CrashKeeping(func(int) bool { return rng.IntN(2) == 0 }))
			}
			for i, img := range images {
				checkCrash(t, fmt.Sprintf("tear %d, cut after %d steps, in %s, image %d", tear, steps, failed, i), img, w)
			}
		}
	}
}

// checkCrash opens img and recovers it as the next start does, then checks
// it against what the run promised.
func checkCrash(t *testing.T, where string, img *blockdev.Mem, w *crashWorld) {
	t.Helper()
	m, err := Open(img, OpenOptions{})
	if err != nil {
		t.Fatalf("%s: open: %v", where, err)
	}
	if _, err := m.AL().Recover(); err != nil {
		t.Fatalf("%s: recover: %v", where, err)
	}
	if st := m.State(); st != w.acked && st != w.attempt {
		t.Fatalf("%s: state %+v is neither the acknowledged %+v nor the attempted %+v", where, st, w.acked, w.attempt)
	}
	rs := m.Bitmap().RegionSize()
	for r := range w.mustDirty {
		if !m.Bitmap().Test(r*rs, 1) {
			t.Fatalf("%s: region %d was written while disconnected and is not dirty", where, r)
		}
	}
	got := make([]byte, 4096)
	for r, want := range w.latest {
		if m.Bitmap().Test(r*rs, 1) {
			continue
		}
		m.Data().ReadAt(got, r*rs)
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: region %d is clean, yet its data is not the last written (the peer has a write this replica lost)", where, r)
		}
	}
}

// TestRecoverCutAtEveryStep: the next start after a crash is itself cut at
// every step of Open, Recover and Close; the start after that still finds
// every region the peer may lack dirty.
func TestRecoverCutAtEveryStep(t *testing.T) {
	base := blockdev.NewMem(crashDevSize)
	m := mustCreate(t, base, small())
	w := &crashWorld{acked: m.State(), attempt: m.State(), latest: map[int64][]byte{}, mustDirty: map[int64]bool{}}
	script := crashScript()
	for _, op := range script[:len(script)-1] { // all but the close: a crash with writes in flight
		if err := op.run(m, w); err != nil {
			t.Fatal(err)
		}
	}
	crashed := base.CrashKeeping(func(i int) bool { return i%3 != 0 })
	for steps := 0; ; steps++ {
		img := crashed.Crash()
		dev := blockdev.NewFaulty(img)
		cut := blockdev.NewPowerCut(steps, 100)
		dev.SharePowerCut(cut)
		r, err := Open(dev, OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !r.Unclean() {
			t.Fatal("a crash with writes in flight left a clean log")
		}
		if _, err = r.AL().Recover(); err == nil {
			err = r.Close()
		}
		if !cut.Fired() {
			if err != nil {
				t.Fatal(err)
			}
			checkCrash(t, "uncut recovery", img, w)
			break
		}
		for i, again := range []*blockdev.Mem{img.Crash(), img.CrashKeeping(func(int) bool { return true })} {
			checkCrash(t, fmt.Sprintf("recovery cut after %d steps, image %d", steps, i), again, w)
		}
	}
}
