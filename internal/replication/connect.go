package replication

import (
	"fmt"
	"strings"
	"time"
)

// refuseLinger bounds how long a refused handshake keeps the link up
// waiting for the peer's own refusal.
const refuseLinger = time.Second

type refusal struct {
	why       string
	reconnect bool
	until     time.Time
}

// LinkUp: the link to the peer is established; the handshake starts.
func (m *Machine) LinkUp(now time.Time) {
	if m.linkUp {
		return
	}
	if m.conn == connStandAlone {
		m.emit(DropLink{Reason: "stand-alone: connect first", Reconnect: false})
		return
	}
	m.linkUp = true
	m.session++
	m.conn = connHandshake
	m.helloSent, m.peerHello = nil, nil
	m.sendHello()
	m.step(now)
}

// LinkDown: the link is gone; frames in flight are lost.
func (m *Machine) LinkDown(now time.Time, why string) {
	m.now = now
	if !m.linkUp {
		return
	}
	m.linkDown(why)
	m.step(now)
}

func (m *Machine) linkDown(why string) {
	was := m.conn
	m.linkUp = false
	m.helloSent, m.peerHello = nil, nil
	if m.conn != connStandAlone {
		m.conn = connWaiting
	}
	if r := m.refusing; r != nil && !r.reconnect {
		// The peer dropped first; this side refused too.
		m.emit(DropLink{Reason: r.why, Reconnect: false})
		m.conn = connStandAlone
	}
	m.refusing, m.peerRefused = nil, false
	// Operations the peer asked for and not started are dropped: the peer
	// recorded what it did not hear back about. Its writes are kept and
	// applied (unanswered): one waiting for an earlier overlapping write
	// must not vanish while later ones reached the disk, or this replica
	// would hold no prefix of the primary's writes.
	q := m.queue[:0]
	for _, x := range m.queue {
		switch x.kind {
		case itPeerFlush, itPeerRead, itResyncWrite, itVerifyCheck, itResyncRead, itVerifyRead:
			continue
		}
		q = append(q, x)
	}
	m.queue = q
	if was == connEstablished || was == connHandshake {
		m.event(Event{Kind: EventDisconnected, Reason: why})
	}
	m.peerGone(why)
	m.peerRole = Secondary
}

// sendHello sends this side's handshake unless a fencer call is out (its
// answer may change the generation ids).
func (m *Machine) sendHello() {
	if !m.linkUp || m.conn != connHandshake || m.helloSent != nil || m.fenceOut {
		return
	}
	h := &Hello{
		Side: Side{Node: m.cfg.Node, GenIDs: m.meta.GenIDs, Disk: m.disk, Role: m.role, CrashedPrimary: m.crashedPrimary,
			DirtyBytes: int64(m.dirty.Count()) * m.cfg.RegionSize, PrimaryEpoch: m.meta.PrimaryEpoch},
		Size: m.cfg.Size, Mode: m.cfg.Mode, DiscardNode: m.discardNode,
	}
	m.helloSent = h
	m.send(Frame{Kind: FrameHello, Hello: h})
	if m.peerHello != nil {
		m.decide()
	}
}

// rehandshake runs the handshake again on an established connection
// (after a verify with repair, or when an async primary that went ahead
// has drained the link).
func (m *Machine) rehandshake() {
	m.conn = connHandshake
	m.helloSent, m.peerHello = nil, nil
	m.sendHello()
}

func (m *Machine) handleHello(now time.Time, f Frame) {
	if f.Hello == nil {
		m.refuse(now, "empty hello", true)
		return
	}
	if m.conn == connEstablished {
		if m.sync != syncNone {
			m.refuse(now, "handshake during a resync", true)
			return
		}
		m.conn = connHandshake
		m.helloSent = nil
	}
	m.peerHello = f.Hello
	if m.helloSent == nil {
		m.sendHello()
		return
	}
	m.decide()
}

