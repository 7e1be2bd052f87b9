package replication

import (
	"fmt"
	"slices"
	"time"
)

// Submit takes a client request. It is answered by a Complete action,
// perhaps in this call.
func (m *Machine) Submit(now time.Time, r Request) {
	req := r
	x := &item{req: &req}
	switch r.Op {
	case OpWrite:
		x.kind, x.off, x.end, x.write, x.fua, x.data = itClientWrite, r.Off, r.Off+int64(len(r.Data)), true, r.FUA, r.Data
	case OpRead:
		x.kind, x.off, x.end = itClientRead, r.Off, r.Off+r.Len
	case OpFlush:
		x.kind = itClientFlush
	default:
		m.emit(Complete{ID: r.ID, Err: fmt.Errorf("replication: unknown op %d", r.Op)})
		return
	}
	switch {
	case m.role != Primary || m.deposed:
		m.emit(Complete{ID: r.ID, Err: ErrNotPrimary})
		return
	case r.Op != OpFlush && (x.off < 0 || x.end <= x.off || x.end > m.cfg.Size):
		m.emit(Complete{ID: r.ID, Err: fmt.Errorf("replication: %v of [%d, %d) outside the volume (%d bytes)", r.Op, x.off, x.end, m.cfg.Size)})
		return
	}
	m.clients = append(m.clients, x)
	m.enqueue(x)
	m.step(now)
}

// mustSuspend: a sync-mode primary may not acknowledge writes the peer
// lacks until the peer is known not to be promotable (S3); meanwhile new
// writes and flushes wait.
func (m *Machine) mustSuspend() bool {
	return m.cfg.Mode == Sync && m.role == Primary && m.hasDisk() && !m.replicating() && !m.peerFenced
}

// aloneWaiting: an async primary that went ahead holds the writes it did
// not send until the peer is known Outdated. (With the link down it writes
// on alone at once, as before: the cluster records the peer Outdated from
// its status, docs/storage.md.)
func (m *Machine) aloneWaiting() bool {
	if m.cfg.Mode != Async || m.role != Primary || m.peerFenced {
		return false
	}
	for _, x := range m.clients {
		if x.alone && !x.done {
			return true
		}
	}
	return false
}

func (m *Machine) admitWrite(now time.Time, x *item) admission {
	if !m.hasDisk() {
		if !m.replicating() {
			m.finish(x, ErrNoData)
			return drop
		}
		return start
	}
	if m.mustSuspend() {
		return hold
	}
	if m.cfg.Mode == Async && m.replicating() && m.lagExceeded(now, x.end-x.off) {
		// During a resync the target is Inconsistent anyway: going ahead
		// would only race the resync over the same bits, so it throttles.
		if m.cfg.OnLag == Throttle || m.sync != syncNone {
			return hold
		}
		m.goAhead()
	}
	exts := m.extents(x.off, x.end-x.off)
	begin, end, ok := m.al.acquire(exts, m.tick, m.extentSafe)
	if !ok {
		m.flushInternal()
		return hold
	}
	if len(end) > 0 {
		m.emit(ALEnd{Extents: end})
	}
	if len(begin) > 0 {
		m.emit(ALBegin{Extents: begin})
	}
	x.exts = exts
	return start
}

// extentSafe: every write to the extent is durable here and on the peer
// (or recorded in the dirty bitmap).
func (m *Machine) extentSafe(e *alExtent) bool {
	return e.lastDone < m.localFlushed && (e.lastSent == 0 || e.lastSent < m.peerSafe)
}

func (m *Machine) startWrite(x *item) {
	regions := m.regions(x.off, x.end-x.off)
	if m.replicating() {
		m.send(Frame{Kind: FrameData, Off: x.off, Data: x.data, FUA: x.fua})
		x.peerWait = true
		m.waitPeer(x)
		m.lag[m.sendSeq] = lagEntry{bytes: x.end - x.off, at: m.now}
		m.lagSize += x.end - x.off
		for _, r := range regions {
			m.sentAt[r] = m.tick
		}
		for _, e := range x.exts {
			m.al.extents[e].lastSent = m.tick
		}
	} else {
		m.setBits(regions)
		x.alone = m.cfg.Mode == Async && m.ahead
	}
	if m.hasDisk() {
		x.id = m.newID()
		m.ops[x.id] = x
		m.active = append(m.active, x)
		x.localWait = true
		m.emit(WriteLocal{ID: x.id, Off: x.off, Data: x.data, FUA: x.fua})
	}
}

