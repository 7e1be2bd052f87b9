package meta

import (
	"math/rand/v2"
	"slices"
	"testing"

	"tandem/internal/blockdev"
)

// nullDevice is a large data device that keeps nothing: for bitmaps of
// many pages, with the metadata on a small memory device.
type nullDevice struct{ size int64 }

func (d nullDevice) ReadAt(p []byte, off int64) (int, error) { clear(p); return len(p), nil }
func (d nullDevice) WriteAt(p []byte, off int64) (int, error) {
	return len(p), nil
}
func (d nullDevice) Flush() error { return nil }
func (d nullDevice) Size() int64  { return d.size }
func (d nullDevice) Close() error { return nil }

// bigBitmap opens a volume of 5 bitmap pages (4 KiB regions over 600 MiB
// plus a partial region at the end).
func bigBitmap(t *testing.T) (*Meta, *blockdev.Mem, blockdev.Device) {
	data := nullDevice{600<<20 + 4096*3}
	o := small()
	mdev := blockdev.NewMem(MetaSize(data.size, o))
	o.Meta = mdev
	o.DataSize = data.size
	m := mustCreate(t, data, o)
	if m.lay.BitmapPages != 5 {
		t.Fatalf("%d bitmap pages, want 5", m.lay.BitmapPages)
	}
	return m, mdev, data
}

// TestBitmapAgainstReference drives random Set/Clear/Test over a bitmap of
// several pages and compares with a map of regions, across reopens.
func TestBitmapAgainstReference(t *testing.T) {
	m, mdev, data := bigBitmap(t)
	rng := rand.New(rand.NewPCG(1, 2))
	ref := map[int64]bool{}
	rs, size := m.Bitmap().RegionSize(), m.DataSize()
	for i := range 3000 {
		off := rng.Int64N(size)
		n := min(rng.Int64N(5*rs)+1, size-off)
		if i%7 == 0 { // runs across a page boundary
			off = bitsPerPage*rs*(1+rng.Int64N(4)) - rs
			n = 3 * rs
		}
		r0, r1 := off/rs, (off+n+rs-1)/rs
		switch rng.IntN(3) {
		case 0:
			m.Bitmap().Set(off, n)
			for r := r0; r < r1; r++ {
				ref[r] = true
			}
		case 1:
			m.Bitmap().Clear(off, n)
			for r := r0; r < r1; r++ {
				if r*rs >= off && (min((r+1)*rs, size) <= off+n) {
					delete(ref, r)
				}
			}
		case 2:
			want := false
			for r := r0; r < r1; r++ {
				want = want || ref[r]
			}
			if got := m.Bitmap().Test(off, n); got != want {
				t.Fatalf("op %d: Test(%d, %d) = %v, want %v", i, off, n, got, want)
			}
		}
		if i%500 == 499 {
			if err := m.Bitmap().Flush(); err != nil {
				t.Fatal(err)
			}
			m = mustOpen(t, data, OpenOptions{Meta: mdev.Crash()})
			mdev = m.mdev.(*blockdev.Mem)
		}
	}
	var want []int64
	for r := range ref {
		want = append(want, r)
	}
	slices.Sort(want)
	var got []int64
	var bytesDirty int64
	for off, n := range m.Bitmap().Ranges() {
		for r := off / rs; r*rs < off+n; r++ {
			got = append(got, r)
		}
		bytesDirty += n
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%d dirty regions, reference %d", len(got), len(want))
	}
	if m.Bitmap().DirtyRegions() != int64(len(want)) || m.Bitmap().DirtyBytes() != bytesDirty {
		t.Fatalf("counts: %d regions %d bytes, ranges give %d and %d", m.Bitmap().DirtyRegions(), m.Bitmap().DirtyBytes(), len(want), bytesDirty)
	}
}

func TestBitmapEdges(t *testing.T) {
	m, _, _ := bigBitmap(t)
	b, rs, size := m.Bitmap(), m.Bitmap().RegionSize(), m.DataSize()
	if err := b.Set(size-1, 2); err == nil {
		t.Fatal("Set past the data accepted")
	}
	if err := b.Set(-1, 1); err == nil {
		t.Fatal("Set before the data accepted")
	}
	b.Set(rs, rs)
	b.Clear(rs+1, rs) // does not cover the region whole
	if !b.Test(rs, 1) {
		t.Fatal("a partial Clear cleaned the region")
	}
	// A last region shorter than the others counts as whole for a Clear
	// that reaches the data's end.
	short := mustCreate(t, blockdev.NewMem(testSize), CreateOptions{})
	sb, srs := short.Bitmap(), short.Bitmap().RegionSize()
	lastOff := short.DataSize() / srs * srs
	if lastOff == short.DataSize() {
		t.Fatal("the test wants a data size that is not a whole number of regions")
	}
	sb.Set(short.DataSize()-1, 1)
	sb.Clear(lastOff, short.DataSize()-lastOff)
	if sb.Test(short.DataSize()-1, 1) {
		t.Fatal("Clear of the short last region to the data's end left it dirty")
	}
	if b.Test(size, 100) || b.Test(-50, 10) {
		t.Fatal("bytes past the data tested dirty")
	}
	// Bytes and Merge: what the peer sends is ORed in.
	other, _, _ := bigBitmap(t)
	other.Bitmap().Set(5*rs, 3*rs)
	other.Bitmap().Set(size-rs, rs)
	if err := b.Merge(other.Bitmap().Bytes()); err != nil {
		t.Fatal(err)
	}
	if b.DirtyRegions() != 5 || !b.Test(6*rs, 1) || !b.Test(size-1, 1) {
		t.Fatalf("after merge: %d dirty", b.DirtyRegions())
	}
	if err := b.Merge(make([]byte, 3)); err == nil {
		t.Fatal("a bitmap of another size merged")
	}
	if off, n, ok := b.Next(rs + 1); !ok || off != rs || n != rs {
		t.Fatalf("Next from inside region 1: %d %d %v", off, n, ok)
	}
}

// A bitmap flush cut at every step: each page is its old or its new
// version, so the bits set before the previous flush all survive.
func TestBitmapFlushCutAtEveryStep(t *testing.T) {
	m, mdev, data := bigBitmap(t)
	rs := m.Bitmap().RegionSize()
	for p := range int64(5) {
		m.Bitmap().Set(p*bitsPerPage*rs, rs)
	}
	m.Bitmap().Flush()
	base := mdev.Crash()
	for steps := 0; ; steps++ {
		img := base.Crash()
		dev := blockdev.NewFaulty(img)
		cut := blockdev.NewPowerCut(steps, 50)
		dev.SharePowerCut(cut)
		m := mustOpen(t, data, OpenOptions{Meta: dev})
		for p := range int64(5) {
			m.Bitmap().Set((p*bitsPerPage+1)*rs, rs)
			m.Bitmap().Clear(p*bitsPerPage*rs, rs)
		}
		err := m.Bitmap().Flush()
		if !cut.Fired() {
			if err != nil {
				t.Fatal(err)
			}
			break
		}
		for _, crashed := range []*blockdev.Mem{img.Crash(), img.CrashKeeping(func(i int) bool { return i%2 == 0 })} {
			r := mustOpen(t, data, OpenOptions{Meta: crashed})
			for p := range int64(5) {
				old, new := r.Bitmap().Test(p*bitsPerPage*rs, 1), r.Bitmap().Test((p*bitsPerPage+1)*rs, 1)
				if old == new {
					t.Fatalf("steps %d: page %d is neither old nor new (old bit %v, new bit %v)", steps, p, old, new)
				}
			}
		}
	}
}
