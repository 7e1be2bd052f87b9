package meta

import (
	"fmt"
	"iter"

	"tandem/internal/blockdev"
	"tandem/internal/metapage"
)

// Bitmap is a Meta's dirty bitmap: one bit per region of data, set where
// the peer may miss what this replica holds. Changes are made in memory;
// Flush makes them durable. A bit set for a write inside an extent that
// Begin put in the activity log is safe before Flush (a crash marks the
// whole extent dirty again, and the extent leaves the log only after its
// bits are written); a bit set elsewhere is durable only after Flush. A
// cleared bit may be lost in a crash: more resync, never less.
type Bitmap struct{ m *Meta }

// Bitmap returns the dirty bitmap.
func (m *Meta) Bitmap() Bitmap { return Bitmap{m} }

// RegionSize is the bytes of data per bit.
func (b Bitmap) RegionSize() int64 { return b.m.lay.RegionSize }

// Regions is the number of bits; the last region may be shorter.
func (b Bitmap) Regions() int64 { return b.m.lay.bits() }

// span returns the regions a byte range touches, checking the range.
func (b Bitmap) span(off, n int64) (r0, r1 int64, err error) {
	size := b.m.lay.DataSize
	if off < 0 || n < 0 || off > size || n > size-off {
		return 0, 0, fmt.Errorf("volume meta: %s: bitmap range %d+%d past the data (%d bytes): %w", b.m.name, off, n, size, blockdev.ErrOutOfRange)
	}
	if n == 0 {
		return 0, 0, nil
	}
	r := b.m.lay.RegionSize
	return off / r, ceilDiv(off+n, r), nil
}

// Set marks every region that [off, off+n) touches dirty.
func (b Bitmap) Set(off, n int64) error {
	r0, r1, err := b.span(off, n)
	if err != nil {
		return err
	}
	b.m.bmMu.Lock()
	b.m.bm.set(r0, r1)
	b.m.bmMu.Unlock()
	return nil
}

// Clear marks the regions wholly inside [off, off+n) clean (the last,
// shorter region counts as whole when the range reaches the data's end): a
// region only partly synced stays dirty.
func (b Bitmap) Clear(off, n int64) error {
	if _, _, err := b.span(off, n); err != nil || n == 0 {
		return err
	}
	r := b.m.lay.RegionSize
	r0, r1 := ceilDiv(off, r), (off+n)/r
	if off+n == b.m.lay.DataSize {
		r1 = b.m.lay.bits()
	}
	b.m.bmMu.Lock()
	b.m.bm.unset(r0, r1)
	b.m.bmMu.Unlock()
	return nil
}

// Test reports whether a region that [off, off+n) touches is dirty; what
// lies past the data is clean.
func (b Bitmap) Test(off, n int64) bool {
	off, n = max(off, 0), min(off+n, b.m.lay.DataSize)-max(off, 0)
	r0, r1, err := b.span(off, n)
	if err != nil || n <= 0 {
		return false
	}
	b.m.bmMu.Lock()
	defer b.m.bmMu.Unlock()
	return b.m.bm.any(r0, r1)
}

// DirtyRegions counts the dirty bits.
func (b Bitmap) DirtyRegions() int64 {
	b.m.bmMu.Lock()
	defer b.m.bmMu.Unlock()
	return b.m.bm.count()
}

// DirtyBytes is the data a resync of every dirty region moves.
func (b Bitmap) DirtyBytes() int64 {
	b.m.bmMu.Lock()
	defer b.m.bmMu.Unlock()
	n := b.m.bm.count() * b.m.lay.RegionSize
	if last := b.m.bm.nbits - 1; b.m.bm.has(last) {
		n -= b.m.bm.nbits*b.m.lay.RegionSize - b.m.lay.DataSize
	}
	return n
}

