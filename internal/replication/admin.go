package replication

import (
	"fmt"
	"time"
)

// Promote makes this replica primary at epoch (the group's epoch, or a
// standalone counter). It refuses an epoch older than the newest seen, a
// replica that is not UpToDate (unless force), a sync target, and a peer
// that is primary. Promoted while the peer does not receive its writes,
// the replica starts a new generation; in sync mode it then acknowledges
// no write until the peer is connected or outdated by the fencer.
func (m *Machine) Promote(now time.Time, epoch Epoch, force bool) error {
	m.now = now
	if m.role == Primary && !m.demoting {
		if epoch < m.meta.PrimaryEpoch {
			return fmt.Errorf("promote at epoch %d: %w (primary at %d)", epoch, ErrStaleEpoch, m.meta.PrimaryEpoch)
		}
		if epoch > m.meta.PrimaryEpoch {
			m.meta.PrimaryEpoch, m.meta.Epoch = epoch, max(m.meta.Epoch, epoch)
			m.persist()
			m.newTermFence(now)
		}
		return nil
	}
	switch {
	case epoch == 0:
		return fmt.Errorf("promote: epoch 0: %w", ErrStaleEpoch)
	case epoch < m.meta.Epoch || epoch == m.meta.Epoch && m.meta.PrimaryEpoch != epoch:
		return fmt.Errorf("promote at epoch %d: %w (%d seen)", epoch, ErrStaleEpoch, m.meta.Epoch)
	case epoch < m.supersededAt:
		return fmt.Errorf("promote at epoch %d: %w (the group went to the peer at %d)", epoch, ErrStaleEpoch, m.supersededAt)
	case m.demoting:
		return fmt.Errorf("promote: %w: still demoting", ErrBusy)
	case m.linkUp && m.conn == connHandshake:
		return fmt.Errorf("promote: %w: handshake in progress", ErrBusy)
	case m.linkUp && m.conn == connEstablished && m.peerRole == Primary:
		return fmt.Errorf("promote: %w", ErrPeerPrimary)
	case m.sync == syncTarget || m.sync == syncTargetBitmap:
		return fmt.Errorf("promote: %w", ErrResyncTarget)
	case !m.hasDisk():
		if !m.peerHasData() {
			return fmt.Errorf("promote: %w", ErrNoData)
		}
	case m.disk != UpToDate && !force:
		return fmt.Errorf("promote: %w: disk is %v", ErrNotUpToDate, m.disk)
	}
	// Connected to a peer that is Inconsistent with no resync under way
	// (neither side had data: a new volume's initial sync, forced here),
	// the promoted replica's data must reach the peer in full: a new
	// generation, and a new handshake decides the sync.
	initial := m.hasDisk() && m.linkUp && m.conn == connEstablished && m.peerDisk == Inconsistent && m.sync == syncNone
	if m.hasDisk() {
		if m.disk != UpToDate {
			m.disk, m.meta.Disk = UpToDate, UpToDate
		}
		// Replicating, the peer receives every write from now on and the
		// bitmap holds what it lacks (a resync): the generation goes on.
		if !m.replicating() || initial {
			m.meta.GenIDs = m.meta.GenIDs.NewCurrent(m.cfg.NewGenID())
		}
	}
	m.role, m.deposed = Primary, false
	m.meta.Primary = true
	m.meta.PrimaryEpoch, m.meta.Epoch = epoch, epoch
	m.persist()
	m.fenceRetryAt = time.Time{}
	m.sendState()
	if initial {
		m.rehandshake()
	}
	m.event(Event{Kind: EventPromoted, Epoch: epoch})
	m.step(now)
	return nil
}

// newTermFence lets a primary promoted again at a newer epoch ask the
// fencer at once: the retry pause belonged to a fence refused in the
// earlier term (as a stale epoch, say), which the new term's fence is not
// (seen in e2e: 740 ms of a cut-off takeover's mount waited for it).
func (m *Machine) newTermFence(now time.Time) {
	m.fenceRetryAt = time.Time{}
	m.step(now)
}

// Demote makes this replica secondary. Client requests still open fail;
// the activity log is retired once both replicas flushed what it covers.
func (m *Machine) Demote(now time.Time) {
	m.now = now
	if m.role != Primary {
		return
	}
	m.demote(ErrNotPrimary)
	m.event(Event{Kind: EventDemoted})
	m.step(now)
}

