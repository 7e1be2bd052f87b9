package replication

import (
	"fmt"
	"slices"
	"time"
)

// resync is a resync in progress, on either side.
//
// The source reads runs of dirty regions (chunks of at most
// Config.ResyncChunk) and sends them; the target writes them without FUA.
// A region's bit is cleared on the source once a flush of both replicas
// issued after its read completed and its data was sent has completed
// (the peer's flush follows the data on the link, and a flush on the
// target waits for every write received before it): before that the
// target may hold it only in its cache, and the source may have read it
// from its own (crashing, it would lose data the target holds, and the
// region must stay dirty; found by the model). The target clears a bit
// once a local flush begun after its region's write completed has
// completed. So a bit is never cleared, on either side, for data not
// durable on the target, and a crash of either between the write and the
// flush leaves the region dirty, to be sent again.
type resync struct {
	source   bool
	next     GenIDs // source: the ids to record once the target adopted the sync id
	full     bool
	total    int64 // bytes to move, at the start
	moved    int64
	cursor   int
	inflight map[int]bool // source: regions read or sent, their bits not yet cleared
	// redirty: source: regions marked dirty again while in flight; their
	// bit stays when the flush comes, and they are sent again.
	redirty map[int]bool
	// sentAt: source: the tick each region's read completed and its data
	// was sent; cleared once min(localFlushed, peerFlushed) passes it.
	sentAt map[int]uint64
	// unflushed: source: bytes sent since the last flush the resync issued.
	unflushed int64
	// clearedTo: source: the flush tick up to which sentAt was swept.
	clearedTo uint64
	// written: target: the tick each region's write completed, not yet
	// covered by a completed flush.
	written map[int]uint64
}

// startSource begins a resync as the sync source: the whole volume if
// full, else the dirty regions; the target answers with its own, and the
// union moves.
func (m *Machine) startSource(full bool) {
	if full {
		m.dirty.SetAll()
		m.emit(SetBits{Ranges: []RegionRange{{First: 0, N: m.dirty.Len()}}})
	}
	// The source records the sync id only once the target has (its
	// BitmapAck): cut off before, the target may or may not hold it, and
	// ids it never adopted would hide this side's later writes from the
	// decision table (the model found a split brain that way).
	next := m.meta.GenIDs.StartSyncSource(m.cfg.NewGenID(), m.peerHello.GenIDs.Current)
	m.sync = syncSourceBitmap
	m.rs = &resync{source: true, full: full, next: next, inflight: map[int]bool{}, redirty: map[int]bool{},
		sentAt: map[int]uint64{}}
	m.sendBitmap(Frame{Kind: FrameBitmap, SyncID: next.Bitmap, Full: full})
}

// sendBitmap sends the dirty bitmap in chunks of f's kind.
func (m *Machine) sendBitmap(f Frame) {
	n := m.dirty.WordCount()
	for from := 0; from < n || from == 0; from += BitmapChunkWords {
		c := f
		c.BitsFrom, c.Bits, c.More = from, m.dirty.Words(from, BitmapChunkWords), from+BitmapChunkWords < n
		m.send(c)
	}
}

// takeBitmap adds a bitmap chunk to the dirty bitmap; false (the link
// dropped) if it does not fit the state or the volume.
func (m *Machine) takeBitmap(f Frame, want syncState) bool {
	if m.sync != want {
		m.refuse(m.now, fmt.Sprintf("%v out of place", f.Kind), true)
		return false
	}
	fresh, ok := m.dirty.Or(f.BitsFrom, f.Bits)
	if !ok {
		m.refuse(m.now, fmt.Sprintf("%v: words [%d, %d) outside the bitmap", f.Kind, f.BitsFrom, f.BitsFrom+len(f.Bits)), true)
		return false
	}
	if len(fresh) > 0 {
		m.emit(SetBits{Ranges: fresh})
	}
	return true
}

// targetBitmap: a chunk of the source's bitmap. Once it has all of them
// the target has the union, records itself Inconsistent under the sync
// id, and answers with the union.
func (m *Machine) targetBitmap(f Frame) {
	if !m.takeBitmap(f, syncTargetBitmap) || f.More {
		return
	}
	m.meta.GenIDs = m.meta.GenIDs.StartSyncTarget(f.SyncID, m.meta.Disk != Inconsistent)
	m.disk, m.meta.Disk = Inconsistent, Inconsistent
	m.crashedPrimary, m.meta.Primary = false, m.activeLog()
	m.persist()
	m.sync = syncTarget
	m.rs = &resync{full: f.Full, total: int64(m.dirty.Count()) * m.cfg.RegionSize, written: map[int]uint64{}}
	m.sendBitmap(Frame{Kind: FrameBitmapAck})
	m.event(Event{Kind: EventResyncStarted, Bytes: m.rs.total, Full: f.Full, Reason: "sync target"})
}

