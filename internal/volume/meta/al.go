package meta

import (
	"container/list"
	"errors"
	"fmt"
	"slices"

	"tandem/internal/blockdev"
)

// activityLog is the set of hot extents in memory: those the newest durable
// transaction lists. Writes may go to a hot extent at once; a cold one
// enters the log (one durable transaction, evicting the least recently
// used idle extent when full) before its write proceeds. After a crash the
// extents of the newest transaction are the only ones whose data may
// differ from the peer's beyond what the bitmap says.
type activityLog struct {
	hot     map[uint32]*alEntry
	idle    *list.List // hot extents with no write in flight, least recently used first
	seq     uint64     // newest durable transaction
	pending []uint32   // extents a crash left hot, until Recover
	buf     []byte
}

type alEntry struct {
	ext       uint32
	refs      int           // writes in flight
	lastWrite uint64        // Meta.writes at its last End
	elem      *list.Element // in idle while refs == 0
}

func (a *activityLog) needRecover() bool { return a.pending != nil }

// ActivityLog is a Meta's activity log of hot extents.
type ActivityLog struct{ m *Meta }

// AL returns the activity log.
func (m *Meta) AL() ActivityLog { return ActivityLog{m} }

// ExtentSize is the bytes of data per extent.
func (a ActivityLog) ExtentSize() int64 { return a.m.lay.ExtentSize }

// Extents is how many extents the data has.
func (a ActivityLog) Extents() int64 { return a.m.lay.extents() }

// Capacity is how many extents the log holds at once.
func (a ActivityLog) Capacity() int { return int(a.m.lay.ALExtents) }

// Span returns the extents [first, end) a write of n bytes at off touches.
func (a ActivityLog) Span(off, n int64) (first, end int64) {
	e := a.m.lay.ExtentSize
	if n <= 0 {
		return off / e, off / e
	}
	return off / e, ceilDiv(off+n, e)
}

// Hot returns the extents in the log, ascending.
func (a ActivityLog) Hot() []int64 {
	a.m.alMu.Lock()
	defer a.m.alMu.Unlock()
	var out []int64
	for _, e := range sortedExtents(a.m.al.hot) {
		out = append(out, int64(e))
	}
	return out
}

// Begin announces a write to extent: it returns once the extent is in the
// durable log, and wrote says whether that took a transaction (the extent
// was cold). Every Begin is paired with an End once the write completed.
// When every logged extent has writes in flight it fails with ErrALFull
// (IsALFull): wait for an End and retry. A Begin of a hot extent does no
// I/O and does not wait for another Begin's transaction.
func (a ActivityLog) Begin(extent int64) (wrote bool, err error) {
	m := a.m
	if extent < 0 || extent >= m.lay.extents() {
		return false, fmt.Errorf("volume meta: %s: extent %d out of range (0 to %d): %w", m.name, extent, m.lay.extents()-1, blockdev.ErrOutOfRange)
	}
	x := uint32(extent)
	if hot, err := m.beginHot(x); hot || err != nil {
		return false, err
	}
	m.txMu.Lock()
	defer m.txMu.Unlock()
	// Only txMu's holder changes which extents are hot: what is decided
	// below stays true while the transaction is written.
	if hot, err := m.beginHot(x); hot || err != nil {
		return false, err
	}
	m.alMu.Lock()
	var victim *alEntry
	if int64(len(m.al.hot)) >= m.lay.ALExtents {
		front := m.al.idle.Front()
		if front == nil {
			m.alMu.Unlock()
			return false, fmt.Errorf("volume meta: %s: %w", m.name, ErrALFull)
		}
		// Out of the hot set now, so no write begins on it unlogged; it
		// stays in the durable log until the transaction lands.
		victim = front.Value.(*alEntry)
		m.al.idle.Remove(victim.elem)
		delete(m.al.hot, victim.ext)
	}
	next := append(sortedExtents(m.al.hot), x)
	m.alMu.Unlock()
	slices.Sort(next)
	if victim != nil {
		err = m.retire(victim)
	}
	if err == nil {
		err = m.writeTx(next)
	}
	m.alMu.Lock()
	defer m.alMu.Unlock()
	if err != nil {
		if victim != nil {
			victim.elem = m.al.idle.PushFront(victim)
			m.al.hot[victim.ext] = victim
		}
		return false, err
	}
	m.al.hot[x] = &alEntry{ext: x, refs: 1}
	return true, nil
}

// beginHot counts a write on extent x if it is hot.
func (m *Meta) beginHot(x uint32) (bool, error) {
	m.alMu.Lock()
	defer m.alMu.Unlock()
	switch {
	case m.closed.Load():
		return false, fmt.Errorf("volume meta: %s: %w", m.name, ErrClosed)
	case m.al.needRecover():
		return false, fmt.Errorf("volume meta: %s: %w", m.name, ErrNotRecovered)
	}
	e := m.al.hot[x]
	if e == nil {
		return false, nil
	}
	if e.elem != nil {
		m.al.idle.Remove(e.elem)
		e.elem = nil
	}
	e.refs++
	return true, nil
}

