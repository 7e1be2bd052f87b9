package raid

import "sync"

// writeBehind is the array's write cache, the userspace counterpart of the
// page cache above md: WriteAt queues a copy of the data and returns, and a
// few flushers write the queue, merging writes that continue each other
// into larger member I/O. An entry is written only when no earlier entry
// overlaps it, so overlapping writes land in the order they were made while
// independent ones (several writers) go out in parallel. Reads that overlap
// queued data wait for it, Flush drains the queue, and the Device contract
// holds: a write that returned is visible to reads, and durable once Flush
// returns. An error of a queued write is returned by the next WriteAt, and
// by the next Flush whether or not a WriteAt returned it already.
//
// The tail of the queue, which the next sequential write would extend, is
// held back while it is smaller than an entry's target size and another
// entry is being written: the disk is busy anyway, so waiting costs nothing
// and the member writes come out large (about 2 MiB each). When the disk
// would otherwise go idle, or someone waits for the data, it goes out as it
// is. Only one goroutine is woken per event (a flusher for new work, waiters
// when an entry is done): waking everybody on every write cost more
// scheduling delay than the copy itself on two busy cores.
type writeBehind struct {
	a      *Array
	mu     sync.Mutex
	work   *sync.Cond // flushers wait here for an entry they may take
	space  *sync.Cond // writers, drain and waitFor wait here for entries to finish
	queue  []*wbEntry // in arrival order
	bytes  int64
	limit  int64
	target int64 // entry size: about wbMemberIO per data member, whole stripes
	busy   int   // entries being written
	urgent int   // drain / waitFor calls waiting: the tail goes out as it is
	err    error
	// flushErr is the first error of a queued write since the last Flush.
	// It is kept apart from err, which the next WriteAt takes: whoever
	// takes err, the next Flush still fails, so a client never sees a
	// FLUSH succeed over a write it was told had landed.
	flushErr error
	// stopped: no new writes; flushers leave once the queue is empty.
	stopped bool
	running int
	done    chan struct{}
}

type wbEntry struct {
	off  int64
	data []byte // aligned; grows in place while merging, up to max
	max  int
	// sums are the checksums of data's blocks, computed as the data is
	// copied in (hot in the cache); nil when a write was not block aligned.
	sums    []uint32
	filling int  // writers still copying into their reserved part
	taken   bool // a flusher is writing it
}

// wbFlushers is how many entries may be written at once. With the default
// 32 MiB queue and entries of about 8 MiB that is every full entry.
const wbFlushers = 4

// wbMemberIO is the member write size entries aim at. On the virtual disk
// measured (see docs/raid.md), whose host serializes writes to the image,
// every request costs a turn: at 2 MiB per member sequential RAID 0 writes
// went from 0.68 to 0.97 of raw and RAID 5 from 0.60 to 0.82 (median of 6
// alternating rounds); 4 MiB was no better and less even.
const wbMemberIO = 2 << 20

func newWriteBehind(a *Array, limit int64) *writeBehind {
	w := &writeBehind{a: a, limit: limit, target: wbTarget(a.geo, limit), done: make(chan struct{})}
	w.work = sync.NewCond(&w.mu)
	w.space = sync.NewCond(&w.mu)
	w.running = wbFlushers
	for i := 0; i < wbFlushers; i++ {
		go w.flusher()
	}
	return w
}

// wbTarget is the entry size aimed at: whole stripes, about wbMemberIO per
// data member, at most a quarter of the queue so several entries fit.
func wbTarget(g Geometry, limit int64) int64 {
	stripe := g.StripeBytes()
	target := max(stripe, wbMemberIO*int64(g.DataChunks())/stripe*stripe)
	return min(target, max(limit/4, stripe))
}