// decide takes the connect decision from the two hellos: both sides
// decide from the same pair, so they agree (Decide is symmetric).
func (m *Machine) decide() {
	s, p := m.helloSent, m.peerHello
	switch {
	case p.Size != s.Size:
		m.refuseBoth(fmt.Sprintf("sizes differ: %d here, %d on %s", s.Size, p.Size, p.Node), false)
		return
	case p.Mode != s.Mode:
		m.refuseBoth(fmt.Sprintf("modes differ: %v here, %v on %s", s.Mode, p.Mode, p.Node), false)
		return
	case s.Role == Primary && p.Role == Primary:
		m.refuseBoth("both replicas are primary", true)
		return
	}
	self, peer := s.Side, p.Side
	self.Discard = s.DiscardNode == self.Node || p.DiscardNode == self.Node
	peer.Discard = s.DiscardNode == peer.Node || p.DiscardNode == peer.Node
	d := Resolve(Decide(self, peer), self, peer, m.cfg.SplitBrain)
	m.peerRole, m.peerDisk = p.Role, p.Disk
	if strings.HasPrefix(d.Reason, "split brain resolved") {
		m.discardNode = ""
	}
	m.ahead = false
	switch d.Verdict {
	case NoSync:
		m.conn, m.sync = connEstablished, syncNone
		if m.disk == Outdated && p.Disk == UpToDate {
			m.setDisk(UpToDate)
		}
		if m.peerDisk == Outdated && m.disk == UpToDate {
			m.peerDisk = UpToDate
		}
		m.peerFenced = m.peerDisk != UpToDate
		if m.crashedPrimary || m.meta.Primary != m.activeLog() {
			m.crashedPrimary = false
			m.meta.Primary = m.activeLog()
			m.persist()
		}
		m.event(Event{Kind: EventConnected, Decision: d, Reason: d.String()})
		if m.dirty.Count() > 0 && m.hasDisk() {
			// Written here during the handshake (not sent): the hello said
			// nothing of it, so shake hands again to resync it.
			m.rehandshake()
		}
	case SyncSource:
		m.conn = connEstablished
		m.event(Event{Kind: EventConnected, Decision: d, Reason: d.String(), SelfDirty: self.DirtyBytes, PeerDirty: peer.DirtyBytes})
		m.startSource(d.Full)
	case SyncTarget:
		// What this side wrote since they parted (SelfDirty) is
		// overwritten by the resync: after a split brain resolved against
		// it, the writes it discards.
		m.conn, m.sync = connEstablished, syncTargetBitmap
		m.event(Event{Kind: EventConnected, Decision: d, Reason: d.String(), SelfDirty: self.DirtyBytes, PeerDirty: peer.DirtyBytes})
	case SplitBrain:
		m.event(Event{Kind: EventSplitBrain, Decision: d, Reason: d.String(), SelfDirty: self.DirtyBytes, PeerDirty: peer.DirtyBytes})
		m.lingerRefused(d.String(), false)
	case Unrelated:
		m.event(Event{Kind: EventConnectRefused, Decision: d, Reason: d.String()})
		m.lingerRefused(d.String(), false)
	case Refused:
		m.event(Event{Kind: EventConnectRefused, Decision: d, Reason: d.String()})
		m.lingerRefused(d.String(), true)
	}
	// A demotion (or a detach) during the handshake changed what the
	// hello said.
	if m.conn == connEstablished && (m.role != s.Role || m.disk != s.Disk) {
		m.sendState()
	}
}

// refuse drops the connection for a protocol or configuration error.
func (m *Machine) refuse(now time.Time, why string, reconnect bool) {
	m.now = now
	m.event(Event{Kind: EventConnectRefused, Reason: why})
	if !reconnect {
		m.standAlone(why)
		return
	}
	m.emit(DropLink{Reason: why, Reconnect: true})
	if m.linkUp {
		m.linkDown(why)
	}
}

// refuseBoth refuses a connection both sides refuse from the same hellos.
func (m *Machine) refuseBoth(why string, reconnect bool) {
	m.event(Event{Kind: EventConnectRefused, Reason: why})
	m.lingerRefused(why, reconnect)
}