func (m *Machine) startFlush(x *item) {
	x.issued = m.tick
	if m.hasDisk() {
		x.id = m.newID()
		m.ops[x.id] = x
		x.localWait = true
		m.emit(FlushLocal{ID: x.id})
	}
	if m.replicating() {
		m.send(Frame{Kind: FrameFlush})
		x.peerWait = true
		m.waitPeer(x)
	}
	if x.kind == itInternalFlush && !x.localWait && !x.peerWait {
		m.flushing = nil
	}
}

// flushInternal flushes both replicas so activity-log extents can be
// retired (at most one at a time).
func (m *Machine) flushInternal() {
	if m.flushing != nil {
		return
	}
	x := &item{kind: itInternalFlush}
	m.flushing = x
	m.tick++
	m.startFlush(x)
}

func (m *Machine) writeDone(x *item, err error) {
	x.localWait = false
	for _, e := range x.exts {
		if ext := m.al.extents[e]; ext != nil {
			ext.inflight--
			ext.lastDone = m.tick
		}
	}
	x.exts = nil
	if err != nil {
		x.localErr = err
		m.detach(fmt.Sprintf("write at %d: %v", x.off, err))
	}
	m.tryComplete(x)
}

func (m *Machine) flushDone(x *item, err error) {
	x.localWait = false
	if err != nil {
		x.localErr = err
		m.detach(fmt.Sprintf("flush: %v", err))
	} else {
		m.localFlushed = max(m.localFlushed, x.issued)
	}
	m.flushAnswered(x)
}

func (m *Machine) flushAnswered(x *item) {
	if x.kind == itInternalFlush {
		if !x.localWait && !x.peerWait && m.flushing == x {
			m.flushing = nil
		}
		return
	}
	m.tryComplete(x)
}

func (m *Machine) readDone(x *item, c Completion) {
	if c.Err != nil {
		m.detach(fmt.Sprintf("read at %d: %v", x.off, c.Err))
		if m.peerHasData() {
			x.peerWait = true
			m.send(Frame{Kind: FrameReadReq, Off: x.off, Len: x.end - x.off})
			m.waitPeer(x)
			return
		}
		m.finish(x, fmt.Errorf("%w: %v", ErrIO, c.Err))
		return
	}
	m.finishData(x, c.Data)
}

// tryComplete answers a client write or flush once its rules are met:
// async, once durable (completed) locally; sync, once also on the peer,
// or with the peer known not promotable; diskless, once on the peer.
func (m *Machine) tryComplete(x *item) {
	// A read is answered with its data, by readDone or peerAnswer: its
	// local read sets no localWait, so the rules below would complete it
	// empty.
	if x.done || x.req == nil || !x.started || x.localWait || x.kind == itClientRead {
		return
	}
	localOK := x.id != 0 && x.localErr == nil && m.hasDisk()
	if localOK && (m.cfg.Mode == Async && (!x.alone || m.peerFenced) || m.peerFenced && !x.peerWait) {
		m.finish(x, nil)
		return
	}
	if x.peerWait || localOK && !x.peerOK {
		return
	}
	if localOK || x.peerOK {
		m.finish(x, nil)
		return
	}
	err := ErrNoData
	if x.localErr != nil {
		err = fmt.Errorf("%w: %v", ErrIO, x.localErr)
	}
	m.finish(x, err)
}

func (m *Machine) finish(x *item, err error) { m.complete(x, err, nil) }

func (m *Machine) finishData(x *item, data []byte) { m.complete(x, nil, data) }

func (m *Machine) complete(x *item, err error, data []byte) {
	if x.done || x.req == nil {
		return
	}
	x.done = true
	m.emit(Complete{ID: x.req.ID, Err: err, Data: data})
	for i, c := range m.clients {
		if c == x {
			m.clients = append(m.clients[:i], m.clients[i+1:]...)
			break
		}
	}
}

