package replication

import (
	"fmt"
	"slices"
	"time"
)

// resync is a resync in progress, on either side.
type resync struct {
	source   bool
	next     GenIDs // source: the ids to record once the target adopted the sync id
	full     bool
	total    int64 // bytes to move, at the start
	moved    int64
	cursor   int
	inflight map[int]bool // source: regions read or sent, not yet acknowledged
	// redirty: source: regions marked dirty again while in flight; their
	// bit stays when the acknowledgement comes.
	redirty map[int]bool
	// readAt: source: the tick each region's read completed; awaiting:
	// regions the target acknowledged, whose bit is cleared only once a
	// local flush issued after their read completed has completed (a
	// source that crashed could otherwise lose, from its cache, data the
	// target already holds durably, and nothing would resync it).
	readAt   map[int]uint64
	awaiting map[int]bool
	// tokens is the rate limiter's allowance in bytes (shared with verify).
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
		readAt: map[int]uint64{}, awaiting: map[int]bool{}}
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
	m.rs = &resync{full: f.Full, total: int64(m.dirty.Count()) * m.cfg.RegionSize}
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

// pumpResync starts region reads within the window and the rate limit,
// and ends the resync when nothing is left.
func (m *Machine) pumpResync(now time.Time) {
	if m.sync != syncSource || m.rs == nil {
		return
	}
	rs := m.rs
	m.resyncFlushed()
	for len(rs.inflight)-len(rs.awaiting) < m.cfg.ResyncWindow {
		r := m.nextDirty(rs.cursor, rs.inflight)
		if r < 0 {
			break
		}
		off, n := m.regionRange(r)
		if !m.spend(now, n) {
			break
		}
		rs.inflight[r] = true
		rs.cursor = r + 1
		m.enqueue(&item{kind: itResyncRead, off: off, end: off + n, region: r, session: m.session})
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
		m.detach(fmt.Sprintf("resync read of region %d: %v", x.region, c.Err))
		return
	}
	if m.rs == nil || x.session != m.session || !m.linkUp {
		return
	}
	m.rs.readAt[x.region] = m.tick
	m.send(Frame{Kind: FrameResyncData, Region: x.region, Data: c.Data})
}

// resyncFlushed clears the bits of acknowledged regions whose data is
// durable here, and asks for a flush while some wait for one.
func (m *Machine) resyncFlushed() {
	rs := m.rs
	if len(rs.awaiting) == 0 {
		return
	}
	regions := make([]int, 0, len(rs.awaiting))
	for r := range rs.awaiting {
		regions = append(regions, r)
	}
	slices.Sort(regions)
	for _, r := range regions {
		switch {
		case rs.redirty[r]:
			delete(rs.redirty, r)
		case rs.readAt[r] < m.localFlushed:
			m.clearBit(r)
			_, n := m.regionRange(r)
			rs.moved += n
		default:
			continue
		}
		delete(rs.awaiting, r)
		delete(rs.inflight, r)
		delete(rs.readAt, r)
	}
	if len(rs.awaiting) > 0 {
		m.flushInternal()
	}
}

// targetWriteDone: a region is durable here (resync writes are FUA).
func (m *Machine) targetWriteDone(x *item, errText string) {
	if errText == "" && m.rs != nil {
		m.clearBit(x.region)
		m.rs.moved += x.end - x.off
	}
	if x.session == m.session && m.linkUp {
		m.send(Frame{Kind: FrameResyncAck, Region: x.region, Err: errText})
	}
}

func (m *Machine) sourceResyncAck(f Frame) {
	if m.rs == nil || !m.rs.inflight[f.Region] {
		return
	}
	if f.Err != "" {
		delete(m.rs.inflight, f.Region)
		return // the target detached; FrameDetached follows
	}
	m.rs.awaiting[f.Region] = true
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

// spend takes n bytes from the rate limiter's allowance (a burst of at
// most a window of regions).
func (m *Machine) spend(now time.Time, n int64) bool {
	rate := m.cfg.ResyncRate
	if rate <= 0 {
		return true
	}
	burst := float64(int64(m.cfg.ResyncWindow) * m.cfg.RegionSize)
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
	need := float64(m.cfg.RegionSize) - m.tokens
	if need <= 0 {
		return m.tokensAt, true
	}
	return m.tokensAt.Add(time.Duration(need / float64(m.cfg.ResyncRate) * float64(time.Second))), true
}
