package replication

import (
	"fmt"
	"time"
)

// Receive takes a frame from the peer.
func (m *Machine) Receive(now time.Time, f Frame) {
	if !m.linkUp {
		return // from a connection already given up
	}
	if f.Volume != m.cfg.Volume {
		m.refuse(now, fmt.Sprintf("frame for volume %v, this is %v", f.Volume, m.cfg.Volume), false)
		return
	}
	if f.Epoch < m.meta.Epoch && f.Kind.fenced() {
		m.send(Frame{Kind: FrameStale, Ack: f.Seq})
		m.event(Event{Kind: EventStaleFrame, Epoch: f.Epoch, Reason: fmt.Sprintf("%v frame of epoch %d refused: epoch %d was seen", f.Kind, f.Epoch, m.meta.Epoch)})
		m.step(now)
		return
	}
	m.seeEpoch(f.Epoch)
	switch f.Kind {
	case FrameHello:
		m.handleHello(now, f)
	case FrameState:
		m.peerState(f)
	case FrameData:
		if m.role == Primary {
			m.refuse(now, "the peer sent a write to this primary", true)
			return
		}
		m.enqueue(&item{kind: itPeerWrite, off: f.Off, end: f.Off + int64(len(f.Data)), write: true, fua: f.FUA, data: f.Data, frameSeq: f.Seq, session: m.session})
	case FrameFlush:
		m.enqueue(&item{kind: itPeerFlush, barrier: true, frameSeq: f.Seq, session: m.session})
	case FrameReadReq:
		m.enqueue(&item{kind: itPeerRead, off: f.Off, end: f.Off + f.Len, frameSeq: f.Seq, session: m.session})
	case FrameDataAck, FrameFlushAck, FrameReadReply:
		m.peerAnswer(f)
	case FrameBitmap:
		m.targetBitmap(f)
	case FrameBitmapAck:
		m.sourceBitmapAck(f)
	case FrameResyncData:
		off, end, ok := m.wholeRegions(f.Region, int64(len(f.Data)))
		if m.sync != syncTarget || !ok {
			m.refuse(now, fmt.Sprintf("resync data for region %d (%d bytes) out of place", f.Region, len(f.Data)), true)
			return
		}
		// No FUA: the source's flush that follows makes it durable, and
		// only then are the regions' bits cleared (targetFlushed).
		m.enqueue(&item{kind: itResyncWrite, off: off, end: end, write: true, data: f.Data, region: f.Region, frameSeq: f.Seq, session: m.session})
	case FrameResyncDone:
		m.targetDone(f)
	case FrameResyncDoneAck:
		m.sourceDoneAck()
	case FrameVerifyStart:
		m.startVerify(f.Repair)
	case FrameVerifyDigest:
		if f.Region < 0 || len(f.Digests) < 1 || f.Region+len(f.Digests) > m.dirty.Len() {
			m.refuse(now, fmt.Sprintf("verify digests of regions [%d, %d) outside the volume", f.Region, f.Region+len(f.Digests)), true)
			return
		}
		off, _ := m.regionRange(f.Region)
		_, end := m.regionSpan(f.Region, len(f.Digests))
		m.enqueue(&item{kind: itVerifyCheck, off: off, end: end, region: f.Region, digests: f.Digests, frameSeq: f.Seq, session: m.session})
	case FrameVerifyResult:
		m.verifyResult(f)
	case FrameOutdate:
		m.outdate("the async primary went ahead")
	case FrameStale:
		m.event(Event{Kind: EventStaleFrame, Epoch: f.Epoch, Reason: fmt.Sprintf("the peer refused frame %d: it has seen epoch %d", f.Ack, f.Epoch)})
		if x := m.peerOps[f.Ack]; x != nil {
			m.peerAnswer(Frame{Ack: f.Ack, Err: "refused: stale epoch"})
		}
	case FrameRefuse:
		if m.refusing != nil {
			m.endRefusal()
		} else {
			m.peerRefused = true
		}
	case FrameDetached:
		m.peerDisk = Diskless
		m.peerFenced = true
		m.event(Event{Kind: EventPeerDetached, Reason: f.Err})
		m.peerGone("peer disk detached")
	}
	m.step(now)
}