// failClients answers every client request still open with err and drops
// those not started.
func (m *Machine) failClients(err error) {
	for len(m.clients) > 0 {
		m.finish(m.clients[0], err)
	}
	q := m.queue[:0]
	for _, x := range m.queue {
		if x.req == nil {
			q = append(q, x)
		}
	}
	m.queue = q
}

// lagExceeded: sending n more bytes would make the async peer trail by
// more than max_lag, or it trails by more than max_lag_time already. A
// write larger than max_lag alone goes once nothing else is out.
func (m *Machine) lagExceeded(now time.Time, n int64) bool {
	if m.lagSize > 0 && m.lagSize+n > m.cfg.MaxLagBytes {
		return true
	}
	for _, e := range m.lag {
		if now.Sub(e.at) > m.cfg.MaxLagTime {
			return true
		}
	}
	return false
}

// goAhead: the async primary stops sending writes and records them in
// the bitmap; the peer is Outdated until the resync that follows once the
// link has drained.
func (m *Machine) goAhead() {
	if m.ahead {
		return
	}
	m.ahead = true
	// The peer records itself Outdated when it reads this, behind what
	// the congested link still carries; the writes that go ahead wait for
	// the PeerFencer (step) or the peer's state saying so, whichever comes
	// first: a primary that died right after acknowledging them left a
	// peer that never read the frame, UpToDate and promotable.
	m.send(Frame{Kind: FrameOutdate})
	m.event(Event{Kind: EventAhead, Reason: fmt.Sprintf("peer trails by %d bytes", m.lagSize)})
}

// detach drops a failed local disk: in memory Diskless; on disk
// Inconsistent and JustCreated, so that a disk attached again (repaired or
// replaced) takes a full sync: nothing tracks what it misses while I/O
// goes to the peer.
func (m *Machine) detach(why string) {
	if !m.hasDisk() {
		return
	}
	m.disk = Diskless
	m.meta.Disk = Inconsistent
	m.meta.GenIDs = GenIDs{Current: JustCreated}
	m.persist()
	m.event(Event{Kind: EventDiskDetached, Reason: why})
	m.al = newActLog(m.cfg.ALExtents)
	if m.linkUp && m.conn == connEstablished {
		m.send(Frame{Kind: FrameDetached, Err: why})
	}
	if m.rs != nil || m.vf != nil {
		m.abortResync("local disk detached")
	}
}

// peerGone: the peer stopped receiving writes (link down, or its disk
// detached). What it may lack is marked dirty; a primary starts a new
// generation now, or in sync mode once the fencer has outdated the peer.
func (m *Machine) peerGone(why string) {
	var regions []int
	for _, x := range m.clients {
		if x.kind == itClientWrite && x.peerWait {
			regions = append(regions, m.regions(x.off, x.end-x.off)...)
		}
	}
	for r, t := range m.sentAt {
		if t >= m.peerFlushed {
			regions = append(regions, r)
		}
	}
	slices.Sort(regions)
	regions = slices.Compact(regions)
	m.setBits(regions)
	clear(m.sentAt)
	m.peerSafe = m.tick + 1
	m.tick++
	seqs := make([]uint64, 0, len(m.peerOps))
	for seq := range m.peerOps {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	for _, seq := range seqs {
		x := m.peerOps[seq]
		delete(m.peerOps, seq)
		x.peerWait = false
		switch x.kind {
		case itClientRead:
			m.finish(x, ErrNoData) // only a diskless primary reads through the peer
		case itInternalFlush, itClientFlush:
			m.flushAnswered(x)
		}
	}
	clear(m.lag)
	m.lagSize = 0
	m.ahead = false
	if m.rs != nil || m.vf != nil {
		m.abortResync(why)
	}
	m.sync = syncNone
	if m.role == Primary && m.hasDisk() && (m.cfg.Mode == Async || m.peerFenced) {
		m.newCurrent()
	}
	for _, x := range append([]*item(nil), m.clients...) {
		m.tryComplete(x)
	}
}

func (m *Machine) newCurrent() {
	g := m.meta.GenIDs.NewCurrent(m.cfg.NewGenID())
	if g != m.meta.GenIDs {
		m.meta.GenIDs = g
		m.persist()
	}
}