// sourceBitmapAck: a chunk of the target's union; after the last the
// target is Inconsistent and regions start moving.
func (m *Machine) sourceBitmapAck(f Frame) {
	if !m.takeBitmap(f, syncSourceBitmap) || f.More {
		return
	}
	m.meta.GenIDs = m.rs.next
	m.crashedPrimary = false
	m.meta.Primary = m.activeLog()
	m.persist()
	m.sync = syncSource
	m.peerDisk = Inconsistent
	m.peerFenced = true
	m.rs.total = int64(m.dirty.Count()) * m.cfg.RegionSize
	m.event(Event{Kind: EventResyncStarted, Bytes: m.rs.total, Full: m.rs.full, Reason: "sync source"})
}

// pumpResync clears what flushes made durable, starts chunk reads within
// the window and the rate limit, asks for a flush of both replicas every
// quarter window sent (or when nothing more is being read), and ends the
// resync when nothing is left.
func (m *Machine) pumpResync(now time.Time) {
	if m.sync != syncSource || m.rs == nil {
		return
	}
	rs := m.rs
	m.resyncFlushed()
	for len(rs.inflight) < m.cfg.ResyncWindow {
		r := m.nextDirty(rs.cursor, rs.inflight)
		if r < 0 {
			break
		}
		n := 1
		for limit := min(m.cfg.chunkRegions(), m.cfg.ResyncWindow-len(rs.inflight), m.burstRegions()); n < limit &&
			r+n < m.dirty.Len() && m.dirty.Has(r+n) && !rs.inflight[r+n]; n++ {
		}
		off, end := m.regionSpan(r, n)
		if !m.spend(now, end-off) {
			break
		}
		for k := r; k < r+n; k++ {
			rs.inflight[k] = true
		}
		rs.cursor = r + n
		m.enqueue(&item{kind: itResyncRead, off: off, end: end, region: r, session: m.session})
	}
	reading := len(rs.inflight) - len(rs.sentAt)
	quarter := int64(m.cfg.ResyncWindow) * m.cfg.RegionSize / 4
	if rs.unflushed > 0 && m.flushing == nil && (rs.unflushed >= quarter || reading == 0) {
		m.flushInternal()
		rs.unflushed = 0
	}
	if len(rs.inflight) == 0 && m.dirty.Count() == 0 {
		// The source records the end first: while its Bitmap id is set
		// the peer never holds its Current, so a promotion or a lost peer
		// that keeps the ids (NewCurrent) hides no write. The target,
		// Inconsistent until it records the end too, is found again by
		// resync-end-on-self-only if they part in between.
		m.meta.GenIDs = m.meta.GenIDs.FinishSyncSource()
		m.persist()
		m.sync = syncSourceDone
		m.peerFenced = false // the target may be UpToDate from now on
		m.send(Frame{Kind: FrameResyncDone, GenIDs: m.meta.GenIDs, Disk: m.disk})
	}
}

// nextDirty is the first dirty region at or after from (wrapping) that is
// not in flight, or -1.
func (m *Machine) nextDirty(from int, inflight map[int]bool) int {
	for _, start := range [2]int{from, 0} {
		for r := m.dirty.Next(start); r >= 0; r = m.dirty.Next(r + 1) {
			if !inflight[r] {
				return r
			}
		}
	}
	return -1
}

func (m *Machine) resyncReadDone(x *item, c Completion) {
	if c.Err != nil {
		m.detach(fmt.Sprintf("resync read of regions from %d: %v", x.region, c.Err))
		return
	}
	if m.rs == nil || x.session != m.session || !m.linkUp {
		return
	}
	for _, r := range m.regions(x.off, x.end-x.off) {
		m.rs.sentAt[r] = m.tick
	}
	m.rs.unflushed += x.end - x.off
	m.send(Frame{Kind: FrameResyncData, Region: x.region, Data: c.Data})
}

// resyncFlushed clears the bits of regions whose data a completed flush
// of both replicas covers; a region written again meanwhile keeps its bit
// and goes again.
func (m *Machine) resyncFlushed() {
	rs := m.rs
	durable := min(m.localFlushed, m.peerFlushed)
	if durable <= rs.clearedTo || len(rs.sentAt) == 0 {
		return
	}
	rs.clearedTo = durable
	var done []int
	for r, t := range rs.sentAt {
		if t < durable {
			done = append(done, r)
		}
	}
	slices.Sort(done)
	clear := done[:0]
	for _, r := range done {
		if rs.redirty[r] {
			delete(rs.redirty, r)
		} else {
			clear = append(clear, r)
			_, n := m.regionRange(r)
			rs.moved += n
		}
		delete(rs.inflight, r)
		delete(rs.sentAt, r)
	}
	m.clearBits(clear)
}