// Depose tells the machine that the cluster gave its group to the peer
// at epoch e. A primary of an older epoch steps down at once: its open
// requests fail, it acknowledges nothing more, and the group's stop does
// not wait on writes held for the peer's acknowledgement until the link
// shows the epoch. A link slow to break (the peer's close behind TCP
// retransmissions after a one-way partition) held a deposed holder's
// export, and so its group, 220 ms into its successor's lease (storage
// seed 44102).
//
// Unlike a frame of epoch e, the cluster's word records nothing: the
// peer may not have promoted yet, and a replica that took e as seen would
// refuse the frames the peer sends before its promotion and carry e back
// to it, which would then refuse its own promotion at e as already seen
// (storage seed 45021, when this went through the link's epoch). Only a
// promotion at an epoch older than e is refused from then on.
func (m *Machine) Depose(now time.Time, e Epoch) {
	m.now = now
	m.supersededAt = max(m.supersededAt, e)
	if m.role != Primary || m.meta.PrimaryEpoch >= e {
		return
	}
	m.deposed = true
	m.event(Event{Kind: EventDeposed, Epoch: e, Reason: fmt.Sprintf("primary at epoch %d, the cluster gave the group to the peer at %d", m.meta.PrimaryEpoch, e)})
	m.demote(ErrStaleEpoch)
	m.step(now)
}

func (m *Machine) demote(err error) {
	m.failClients(err)
	m.role = Secondary
	m.demoting = true
	m.sendState()
}

// activeLog: the activity log may hold extents a crash would have to
// resync, so the durable primary flag must stay set (it is what makes the
// next start fold the log into the bitmap): while primary and until a
// demotion has retired the log. A crashed primary's log was folded at
// start, so once its bitmap went to the peer the flag may go.
func (m *Machine) activeLog() bool { return m.role == Primary || m.demoting }

// finishDemotion clears the primary flag once nothing a crash could lose
// is left: no write in flight and every extent flushed on both sides.
func (m *Machine) finishDemotion() {
	if !m.demoting {
		return
	}
	if m.hasDisk() {
		safe := true
		for _, e := range m.al.extents {
			if e.inflight > 0 {
				return
			}
			safe = safe && m.extentSafe(e)
		}
		if !safe {
			m.flushInternal()
			return
		}
		if ext := m.al.all(); len(ext) > 0 {
			m.emit(ALEnd{Extents: ext})
			m.al = newActLog(m.cfg.ALExtents)
		}
	}
	m.demoting = false
	if m.meta.Primary {
		m.meta.Primary = false
		m.persist()
	}
}

// Connect leaves StandAlone: the adapter may bring the link up again.
func (m *Machine) Connect(now time.Time) {
	if m.conn == connStandAlone {
		m.conn = connWaiting
	}
	m.step(now)
}

// Disconnect drops the link and stays StandAlone until Connect.
func (m *Machine) Disconnect(now time.Time) {
	m.now = now
	m.standAlone("disconnect")
	m.step(now)
}

// Resolve records `resolve --discard NODE`: at the next handshake a split
// brain is resolved by making NODE the sync target (its changes since the
// split are lost). Either node may be told.
func (m *Machine) Resolve(now time.Time, discard string) error {
	if discard == "" {
		return fmt.Errorf("resolve: no node named")
	}
	if m.linkUp && m.conn == connEstablished {
		return fmt.Errorf("resolve: %w: connected, nothing to resolve", ErrBusy)
	}
	m.discardNode = discard
	m.step(now)
	return nil
}

// Detach drops the local disk as an I/O error would (an operator, or a
// health check that saw it failing): Diskless here, a full sync when a
// disk is attached again; a primary goes on through an UpToDate peer.
func (m *Machine) Detach(now time.Time) {
	m.now = now
	m.detach("detached by the operator")
	m.step(now)
}

// Outdate records that the cluster marked this replica Outdated (the
// peer's fencer, through the replicated state).
func (m *Machine) Outdate(now time.Time) error {
	m.now = now
	if m.role == Primary {
		return fmt.Errorf("outdate: %w: this replica is primary", ErrBusy)
	}
	m.outdate("marked Outdated by the cluster")
	m.step(now)
	return nil
}

func (m *Machine) outdate(why string) {
	if m.disk != UpToDate {
		return
	}
	m.setDisk(Outdated)
	m.event(Event{Kind: EventOutdated, Reason: why})
}