// write queues p at off. It returns false when p is too large to queue
// (the caller then drains and writes it synchronously).
func (w *writeBehind) write(p []byte, off int64) (bool, error) {
	if int64(len(p)) > w.limit/2 {
		return false, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.bytes+int64(len(p)) > w.limit && w.err == nil && !w.stopped {
		w.space.Wait()
	}
	if err := w.err; err != nil {
		w.err = nil
		return true, err
	}
	if w.stopped {
		return true, ErrClosed
	}
	w.bytes += int64(len(p))
	aligned := w.a.checksums && off%BlockSize == 0 && len(p)%BlockSize == 0
	// p may be split over the tail and a new entry, at a stripe boundary,
	// so entries stay whole stripes (a partial stripe is a read-modify-write).
	for len(p) > 0 {
		e := w.tailFor(off)
		if e == nil {
			e = w.newEntry(off, len(p), aligned)
		}
		n := min(len(p), e.max-len(e.data))
		at := len(e.data)
		e.data = e.data[:at+n]
		var sums []uint32
		if e.sums != nil && aligned {
			sums = e.sums[len(e.sums) : len(e.sums)+n/BlockSize]
			e.sums = e.sums[:len(e.sums)+n/BlockSize]
		} else {
			e.sums = nil
		}
		// Copy outside the lock, into the reserved part, so flushers can
		// finish meanwhile; the entry is not taken until every copy is in.
		e.filling++
		w.mu.Unlock()
		copyAndSum(e.data[at:], p[:n], sums)
		w.mu.Lock()
		e.filling--
		if e.filling == 0 && w.eligibleLocked(e) {
			w.work.Signal()
		}
		p, off = p[n:], off+int64(n)
	}
	return true, nil
}

// tailFor returns the queue's tail if a write at off continues it and it
// has room.
func (w *writeBehind) tailFor(off int64) *wbEntry {
	if n := len(w.queue); n > 0 {
		if t := w.queue[n-1]; !t.taken && t.off+int64(len(t.data)) == off && len(t.data) < t.max {
			return t
		}
	}
	return nil
}

// newEntry starts a new tail at off. It ends on a stripe boundary if it
// can; one larger than the target takes a whole write of n bytes.
func (w *writeBehind) newEntry(off int64, n int, aligned bool) *wbEntry {
	size := wbEntrySize(w.a.geo.StripeBytes(), w.target, off, int64(n))
	e := &wbEntry{off: off, data: alignedBuf(int(size))[:0], max: int(size)}
	if aligned {
		e.sums = make([]uint32, 0, size/BlockSize)
	}
	if prev := len(w.queue) - 1; prev >= 0 {
		// The old tail can no longer grow: it may go out now.
		if t := w.queue[prev]; w.eligibleLocked(t) {
			w.work.Signal()
		}
	}
	w.queue = append(w.queue, e)
	return e
}

// wbEntrySize is the room of an entry starting at off for a write of n
// bytes: about target, ending on a stripe boundary, and at least n.
func wbEntrySize(stripe, target, off, n int64) int64 {
	size := target
	if end := (off + size) / stripe * stripe; end > off {
		size = end - off
	}
	return max(size, n)
}

// eligibleLocked reports whether a flusher may take e now, leaving aside
// overlaps with earlier entries (nextLocked checks those).
func (w *writeBehind) eligibleLocked(e *wbEntry) bool {
	if e.taken || e.filling > 0 {
		return false
	}
	tail := w.queue[len(w.queue)-1] == e
	return !tail || len(e.data) >= e.max || int64(len(e.data)) >= w.target || w.busy == 0 || w.urgent > 0 || w.stopped
}

// copyAndSum copies src to dst and, with sums not nil, checksums each
// block. The checksums are taken from src, which the caller has usually
// just written (in the cache), and the copy is one large memmove, which
// the runtime does with non-temporal stores from 1 MiB up: the queue's
// buffer is not read into the cache only to be overwritten. On the VM
// measured this halved the copy's memory traffic, and the member writes,
// which compete with it for the host, went faster.
func copyAndSum(dst, src []byte, sums []uint32) {
	for b := 0; b < len(sums); b++ {
		sums[b] = blockCRC(src[b*BlockSize : (b+1)*BlockSize])
	}
	copy(dst, src)
}

func (w *writeBehind) flusher() {
	w.mu.Lock()
	defer func() {
		w.running--
		if w.running == 0 {
			close(w.done)
		}
		w.mu.Unlock()
	}()
	for {
		e := w.nextLocked()
		for e == nil {
			if w.stopped && len(w.queue) == 0 {
				return
			}
			w.work.Wait()
			e = w.nextLocked()
		}
		e.taken = true
		w.busy++
		if w.nextLocked() != nil {
			w.work.Signal() // more work: pass it on
		}
		w.mu.Unlock()
		_, err := w.a.writeSync(e.data, e.off, e.sums)
		w.mu.Lock()
		w.busy--
		for i, x := range w.queue {
			if x == e {
				w.queue = append(w.queue[:i], w.queue[i+1:]...)
				break
			}
		}
		w.bytes -= int64(len(e.data))
		if err != nil && w.err == nil {
			w.err = err
		}
		if err != nil && w.flushErr == nil {
			w.flushErr = err
		}
		w.space.Broadcast()
		freeBuf(e.data[:cap(e.data)])
	}
}

// nextLocked returns the first eligible entry that no earlier entry
// overlaps.
func (w *writeBehind) nextLocked() *wbEntry {
	for i, e := range w.queue {
		if !w.eligibleLocked(e) {
			continue
		}
		free := true
		for _, x := range w.queue[:i] {
			free = free && !(x.off < e.off+int64(len(e.data)) && e.off < x.off+int64(len(x.data)))
		}
		if free {
			return e
		}
	}
	return nil
}

// waitFor blocks until no queued write overlaps [off, off+n).
func (w *writeBehind) waitFor(off, n int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.urgent++
	defer func() { w.urgent-- }()
	for {
		overlap := false
		for _, e := range w.queue {
			overlap = overlap || e.off < off+n && off < e.off+int64(len(e.data))
		}
		if !overlap {
			return
		}
		w.work.Signal()
		w.space.Wait()
	}
}

// drainForFlush waits until the queue is empty and returns the first
// error of a queued write since the last Flush, even one a WriteAt has
// already returned.
func (w *writeBehind) drainForFlush() error {
	w.drain() // its error is in flushErr too
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.flushErr
	w.flushErr = nil
	return err
}

// drain waits until the queue is empty and returns a pending error (the
// one the next WriteAt would have taken).
func (w *writeBehind) drain() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.urgent++
	defer func() { w.urgent-- }()
	for len(w.queue) > 0 {
		w.work.Signal()
		w.space.Wait()
	}
	err := w.err
	w.err = nil
	return err
}

func (w *writeBehind) stop() {
	w.mu.Lock()
	w.stopped = true
	w.work.Broadcast()
	w.space.Broadcast()
	w.mu.Unlock()
	<-w.done
}