// targetWriteDone: regions are written here, not yet durable.
func (m *Machine) targetWriteDone(x *item, errText string) {
	if errText != "" || m.rs == nil || m.rs.source || x.session != m.session {
		return // a failed write detached the disk; the peer hears FrameDetached
	}
	for _, r := range m.regions(x.off, x.end-x.off) {
		m.rs.written[r] = m.tick
	}
}

// targetFlushed: a flush begun after some regions' writes completed has
// completed; their bits go.
func (m *Machine) targetFlushed(x *item) {
	rs := m.rs
	if rs == nil || rs.source || len(rs.written) == 0 {
		return
	}
	var done []int
	for r, t := range rs.written {
		if t < x.issued {
			done = append(done, r)
			delete(rs.written, r)
		}
	}
	slices.Sort(done)
	for _, r := range done {
		_, n := m.regionRange(r)
		rs.moved += n
	}
	m.clearBits(done)
}

// targetDone: every region moved; the target records the source's ids
// (which the source recorded already) and disk state, then answers.
func (m *Machine) targetDone(f Frame) {
	if m.sync != syncTarget {
		m.refuse(m.now, "resync done out of place", true)
		return
	}
	if rest := m.dirty.Ranges(); len(rest) > 0 {
		m.dirty.ClearAll()
		m.emit(ClearBits{Ranges: rest})
	}
	m.meta.GenIDs = f.GenIDs
	m.disk, m.meta.Disk = f.Disk, f.Disk
	m.persist()
	m.send(Frame{Kind: FrameResyncDoneAck})
	m.event(Event{Kind: EventResyncFinished, Bytes: m.rs.moved, Reason: "sync target"})
	m.sync, m.rs = syncNone, nil
}

func (m *Machine) sourceDoneAck() {
	if m.sync != syncSourceDone {
		return
	}
	m.peerDisk = m.disk
	m.peerFenced = m.peerDisk != UpToDate
	m.event(Event{Kind: EventResyncFinished, Bytes: m.rs.moved, Reason: "sync source"})
	m.sync, m.rs = syncNone, nil
}

// abortResync ends a resync or verify that cannot go on; the bitmap keeps
// what is left for the next connect.
func (m *Machine) abortResync(why string) {
	if m.rs != nil {
		m.event(Event{Kind: EventResyncFinished, Bytes: m.rs.moved, Reason: "interrupted: " + why})
		m.rs = nil
	}
	if m.vf != nil {
		m.event(Event{Kind: EventVerifyFinished, Bytes: m.vf.checked, SelfDirty: m.vf.bad, Reason: "interrupted: " + why})
		m.vf = nil
	}
	if m.sync != syncNone && m.linkUp {
		m.sync = syncNone
		m.refuse(m.now, why, true)
	}
	m.sync = syncNone
	q := m.queue[:0]
	for _, x := range m.queue {
		if x.kind != itResyncRead && x.kind != itVerifyRead {
			q = append(q, x)
		}
	}
	m.queue = q
}

// SetRate changes the resync and verify rate limit (bytes/s, 0 none).
func (m *Machine) SetRate(now time.Time, bytesPerSecond int64) {
	if bytesPerSecond >= 0 {
		m.cfg.ResyncRate = bytesPerSecond
	}
	m.step(now)
}

// burst is the rate limiter's largest allowance in bytes: a tenth of a
// second at the rate, within one chunk, and at least one region.
func (m *Machine) burst() float64 {
	return float64(max(m.cfg.RegionSize, min(m.cfg.ResyncRate/10, int64(m.cfg.chunkRegions())*m.cfg.RegionSize)))
}

// burstRegions is how many regions one read may take under the rate limit.
func (m *Machine) burstRegions() int {
	if m.cfg.ResyncRate <= 0 {
		return m.cfg.chunkRegions()
	}
	return int(m.burst()) / int(m.cfg.RegionSize)
}

// spend takes n bytes from the rate limiter's allowance.
func (m *Machine) spend(now time.Time, n int64) bool {
	rate := m.cfg.ResyncRate
	if rate <= 0 {
		return true
	}
	burst := m.burst()
	if !m.tokensAt.IsZero() {
		m.tokens += float64(rate) * now.Sub(m.tokensAt).Seconds()
	} else {
		m.tokens = burst
	}
	m.tokens = min(m.tokens, burst)
	m.tokensAt = now
	if m.tokens < float64(n) {
		return false
	}
	m.tokens -= float64(n)
	return true
}

// rateWait: when the limiter will allow the next region, if a resync or
// verify is waiting for it.
func (m *Machine) rateWait() (time.Time, bool) {
	if m.cfg.ResyncRate <= 0 || m.tokensAt.IsZero() || (m.sync != syncSource && m.vf == nil) {
		return time.Time{}, false
	}
	need := m.burst() - m.tokens // a whole chunk: reads do not shrink to what trickled in
	if need <= 0 {
		return m.tokensAt, true
	}
	return m.tokensAt.Add(time.Duration(need / float64(m.cfg.ResyncRate) * float64(time.Second))), true
}
