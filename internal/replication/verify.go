package replication

import (
	"fmt"
	"time"
)

// verify is an online verify run by the reference replica (the primary,
// or the one asked if neither is): it reads chunks of consecutive regions
// (Config.ResyncChunk), digests each region and sends the digests, a
// window of regions (Config.VerifyWindow) in flight; the peer digests the same regions at the
// same point of the write stream and answers which differ. Mismatches are reported and,
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
	for len(vf.inflight) < m.cfg.VerifyWindow && vf.cursor < m.dirty.Len() {
		n := min(m.cfg.chunkRegions(), m.cfg.VerifyWindow-len(vf.inflight), m.burstRegions(), m.dirty.Len()-vf.cursor)
		off, end := m.regionSpan(vf.cursor, n)
		if !m.spend(now, end-off) {
			break
		}
		for r := vf.cursor; r < vf.cursor+n; r++ {
			vf.inflight[r] = true
		}
		m.enqueue(&item{kind: itVerifyRead, off: off, end: end, region: vf.cursor, session: m.session})
		vf.cursor += n
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
	m.send(Frame{Kind: FrameVerifyDigest, Region: x.region, Digests: c.Digests})
}

// verifyCheckDone: the peer's digests against ours, region by region (all
// differ if this side could not read, or the adapter answered for other
// regions).
func (m *Machine) verifyCheckDone(x *item, c Completion, errText string) {
	if x.session != m.session || !m.linkUp {
		return
	}
	f := Frame{Kind: FrameVerifyResult, Region: x.region, Regions: len(x.digests), Err: errText}
	for i, d := range x.digests {
		if errText != "" || len(c.Digests) != len(x.digests) || c.Digests[i] != d {
			f.Differ = append(f.Differ, x.region+i)
		}
	}
	m.send(f)
}

func (m *Machine) verifyResult(f Frame) {
	vf := m.vf
	if vf == nil {
		return
	}
	differ := map[int]bool{}
	for _, r := range f.Differ {
		differ[r] = true
	}
	var bad []int
	for r := f.Region; r < f.Region+f.Regions; r++ {
		if !vf.inflight[r] {
			continue
		}
		delete(vf.inflight, r)
		_, n := m.regionRange(r)
		vf.checked += n
		if differ[r] || f.Err != "" {
			vf.bad += n
			bad = append(bad, r)
			m.event(Event{Kind: EventVerifyMismatch, Region: r, Reason: fmt.Sprintf("region %d (%d bytes at %d) differs", r, n, int64(r)*m.cfg.RegionSize)})
		}
	}
	if vf.repair && len(bad) > 0 {
		m.setBits(bad)
	}
}
