package replication

import "time"

// itemKind is what a local operation is for.
type itemKind uint8

const (
	itClientWrite itemKind = iota
	itClientFlush
	itClientRead
	itInternalFlush // for the activity log and a clean demotion
	itPeerWrite     // a FrameData applied on this replica
	itPeerFlush     // a FrameFlush: after every earlier received write
	itPeerRead      // a diskless primary's read
	itResyncRead    // sync source: read a region to send
	itResyncWrite   // sync target: write a region received
	itVerifyRead    // verify reference: digest a region, send it
	itVerifyCheck   // verify peer: digest a region, compare
)

// item is one local operation, queued in arrival order and started when
// it conflicts with nothing earlier: overlapping operations of which one
// writes never run together and start in arrival order (so the secondary
// applies overlapping writes in the primary's order, and a resync or
// verify read sees exactly the writes sent before its frame); a peer
// flush waits for every earlier write.
type item struct {
	kind     itemKind
	seq      uint64
	off, end int64
	write    bool
	barrier  bool
	fua      bool
	data     []byte
	req      *Request // client operations
	session  uint64   // peer operations: the session their frame came in
	frameSeq uint64   // the peer frame this answers
	region   int      // resync and verify: the first region
	digests  []Digest // verify check: the reference's, region by region
	id       uint64   // local action ID once started
	exts     []int    // activity-log extents held
	issued   uint64   // tick a flush was issued at

	// client writes, flushes and reads, and internal flushes
	localWait, peerWait bool
	localErr            error
	peerOK              bool
	started, done       bool
	// alone: an async write the peer does not get because the primary
	// went ahead; acknowledged only once the peer is known Outdated (what
	// the peer lacks past max_lag is never on a replica that can be
	// promoted without force).
	alone bool
}

func (m *Machine) enqueue(x *item) {
	m.itemSeq++
	x.seq = m.itemSeq
	m.queue = append(m.queue, x)
}

func overlaps(a, b *item) bool { return a.off < b.end && b.off < a.end }

// conflicts: must b (later) wait for a (earlier)?
func conflicts(a, b *item) bool {
	if b.barrier {
		return a.write
	}
	if a.barrier {
		return false
	}
	return (a.write || b.write) && overlaps(a, b)
}

func (m *Machine) blocked(i int) bool {
	x := m.queue[i]
	for _, a := range m.active {
		if conflicts(a, x) {
			return true
		}
	}
	for _, a := range m.queue[:i] {
		if conflicts(a, x) {
			return true
		}
	}
	return x.kind == itClientRead && m.readsUnacknowledged(x)
}

// readsUnacknowledged: client read x overlaps an earlier client write
// that is written here but not yet acknowledged (in sync mode, the peer
// may not hold it yet). The read waits for that acknowledgement: had it
// returned the write's data, a failover to a peer that never received the
// write would undo what the client already saw (no acknowledged write is
// lost, but the history is no longer linearizable).
func (m *Machine) readsUnacknowledged(x *item) bool {
	for _, c := range m.clients {
		if c.kind == itClientWrite && c.seq < x.seq && !c.done && overlaps(c, x) {
			return true
		}
	}
	return false
}

type admission uint8

const (
	hold admission = iota
	start
	drop
)

// pump starts every queued operation that may start, in one pass: starting
// an operation only adds constraints on those after it.
func (m *Machine) pump(now time.Time) {
	for i := 0; i < len(m.queue); {
		if m.blocked(i) {
			i++
			continue
		}
		x := m.queue[i]
		a := m.admit(now, x)
		if a == hold {
			i++
			continue
		}
		m.queue = append(m.queue[:i], m.queue[i+1:]...)
		if a == start {
			m.start(now, x)
		}
	}
}

// admit decides whether x may start now (client operations wait for the
// fencer, the async lag and room in the activity log).
func (m *Machine) admit(now time.Time, x *item) admission {
	switch x.kind {
	case itClientWrite:
		return m.admitWrite(now, x)
	case itClientFlush:
		if !m.hasDisk() && !m.replicating() {
			m.finish(x, ErrNoData)
			return drop
		}
		if m.mustSuspend() {
			return hold
		}
	case itClientRead:
		if !m.hasDisk() && !m.peerHasData() {
			m.finish(x, ErrNoData)
			return drop
		}
	case itPeerWrite, itPeerFlush, itPeerRead, itResyncWrite, itVerifyCheck, itResyncRead, itVerifyRead:
		if !m.hasDisk() {
			m.answerDiskless(x)
			return drop
		}
	}
	return start
}

func (m *Machine) start(now time.Time, x *item) {
	m.tick++
	x.started = true
	switch x.kind {
	case itClientWrite:
		m.startWrite(x)
		return
	case itClientFlush, itInternalFlush:
		m.startFlush(x)
		return
	case itClientRead:
		if !m.hasDisk() {
			x.peerWait = true
			m.send(Frame{Kind: FrameReadReq, Off: x.off, Len: x.end - x.off})
			m.waitPeer(x)
			return
		}
	}
	x.id = m.newID()
	m.ops[x.id] = x
	m.active = append(m.active, x)
	switch x.kind {
	case itClientRead, itPeerRead, itResyncRead:
		m.emit(ReadLocal{ID: x.id, Off: x.off, Len: x.end - x.off})
	case itVerifyRead, itVerifyCheck:
		m.emit(ReadLocal{ID: x.id, Off: x.off, Len: x.end - x.off, DigestEach: m.cfg.RegionSize})
	case itPeerWrite, itResyncWrite:
		m.emit(WriteLocal{ID: x.id, Off: x.off, Data: x.data, FUA: x.fua})
	case itPeerFlush:
		x.issued = m.tick // a resync target's regions written before it are durable after it
		m.emit(FlushLocal{ID: x.id})
	}
}

// waitPeer files x under the Seq of the frame just sent, for its answer.
func (m *Machine) waitPeer(x *item) {
	x.frameSeq = m.sendSeq
	m.peerOps[m.sendSeq] = x
}

// Done takes the completion of a local operation.
func (m *Machine) Done(now time.Time, c Completion) {
	x := m.ops[c.ID]
	if x == nil {
		return
	}
	delete(m.ops, c.ID)
	m.tick++
	for i, a := range m.active {
		if a == x {
			m.active = append(m.active[:i], m.active[i+1:]...)
			break
		}
	}
	switch x.kind {
	case itClientWrite:
		m.writeDone(x, c.Err)
	case itClientFlush, itInternalFlush:
		m.flushDone(x, c.Err)
	case itClientRead:
		m.readDone(x, c)
	case itPeerWrite, itPeerFlush, itPeerRead, itResyncWrite, itVerifyCheck:
		m.peerOpDone(x, c)
	case itResyncRead:
		m.resyncReadDone(x, c)
	case itVerifyRead:
		m.verifyReadDone(x, c)
	}
	m.step(now)
}
