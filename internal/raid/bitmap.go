package raid

import (
	"sync"
	"time"

	"tandem/internal/blockdev"
)

// bitmap is the write-intent bitmap: one bit per StripesPerBit stripes,
// set on disk (and synced) before the first write to its region, cleared
// lazily once the region has been idle for BitmapDelay and a flush has made
// its writes durable on every member. After a crash only set regions are
// resynced; while a slot is missing no bit is cleared, so a member that
// comes back resyncs only what it missed.
type bitmap struct {
	mu        sync.Mutex
	bits      bitset  // as on disk (set bits are durable)
	inflight  []int32 // writes in progress per region
	lastWrite []time.Time
	pageSeq   []uint64
	nbits     int64
	spb       int64
}

var bitmapKind = [4]byte{'T', 'R', 'B', 'M'}

func newBitmap(nbits, spb, pages int64) *bitmap {
	return &bitmap{
		bits: newBitset(nbits), inflight: make([]int32, nbits), lastWrite: make([]time.Time, nbits),
		pageSeq: make([]uint64, pages), nbits: nbits, spb: spb,
	}
}

func (b *bitmap) regions(s0, s1 int64) (r0, r1 int64) { return s0 / b.spb, (s1-1)/b.spb + 1 }

// pagePayload encodes page p of the bits.
func (b *bitmap) pagePayload(p int64) []byte {
	out := make([]byte, pagePayload)
	for i := int64(0); i < bitsPerPage; i++ {
		if b.bits.has(p*bitsPerPage + i) {
			out[i/8] |= 1 << (i % 8)
		}
	}
	return out
}

// load ORs page p's payload into the bits (members may disagree after a
// crash; a bit set anywhere is set).
func (b *bitmap) load(p int64, payload []byte, seq uint64) {
	for i := int64(0); i < bitsPerPage && p*bitsPerPage+i < b.nbits; i++ {
		if payload[i/8]&(1<<(i%8)) != 0 {
			b.bits.set(p*bitsPerPage + i)
		}
	}
	b.pageSeq[p] = max(b.pageSeq[p], seq)
}

// readFrom loads the bitmap pages of every device in devs: the bits of a
// region set on any member are set.
func (b *bitmap) readFrom(devs []blockdev.Device, lay diskLayout, seed UUID) {
	buf := alignedBuf(int(2 * BlockSize * lay.BitmapPages))
	defer freeBuf(buf)
	for _, d := range devs {
		if _, err := d.ReadAt(buf, lay.BitmapOff); err != nil {
			continue
		}
		for p := int64(0); p < lay.BitmapPages; p++ {
			if seq, payload, ok := pickPage(buf[2*p*BlockSize:(2*p+1)*BlockSize], buf[(2*p+1)*BlockSize:(2*p+2)*BlockSize], seed, bitmapKind, uint32(p)); ok {
				b.load(p, payload, seq)
			}
		}
	}
}

// beginWrite makes the bits of [s0, s1) durable on every live member before
// the write goes ahead, and counts the write in flight.
func (a *Array) beginWrite(s0, s1 int64) {
	a.mu.RLock()
	ms := a.liveMembersLocked()
	a.mu.RUnlock()
	b := a.bm
	b.mu.Lock()
	r0, r1 := b.regions(s0, s1)
	var pages map[int64]bool // allocated only when a bit changes
	for r := r0; r < r1; r++ {
		b.inflight[r]++
		if !b.bits.has(r) {
			b.bits.set(r)
			if pages == nil {
				pages = map[int64]bool{}
			}
			pages[r/bitsPerPage] = true
		}
	}
	var errs []error
	if len(pages) > 0 {
		errs = a.writeBitmapPages(ms, pages, true)
	}
	b.mu.Unlock()
	for i, err := range errs {
		if err != nil {
			a.memberFailed(ms[i], err)
		}
	}
}

func (a *Array) endWrite(s0, s1 int64) {
	b := a.bm
	now := a.opts.Clock.Now()
	b.mu.Lock()
	r0, r1 := b.regions(s0, s1)
	for r := r0; r < r1; r++ {
		b.inflight[r]--
		b.lastWrite[r] = now
	}
	b.mu.Unlock()
}

// writeBitmapPages writes the given pages (all when nil) to ms, syncing
// when sync is set. The caller holds b.mu. Errors are per member.
func (a *Array) writeBitmapPages(ms []*member, pages map[int64]bool, sync bool) []error {
	b := a.bm
	var list []int64
	for p := int64(0); p < int64(len(b.pageSeq)); p++ {
		if pages == nil || pages[p] {
			list = append(list, p)
			b.pageSeq[p]++
		}
	}
	payloads := make([][]byte, len(list))
	for i, p := range list {
		payloads[i] = b.pagePayload(p)
	}
	return parallel(len(ms), func(i int) error {
		m := ms[i]
		for j, p := range list {
			if err := writeMetaPage(m, a.uuid, a.lay.BitmapOff, bitmapKind, p, b.pageSeq[p], payloads[j]); err != nil {
				return err
			}
		}
		if sync {
			if err := m.dev.Flush(); err != nil {
				return m.errorf("flush: %w", err)
			}
		}
		return nil
	})
}

// writeBitmapLocked writes the whole bitmap to ms (all live members when
// nil), unsynced; the caller holds a.mu.
func (a *Array) writeBitmapLocked(ms []*member) {
	if ms == nil {
		ms = a.liveMembersLocked()
	}
	a.bm.mu.Lock()
	a.writeBitmapPages(ms, nil, false)
	a.bm.mu.Unlock()
}

// clearIdleBits clears the bits of regions that have been idle since before
// flushStart (so their writes are durable everywhere) and for BitmapDelay,
// unless the array is degraded or the region awaits resync.
func (a *Array) clearIdleBits(flushStart time.Time, ignoreDelay bool) {
	a.mu.RLock()
	degraded := a.degradedLocked()
	ms := a.liveMembersLocked()
	a.mu.RUnlock()
	if degraded {
		return
	}
	now := a.opts.Clock.Now()
	b := a.bm
	b.mu.Lock()
	pages := map[int64]bool{}
	for r := int64(0); r < b.nbits; r++ {
		if !b.bits.has(r) || b.inflight[r] > 0 || !b.lastWrite[r].Before(flushStart) && !b.lastWrite[r].IsZero() ||
			!ignoreDelay && now.Sub(b.lastWrite[r]) < a.opts.BitmapDelay && !b.lastWrite[r].IsZero() || a.regionPending(r) {
			continue
		}
		b.bits.unset(r)
		pages[r/bitsPerPage] = true
	}
	var errs []error
	if len(pages) > 0 {
		errs = a.writeBitmapPages(ms, pages, false)
	}
	b.mu.Unlock()
	for i, err := range errs {
		if err != nil {
			a.memberFailed(ms[i], err)
		}
	}
}

func (a *Array) regionPending(r int64) bool {
	rs := a.resync.Load()
	return rs != nil && rs.has(r)
}

// DirtyRegions reports how many bitmap regions are set.
func (a *Array) DirtyRegions() int64 {
	a.bm.mu.Lock()
	defer a.bm.mu.Unlock()
	return a.bm.bits.count()
}
