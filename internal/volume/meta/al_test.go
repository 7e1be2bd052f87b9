package meta

import (
	"errors"
	"slices"
	"testing"

	"tandem/internal/blockdev"
)

func TestActivityLogHotColdAndEviction(t *testing.T) {
	mem := blockdev.NewMem(testSize)
	dev := blockdev.NewFaulty(mem)
	m := mustCreate(t, dev, small()) // 4 hot extents
	al := m.AL()
	writesOf := func() int { _, w := dev.Counts(); return w }
	for e := int64(0); e < 4; e++ {
		before := writesOf()
		if wrote, err := al.Begin(e); err != nil || !wrote {
			t.Fatalf("cold Begin(%d): %v %v", e, wrote, err)
		}
		if writesOf()-before != 1 {
			t.Fatalf("cold Begin(%d) took %d writes, want one transaction", e, writesOf()-before)
		}
	}
	before := writesOf()
	if wrote, err := al.Begin(2); err != nil || wrote || writesOf() != before {
		t.Fatalf("hot Begin: wrote %v err %v, %d writes", wrote, err, writesOf()-before)
	}
	if _, err := al.Begin(9); !IsALFull(err) {
		t.Fatalf("Begin with every extent busy: %v", err)
	}
	for _, e := range []int64{0, 1, 2, 2} {
		if err := al.End(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := al.End(1); err == nil {
		t.Fatal("End without Begin accepted")
	}
	// 0 is the least recently used idle extent: it goes first.
	if wrote, err := al.Begin(9); err != nil || !wrote {
		t.Fatalf("Begin evicting: %v %v", wrote, err)
	}
	if got := al.Hot(); !slices.Equal(got, []int64{1, 2, 3, 9}) {
		t.Fatalf("hot %v, want [1 2 3 9]", got)
	}
	if _, err := al.Begin(al.Extents()); !errors.Is(err, blockdev.ErrOutOfRange) {
		t.Fatalf("Begin past the data: %v", err)
	}
	if f, e := al.Span(al.ExtentSize()-1, 2); f != 0 || e != 2 {
		t.Fatalf("span %d %d", f, e)
	}
}

// A primary crashes with writes in flight and others finished; at restart
// exactly the extents of the newest transaction become dirty.
func TestRecoverMarksExactlyTheHotExtents(t *testing.T) {
	mem := blockdev.NewMem(testSize)
	m := mustCreate(t, mem, small())
	m.SetFlags(Primary|Consistent, 0)
	al := m.AL()
	for _, e := range []int64{3, 7, 8, 12, 20} { // 3 is evicted by 20
		if _, err := al.Begin(e); err != nil {
			t.Fatal(err)
		}
		m.Data().WriteAt(make([]byte, 4096), e*al.ExtentSize())
		if e != 8 {
			al.End(e)
		}
	}
	crashed := mem.Crash()
	r, err := Open(crashed, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Unclean() || r.State().Flags&Primary == 0 {
		t.Fatalf("unclean %v flags %v: a crashed primary must show", r.Unclean(), r.State().Flags)
	}
	if _, err := r.AL().Begin(1); !errors.Is(err, ErrNotRecovered) {
		t.Fatalf("Begin before Recover: %v", err)
	}
	got, err := r.AL().Recover()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []int64{7, 8, 12, 20}) {
		t.Fatalf("recovered %v, want [7 8 12 20]", got)
	}
	per := al.ExtentSize() / r.Bitmap().RegionSize()
	if n := r.Bitmap().DirtyRegions(); n != 4*per {
		t.Fatalf("%d dirty regions, want %d", n, 4*per)
	}
	for off, n := range r.Bitmap().Ranges() {
		for x := off; x < off+n; x += al.ExtentSize() {
			if off%al.ExtentSize() != 0 || n%al.ExtentSize() != 0 || !slices.Contains(got, x/al.ExtentSize()) {
				t.Fatalf("dirty range %d+%d is not made of recovered extents", off, n)
			}
		}
	}
	// Recovered durably: a crash right after finds a clean log and the bits.
	again := mustOpen(t, crashed.Crash(), OpenOptions{})
	if again.Unclean() || again.Bitmap().DirtyRegions() != 4*per {
		t.Fatalf("after recover and crash: unclean %v, %d dirty", again.Unclean(), again.Bitmap().DirtyRegions())
	}
	if ext, err := again.AL().Recover(); err != nil || ext != nil {
		t.Fatalf("second recover: %v %v", ext, err)
	}
}

func TestCleanCloseLeavesAnEmptyLog(t *testing.T) {
	mem := blockdev.NewMem(testSize)
	m := mustCreate(t, mem, small())
	for e := range int64(6) {
		m.AL().Begin(e)
		m.AL().End(e)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.AL().Begin(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Begin after Close: %v", err)
	}
	again := mustOpen(t, mem.Crash(), OpenOptions{})
	if again.Unclean() || again.Bitmap().DirtyRegions() != 0 {
		t.Fatalf("unclean %v dirty %d after a clean close", again.Unclean(), again.Bitmap().DirtyRegions())
	}
}

func TestBeginWriteSpansExtents(t *testing.T) {
	m := mustCreate(t, blockdev.NewMem(testSize), small())
	al := m.AL()
	x := al.ExtentSize()
	if wrote, err := al.BeginWrite(x-100, 2*x); err != nil || !wrote {
		t.Fatalf("BeginWrite over 3 extents: %v %v", wrote, err)
	}
	if got := al.Hot(); !slices.Equal(got, []int64{0, 1, 2}) {
		t.Fatalf("hot %v", got)
	}
	al.Begin(5) // the fourth and last slot, busy
	if _, err := al.BeginWrite(7*x, 2*x); !IsALFull(err) {
		t.Fatalf("BeginWrite with the log full: %v", err)
	}
	if err := al.EndWrite(x-100, 2*x); err != nil {
		t.Fatal(err)
	}
	if wrote, err := al.BeginWrite(7*x, 2*x); err != nil || !wrote {
		t.Fatalf("BeginWrite after EndWrite: %v %v", wrote, err)
	}
	if err := al.EndWrite(7*x, 2*x); err != nil {
		t.Fatal(err)
	}
	if err := al.EndWrite(7*x, 2*x); err == nil {
		t.Fatal("EndWrite twice accepted")
	}
}

// A transaction that fails (a disk error, not a crash) leaves the log as it
// was; the retry goes to the same slot and the newest good transaction
// stays readable throughout.
func TestFailedTransactionLeavesTheLog(t *testing.T) {
	mem := blockdev.NewMem(testSize)
	dev := blockdev.NewFaulty(mem)
	m := mustCreate(t, dev, small())
	al := m.AL()
	for e := range int64(4) {
		al.Begin(e)
		al.End(e)
	}
	dev.FailWrites()
	if _, err := al.Begin(9); !errors.Is(err, blockdev.ErrInjected) {
		t.Fatalf("Begin on a failing disk: %v", err)
	}
	if got := al.Hot(); !slices.Equal(got, []int64{0, 1, 2, 3}) {
		t.Fatalf("hot %v after a failed transaction", got)
	}
	dev.Heal()
	dev.TearNextWrite(30)
	al.Begin(9)
	r := mustOpen(t, mem.CrashKeeping(func(int) bool { return true }), OpenOptions{})
	if ext, _ := r.AL().Recover(); !slices.Equal(ext, []int64{0, 1, 2, 3}) {
		t.Fatalf("after a torn transaction the log is %v, want [0 1 2 3]", ext)
	}
	if wrote, err := al.Begin(9); err != nil || !wrote {
		t.Fatalf("retry: %v %v", wrote, err)
	}
	r = mustOpen(t, mem.Crash(), OpenOptions{})
	if ext, _ := r.AL().Recover(); !slices.Equal(ext, []int64{1, 2, 3, 9}) {
		t.Fatalf("after the retry the log is %v, want [1 2 3 9]", ext)
	}
}