// Next returns the first run of consecutive dirty regions at or after the
// region holding from, as a byte range within the data; ok is false when
// none is left.
func (b Bitmap) Next(from int64) (off, n int64, ok bool) {
	if from >= b.m.lay.DataSize {
		return 0, 0, false
	}
	from = max(from, 0)
	r := b.m.lay.RegionSize
	b.m.bmMu.Lock()
	defer b.m.bmMu.Unlock()
	first := b.m.bm.next(from / r)
	if first >= b.m.bm.nbits {
		return 0, 0, false
	}
	end := b.m.bm.nextClean(first)
	return first * r, min(end*r, b.m.lay.DataSize) - first*r, true
}

// Ranges yields the runs of dirty regions in order, as Next finds them
// one after the other (changes made meanwhile may or may not be seen).
func (b Bitmap) Ranges() iter.Seq2[int64, int64] {
	return func(yield func(int64, int64) bool) {
		for at := int64(0); ; {
			off, n, ok := b.Next(at)
			if !ok || !yield(off, n) {
				return
			}
			at = off + n
		}
	}
}

// Bytes returns the bits, one per region, least significant bit first:
// what the peer needs to merge this replica's view into its own.
func (b Bitmap) Bytes() []byte {
	b.m.bmMu.Lock()
	defer b.m.bmMu.Unlock()
	return b.m.bm.bytes()
}

// Merge marks dirty every region set in bits (as Bytes returns them).
func (b Bitmap) Merge(bits []byte) error {
	if want := (b.m.bm.nbits + 7) / 8; int64(len(bits)) != want {
		return fmt.Errorf("volume meta: %s: a bitmap of %d bytes, this volume's has %d", b.m.name, len(bits), want)
	}
	b.m.bmMu.Lock()
	defer b.m.bmMu.Unlock()
	for i, c := range bits {
		for j := range int64(8) {
			if r := int64(i)*8 + j; c&(1<<j) != 0 && r < b.m.bm.nbits {
				b.m.bm.set(r, r+1)
			}
		}
	}
	return nil
}

// Flush writes every changed bitmap page and syncs. Cleared bits reach the
// disk only after the data written so far is durable, so a crash never
// leaves a region clean whose data the peer has and this replica lost.
func (b Bitmap) Flush() error {
	if b.m.closed.Load() {
		return fmt.Errorf("volume meta: %s: %w", b.m.name, ErrClosed)
	}
	b.m.bmMu.Lock()
	defer b.m.bmMu.Unlock()
	return b.m.writePagesLocked(b.m.bm.dirtyPages())
}

func (bm *bitmap) dirtyPages() []int64 {
	var out []int64
	for p, d := range bm.dirty {
		if d {
			out = append(out, int64(p))
		}
	}
	return out
}

// writePagesLocked writes bitmap pages durably, each to the copy that does
// not hold its newest version. The caller holds bmMu.
func (m *Meta) writePagesLocked(pages []int64) error {
	if len(pages) == 0 {
		return nil
	}
	for _, p := range pages {
		if m.bm.cleared[p] {
			if err := m.dataDurable(m.writes.Load()); err != nil {
				return fmt.Errorf("volume meta: %s: flush data before clearing bits: %w", m.name, err)
			}
			break
		}
	}
	buf := blockdev.AlignedBuffer(pageSize)
	for _, p := range pages {
		seq := m.bm.pageSeq[p] + 1
		metapage.Encode(buf, m.id, bitmapKind, uint32(p), seq, m.bm.payload(p))
		if _, err := m.mdev.WriteAt(buf, m.metaOff+m.lay.bitmapOff(p, metapage.Slot(seq))); err != nil {
			return fmt.Errorf("volume meta: %s: write bitmap page %d: %w", m.name, p, err)
		}
	}
	if err := m.syncMeta(); err != nil {
		return fmt.Errorf("volume meta: %s: sync bitmap: %w", m.name, err)
	}
	for _, p := range pages {
		m.bm.pageSeq[p]++
		m.bm.dirty[p], m.bm.cleared[p] = false, false
	}
	return nil
}
