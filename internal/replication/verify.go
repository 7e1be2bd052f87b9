package replication

import (
	"fmt"
	"time"
)

// verify is an online verify run by the reference replica (the primary,
// or the one asked if neither is): it digests each region and sends the
// digest; the peer digests the same region at the same point of the write
// stream and answers whether they match. Mismatches are reported and,
// with repair, marked dirty on the reference, which then resyncs them to
// the peer: nothing changes on the reference.
type verify struct {
	repair   bool
	cursor   int
	inflight map[int]bool
	checked  int64
	bad      int64
}

// Verify starts an online verify. It needs an established connection, no
// resync, and both replicas UpToDate. If the peer is primary it runs
// there (its data is the reference).
func (m *Machine) Verify(now time.Time, repair bool) error {
	m.now = now
	switch {
	case !m.linkUp || m.conn != connEstablished:
		return fmt.Errorf("verify: %w", ErrNotConnected)
	case m.sync != syncNone:
		return fmt.Errorf("verify: %w: a resync is running", ErrBusy)
	case m.vf != nil:
		return fmt.Errorf("verify: %w: a verify is running", ErrBusy)
	case m.disk != UpToDate || m.peerDisk != UpToDate:
		return fmt.Errorf("verify: %w: disks %v here, %v on the peer", ErrNotUpToDate, m.disk, m.peerDisk)
	}
	if m.peerRole == Primary {
		m.send(Frame{Kind: FrameVerifyStart, Repair: repair})
	} else {
		m.startVerify(repair)
	}
	m.step(now)
	return nil
}

func (m *Machine) startVerify(repair bool) {
	if m.vf != nil || m.sync != syncNone || !m.hasDisk() {
		return
	}
	m.vf = &verify{repair: repair, inflight: map[int]bool{}}
}

func (m *Machine) pumpVerify(now time.Time) {
	vf := m.vf
	if vf == nil {
		return
	}
	for len(vf.inflight) < m.cfg.ResyncWindow && vf.cursor < m.dirty.Len() {
		off, n := m.regionRange(vf.cursor)
		if !m.spend(now, n) {
			break
		}
		vf.inflight[vf.cursor] = true
		m.enqueue(&item{kind: itVerifyRead, off: off, end: off + n, region: vf.cursor, session: m.session})
		vf.cursor++
	}
	if vf.cursor == m.dirty.Len() && len(vf.inflight) == 0 {
		m.vf = nil
		m.event(Event{Kind: EventVerifyFinished, Bytes: vf.checked, SelfDirty: vf.bad,
			Reason: fmt.Sprintf("%d of %d bytes differ", vf.bad, vf.checked)})
		if vf.repair && vf.bad > 0 {
			m.rehandshake()
		}
	}
}

func (m *Machine) verifyReadDone(x *item, c Completion) {
	if c.Err != nil {
		m.detach(fmt.Sprintf("verify read of region %d: %v", x.region, c.Err))
		return
	}
	if m.vf == nil || x.session != m.session || !m.linkUp {
		return
	}
	m.send(Frame{Kind: FrameVerifyDigest, Region: x.region, Digest: c.Digest})
}

// verifyCheckDone: the peer's digest against ours.
func (m *Machine) verifyCheckDone(x *item, c Completion, errText string) {
	if x.session != m.session || !m.linkUp {
		return
	}
	m.send(Frame{Kind: FrameVerifyResult, Region: x.region, Match: errText == "" && c.Digest == x.digest, Err: errText})
}

func (m *Machine) verifyResult(f Frame) {
	vf := m.vf
	if vf == nil || !vf.inflight[f.Region] {
		return
	}
	delete(vf.inflight, f.Region)
	_, n := m.regionRange(f.Region)
	vf.checked += n
	if !f.Match {
		vf.bad += n
		m.event(Event{Kind: EventVerifyMismatch, Region: f.Region, Reason: fmt.Sprintf("region %d (%d bytes at %d) differs", f.Region, n, int64(f.Region)*m.cfg.RegionSize)})
		if vf.repair {
			m.setBits([]int{f.Region})
		}
	}
}