// seeEpoch records a newer epoch; a primary of an older one is deposed.
func (m *Machine) seeEpoch(e Epoch) {
	if e <= m.meta.Epoch {
		return
	}
	m.meta.Epoch = e
	m.persist()
	if m.role == Primary && m.meta.PrimaryEpoch < e {
		m.deposed = true
		m.event(Event{Kind: EventDeposed, Epoch: e, Reason: fmt.Sprintf("primary at epoch %d, the peer has seen %d", m.meta.PrimaryEpoch, e)})
		m.demote(ErrStaleEpoch)
	}
}

func (m *Machine) peerState(f Frame) {
	became := f.Role == Primary && m.peerRole != Primary
	m.peerRole = f.Role
	m.peerDisk = f.Disk
	if f.Disk != UpToDate {
		m.peerFenced = true
	} else if m.sync == syncNone && !m.ahead {
		// Ahead, an UpToDate state is one the peer sent before it read
		// the outdate frame: the fencer's word stands.
		m.peerFenced = false
	}
	if f.Role == Primary && m.role == Primary {
		m.refuse(m.now, "both replicas are primary", true)
		return
	}
	// The peer became primary while this secondary holds regions it
	// wrote apart (a deposed primary's writes the peer refused, a demoted
	// primary's it never acknowledged): they must come from the peer, so
	// shake hands again (equal-peer-primary makes this side the target).
	if became && m.role != Primary && m.hasDisk() && m.dirty.Count() > 0 &&
		m.conn == connEstablished && m.sync == syncNone && m.vf == nil {
		m.rehandshake()
	}
}

// sendState tells a connected peer this side's role and disk.
func (m *Machine) sendState() {
	if m.linkUp && m.conn == connEstablished {
		m.send(Frame{Kind: FrameState, Role: m.role, Disk: m.disk, GenIDs: m.meta.GenIDs})
	}
}

// peerAnswer: the peer answered a write, flush or read of ours.
func (m *Machine) peerAnswer(f Frame) {
	x := m.peerOps[f.Ack]
	if x == nil {
		return
	}
	delete(m.peerOps, f.Ack)
	x.peerWait = false
	if e, ok := m.lag[f.Ack]; ok {
		delete(m.lag, f.Ack)
		m.lagSize -= e.bytes
	}
	switch x.kind {
	case itClientWrite:
		if f.Err != "" {
			m.setBits(m.regions(x.off, x.end-x.off))
		} else {
			x.peerOK = true
		}
		m.tryComplete(x)
	case itClientFlush, itInternalFlush:
		if f.Err == "" {
			x.peerOK = true
			m.peerFlushed = max(m.peerFlushed, x.issued)
			m.peerSafe = max(m.peerSafe, x.issued)
			for r, t := range m.sentAt {
				if t < m.peerFlushed {
					delete(m.sentAt, r)
				}
			}
		}
		m.flushAnswered(x)
	case itClientRead:
		if f.Err != "" {
			m.finish(x, fmt.Errorf("%w: peer: %s", ErrIO, f.Err))
		} else {
			m.finishData(x, f.Data)
		}
	}
}

// peerOpDone answers the peer once a local operation it asked for is done.
func (m *Machine) peerOpDone(x *item, c Completion) {
	if c.Err != nil {
		m.detach(fmt.Sprintf("%v at %d: %v", x.kind, x.off, c.Err))
	}
	errText := ""
	if !m.hasDisk() {
		errText = "disk detached"
	}
	switch x.kind {
	case itResyncWrite:
		m.targetWriteDone(x, errText)
		return
	case itVerifyCheck:
		m.verifyCheckDone(x, c, errText)
		return
	case itPeerFlush:
		if errText == "" {
			m.targetFlushed(x)
		}
	}
	if x.session != m.session || !m.linkUp {
		return
	}
	switch x.kind {
	case itPeerWrite:
		m.send(Frame{Kind: FrameDataAck, Ack: x.frameSeq, Err: errText})
	case itPeerFlush:
		m.send(Frame{Kind: FrameFlushAck, Ack: x.frameSeq, Err: errText})
	case itPeerRead:
		m.send(Frame{Kind: FrameReadReply, Ack: x.frameSeq, Data: c.Data, Err: errText})
	}
}

// answerDiskless answers an operation that reached a detached disk.
func (m *Machine) answerDiskless(x *item) {
	x.id = 0
	m.peerOpDone(x, Completion{})
}

func (k itemKind) String() string {
	return [...]string{"client write", "client flush", "client read", "flush", "peer write", "peer flush",
		"peer read", "resync read", "resync write", "verify read", "verify check"}[k]
}