// BeginWrite puts every extent that a write of n bytes at off touches in
// the log (Begin for each, in order; on an error the ones already begun are
// ended again). wrote says whether any took a transaction.
func (a ActivityLog) BeginWrite(off, n int64) (wrote bool, err error) {
	first, end := a.Span(off, n)
	for e := first; e < end; e++ {
		w, err := a.Begin(e)
		if err != nil {
			for done := first; done < e; done++ {
				a.End(done)
			}
			return false, err
		}
		wrote = wrote || w
	}
	return wrote, nil
}

// EndWrite ends what BeginWrite(off, n) began.
func (a ActivityLog) EndWrite(off, n int64) error {
	first, end := a.Span(off, n)
	var errs []error
	for e := first; e < end; e++ {
		if err := a.End(e); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// End says a write to extent begun with Begin has completed.
func (a ActivityLog) End(extent int64) error {
	m := a.m
	m.alMu.Lock()
	defer m.alMu.Unlock()
	e := m.al.hot[uint32(extent)]
	if extent < 0 || extent >= m.lay.extents() || e == nil || e.refs == 0 {
		return fmt.Errorf("volume meta: %s: End of extent %d without a Begin", m.name, extent)
	}
	e.refs--
	e.lastWrite = m.writes.Load()
	if e.refs == 0 {
		e.elem = m.al.idle.PushBack(e)
	}
	return nil
}

// retire makes what the log protects of an extent durable elsewhere before
// a transaction drops it: its bits in the bitmap, and its data (the peer
// may hold writes this replica's cache would lose). The caller holds txMu.
func (m *Meta) retire(e *alEntry) error {
	r0, r1 := m.extentRegions(int64(e.ext))
	m.bmMu.Lock()
	var pages []int64
	for p := r0 / bitsPerPage; p <= (r1-1)/bitsPerPage; p++ {
		if m.bm.dirty[p] {
			pages = append(pages, p)
		}
	}
	err := m.writePagesLocked(pages)
	m.bmMu.Unlock()
	if err != nil {
		return err
	}
	if err := m.dataDurable(e.lastWrite); err != nil {
		return fmt.Errorf("volume meta: %s: flush data of extent %d before it leaves the activity log: %w", m.name, e.ext, err)
	}
	return nil
}

func (m *Meta) extentRegions(e int64) (r0, r1 int64) {
	per := m.lay.ExtentSize / m.lay.RegionSize
	return e * per, min((e+1)*per, m.bm.nbits)
}

// writeTx writes the next transaction, listing extents, and syncs. The
// caller holds txMu.
func (m *Meta) writeTx(extents []uint32) error {
	if m.al.buf == nil {
		m.al.buf = blockdev.AlignedBuffer(int(m.lay.ALSlotPages * pageSize))
	}
	seq := m.al.seq + 1
	tx := encodeTx(m.al.buf, m.id, seq, extents)
	slot := int64(seq % uint64(m.lay.ALSlots))
	if _, err := m.mdev.WriteAt(tx, m.metaOff+m.lay.alSlotOff(slot)); err != nil {
		return fmt.Errorf("volume meta: %s: write activity log: %w", m.name, err)
	}
	if err := m.syncMeta(); err != nil {
		return fmt.Errorf("volume meta: %s: sync activity log: %w", m.name, err)
	}
	m.al.seq = seq
	return nil
}

// Recover counts the regions of every extent the activity log named at
// Open as dirty, makes that durable, and clears the log. It returns those
// extents (none after a clean Close). It must run before the first Begin
// when Unclean; after a crash it may run again (it is idempotent).
func (a ActivityLog) Recover() ([]int64, error) {
	m := a.m
	m.txMu.Lock()
	defer m.txMu.Unlock()
	if !m.al.needRecover() { // changes only under txMu
		return nil, nil
	}
	m.bmMu.Lock()
	for _, e := range m.al.pending {
		m.bm.set(m.extentRegions(int64(e)))
	}
	err := m.writePagesLocked(m.bm.dirtyPages())
	m.bmMu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := m.writeTx(nil); err != nil {
		return nil, err
	}
	out := make([]int64, len(m.al.pending))
	for i, e := range m.al.pending {
		out[i] = int64(e)
	}
	m.log.Info("volume meta: activity log recovered", "device", m.name, "extents", len(out))
	m.alMu.Lock()
	m.al.pending = nil
	m.alMu.Unlock()
	return out, nil
}