// lingerRefused ends a handshake that both sides refuse from the same
// pair of hellos: the link stays up until the peer's FrameRefuse (or
// refuseLinger) so that the peer receives this side's hello, decides the
// same and reports it too (dropping at once would lose the hello in
// flight, and the split brain would be seen on one side only).
func (m *Machine) lingerRefused(why string, reconnect bool) {
	m.refusing = &refusal{why: why, reconnect: reconnect, until: m.now.Add(refuseLinger)}
	m.conn = connWaiting
	m.send(Frame{Kind: FrameRefuse, Err: why})
	if m.peerRefused {
		m.endRefusal()
	}
}

// endRefusal drops the link of a refused handshake.
func (m *Machine) endRefusal() {
	r := m.refusing
	m.refusing, m.peerRefused = nil, false
	if r.reconnect {
		m.emit(DropLink{Reason: r.why, Reconnect: true})
		m.linkDown(r.why)
		return
	}
	m.standAlone(r.why)
}

func (m *Machine) standAlone(why string) {
	m.emit(DropLink{Reason: why, Reconnect: false})
	if m.linkUp {
		m.linkDown(why)
	}
	m.conn = connStandAlone
}

func (m *Machine) setDisk(d DiskState) {
	m.disk = d
	m.meta.Disk = d
	m.persist()
	m.sendState()
}

// FenceDone is the PeerFencer's answer to a Fence action.
func (m *Machine) FenceDone(now time.Time, ok bool, why string) {
	m.now = now
	m.fenceOut = false
	if ok {
		m.peerFenced = true
		if m.peerDisk == UpToDate {
			m.peerDisk = Outdated
		}
		m.event(Event{Kind: EventPeerOutdated, Reason: why})
		if m.role == Primary && m.hasDisk() {
			m.newCurrent()
		}
	} else {
		m.fenceRetryAt = now.Add(m.cfg.FenceRetry)
		m.event(Event{Kind: EventFenceFailed, Reason: why})
	}
	m.sendHello()
	m.step(now)
}

// step runs everything that may follow an input.
func (m *Machine) step(now time.Time) {
	m.now = now
	if m.refusing != nil && !now.Before(m.refusing.until) {
		m.endRefusal()
	}
	m.pumpResync(now)
	m.pumpVerify(now)
	m.pump(now)
	if m.ahead && m.linkUp && m.conn == connEstablished && len(m.lag) == 0 {
		m.rehandshake()
	}
	m.finishDemotion()
	for _, x := range append([]*item(nil), m.clients...) {
		if x.kind != itClientRead {
			m.tryComplete(x)
		}
	}
	if (m.mustSuspend() && !m.linkUp || m.aloneWaiting()) && !m.fenceOut && !now.Before(m.fenceRetryAt) {
		m.fenceOut = true
		m.emit(Fence{Epoch: m.meta.PrimaryEpoch})
	}
	if s := m.mustSuspend(); s != m.suspended {
		m.suspended = s
		if s {
			m.emit(Suspend{Why: "waiting for the peer to be outdated or connected"})
		} else {
			m.emit(Resume{})
		}
	}
}

// Tick lets time pass (fencer retries, the resync rate, the async lag).
func (m *Machine) Tick(now time.Time) { m.step(now) }

// NextTick is when Tick must be called next (zero: no timer).
func (m *Machine) NextTick(now time.Time) time.Time {
	var next time.Time
	at := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	if m.mustSuspend() && !m.linkUp && !m.fenceOut {
		at(m.fenceRetryAt)
	}
	if m.refusing != nil {
		at(m.refusing.until)
	}
	if t, ok := m.rateWait(); ok {
		at(t)
	}
	if m.cfg.Mode == Async && m.cfg.OnLag == GoAhead {
		for _, e := range m.lag {
			at(e.at.Add(m.cfg.MaxLagTime + 1))
		}
	}
	return next
}
