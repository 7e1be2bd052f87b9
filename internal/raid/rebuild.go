package raid

import (
	"fmt"
	"time"

	"tandem/internal/events"
)

// slotOf returns the slot m holds or is being built for, or -1.
func (a *Array) slotOf(m *member) int {
	a.mu.RLock()
	defer a.mu.RUnlock()
	for i := range a.slots {
		if a.slots[i] == m || a.repl[i] == m {
			return i
		}
	}
	return -1
}

// progressSaveEvery is how often a running rebuild records its position in
// the superblocks.
const progressSaveEvery = time.Second

// runRebuild brings m (a slot holder or replacement under recovery) in
// sync, window by window, each window locked so I/O continues around it.
// It returns false when stopped.
func (a *Array) runRebuild(m *member, stop <-chan struct{}) bool {
	r := m.rec.Load()
	slot := a.slotOf(m)
	if r == nil || slot < 0 {
		return true
	}
	g := a.geo
	total := int64(0)
	for s := r.pos.Load(); s < g.Stripes(); s++ {
		if r.needs(s) {
			total++
		}
	}
	a.log.Info("raid: rebuild started", "array", a.name, "member", m.name, "slot", slot, "stripes", total)
	a.emit(events.RaidRebuildStarted, fmt.Sprintf("rebuilding %s into slot %d", m.name, slot), map[string]any{"member": m.name, "slot": slot, "stripes": total})
	p := a.startProgress("rebuild", m.name, total)
	p.stop = stop
	W := a.jobWindow()
	lastSave := a.opts.Clock.Now()
	// The write of one window overlaps the reads of the next: a window's
	// lock is released only once its write is done.
	var inflight chan struct{}
	wait := func() {
		if inflight != nil {
			<-inflight
			inflight = nil
		}
	}
	defer wait()
	for s0 := r.pos.Load(); s0 < g.Stripes(); {
		s1 := min(s0+W, g.Stripes())
		n := int64(0)
		for s := s0; s < s1; s++ {
			if r.needs(s) {
				n++
			}
		}
		if n == 0 {
			s0 = s1
			continue
		}
		h := a.locks.lock(s0, s1, true)
		v, err := a.view()
		if err != nil || m.failed.Load() {
			a.locks.unlock(h)
			return err == nil // member gone: next job; array gone: stop
		}
		ws, bufs, err := a.rebuildWindow(v, m, slot, r, s0, s1)
		if err != nil {
			// A stripe with no good copy left: the member cannot be made a
			// true copy. Stop here, as md does, rather than call it in sync
			// with a hole in it; what was rebuilt before s0 stays.
			for _, b := range bufs {
				freeBuf(b)
			}
			a.locks.unlock(h)
			wait()
			a.abortRebuild(m, slot, r, s0, err)
			return true
		}
		wait()
		done := make(chan struct{})
		inflight = done
		end := s1
		go func() {
			defer close(done)
			if err := a.issueWrites(ws); err != nil {
				a.log.Error("raid: rebuild write", "array", a.name, "member", m.name, "err", err)
			}
			for _, b := range bufs {
				freeBuf(b)
			}
			r.pos.Store(end)
			a.locks.unlock(h)
		}()
		// Progress reaches the superblocks once a second (it only decides
		// how much a rebuild interrupted by a crash does again). Every 5 %
		// was 20 syncs of every member per rebuild, each draining the
		// pipeline: a tenth of a small rebuild's time on the dev VM.
		if now := a.opts.Clock.Now(); now.Sub(lastSave) >= progressSaveEvery {
			wait()
			lastSave = now
			a.mu.Lock()
			a.writeSuperblocksLocked(false)
			a.mu.Unlock()
		}
		if !p.step(n, int64(len(ws))*g.Chunk) {
			return false
		}
		s0 = s1
	}
	wait()
	if m.failed.Load() {
		return true
	}
	a.finishRebuild(m, slot, r)
	return true
}

// rebuildWindow computes m's chunks of stripes [s0,s1) from the other
// members; the caller writes them and frees the buffers (the window's own
// among them: a chunk that is a plain copy of one read is written from
// the window as it is, with the checksums already known).
func (a *Array) rebuildWindow(v *view, m *member, slot int, r *recovery, s0, s1 int64) ([]memberWrite, [][]byte, error) {
	g := a.geo
	var ws []memberWrite
	var bufs [][]byte
	var win *window
	if a.rowAligned() {
		win = a.readWindow(s0, s1, func(i int) *member {
			if i == slot {
				// A replacement copies from the member it replaces.
				if old := v.slot[i]; old != m && inSyncRange(old, s0, s1) {
					return old
				}
				return nil
			}
			for _, mm := range []*member{v.slot[i], v.repl[i]} {
				if inSyncRange(mm, s0, s1) {
					return mm
				}
			}
			return nil
		}, a.checksums)
		for _, b := range win.bufs {
			if b != nil {
				bufs = append(bufs, b)
			}
		}
	}
	var firstErr error
	// Computed chunks go into one buffer for the window (huge pages), so
	// the member gets one contiguous write instead of a chunk per segment.
	var out []byte
	for s := s0; s < s1; s++ {
		if !r.needs(s) {
			continue
		}
		role, loc := g.RoleOf(s, slot)
		if role == RoleNone {
			continue
		}
		if win != nil {
			if c, sums := a.copyInWindow(win, s, slot); c != nil {
				ws = append(ws, memberWrite{m: m, off: loc.Off, buf: c, sums: sums})
				continue
			}
		}
		if out == nil {
			out = alignedBuf(int((s1 - s0) * g.Chunk))
			bufs = append(bufs, out)
		}
		buf := out[(s-s0)*g.Chunk : (s-s0+1)*g.Chunk : (s-s0+1)*g.Chunk]
		if win == nil || !a.fromWindow(win, s, slot, role, buf) {
			sr, err := a.readRows(v, s, 0, g.Chunk, role < 0, true)
			if err != nil {
				firstErr = err
				continue
			}
			switch role {
			case RoleP:
				copy(buf, sr.p)
			case RoleQ:
				copy(buf, sr.q)
			default:
				copy(buf, sr.data[role])
			}
			sr.free()
		}
		ws = append(ws, memberWrite{m: m, off: loc.Off, buf: buf})
	}
	return ws, bufs, firstErr
}

// copyInWindow returns slot's chunk of stripe s and its checksums when the
// window holds it as it is: any copy of a mirror, or the member a
// replacement takes over from. nil when it must be computed.
func (a *Array) copyInWindow(w *window, s int64, slot int) ([]byte, []uint32) {
	if a.geo.Level == Raid1 {
		for i := 0; i < a.geo.Members; i++ {
			if c := w.at(i, s); c != nil {
				return c, w.sumsAt(i, s)
			}
		}
		return nil, nil
	}
	if c := w.at(slot, s); c != nil && w.src[slot] != nil {
		return c, w.sumsAt(slot, s)
	}
	return nil, nil
}

// fromWindow computes slot's chunk of stripe s from a window; false means
// the window lacks what is needed (fall back to readRows).
func (a *Array) fromWindow(w *window, s int64, slot int, role Role, out []byte) bool {
	g := a.geo
	switch g.Level {
	case Raid1:
		for i := 0; i < g.Members; i++ {
			if c := w.at(i, s); c != nil {
				copy(out, c)
				return true
			}
		}
		return false
	case Raid0:
		if c := w.at(slot, s); c != nil {
			copy(out, c)
			return true
		}
		return false
	}
	// RAID 5/6: gather data and parity by stripe position.
	k := g.DataChunks()
	if c := w.at(slot, s); c != nil && w.src[slot] != nil {
		copy(out, c) // replacement: the old member still has it
		return true
	}
	data := make([][]byte, k)
	var lost []int
	var locs [1]Loc
	scratch := [][]byte{}
	defer func() {
		for _, b := range scratch {
			freeBuf(b)
		}
	}()
	tmp := func(src []byte) []byte {
		b := alignedBuf(int(g.Chunk))
		scratch = append(scratch, b)
		if src != nil {
			copy(b, src)
		}
		return b
	}
	for d := 0; d < k; d++ {
		mi := g.DataLocs(s, d, locs[:0])[0].Member
		c := w.at(mi, s)
		if mi == slot || c == nil {
			lost = append(lost, d)
			if mi == slot && role == Role(d) {
				data[d] = out
			} else {
				data[d] = tmp(nil)
			}
			continue
		}
		data[d] = c
	}
	pm, qm := g.ParityMembers(s)
	p := w.at(pm, s)
	if pm == slot || p == nil {
		lost = append(lost, k)
		if role == RoleP {
			p = out
		} else {
			p = tmp(nil)
		}
	}
	// P and Q that are present are only read by reconstruct (it writes the
	// lost ones), so the window's copies are used as they are.
	var q []byte
	if qm >= 0 {
		q = w.at(qm, s)
		if qm == slot || q == nil {
			lost = append(lost, k+1)
			if role == RoleQ {
				q = out
			} else {
				q = tmp(nil)
			}
		}
	}
	if len(lost) > g.ParityChunks() {
		return false
	}
	return reconstruct(data, p, q, lost) == nil
}

// inSyncRange reports whether m holds valid data for all of [s0, s1).
func inSyncRange(m *member, s0, s1 int64) bool {
	if !m.usable() {
		return false
	}
	for s := s0; s < s1; s++ {
		if !m.inSyncAt(s) {
			return false
		}
	}
	return true
}

// abortRebuild records that m's rebuild stopped at stripe s (see
// recovery.aborted) and says so in the log and on the event stream.
func (a *Array) abortRebuild(m *member, slot int, r *recovery, s int64, err error) {
	r.aborted.Store(true)
	a.log.Error("raid: rebuild aborted", "array", a.name, "member", m.name, "slot", slot, "stripe", s, "err", err)
	a.emit(events.RaidRebuildAborted, fmt.Sprintf("rebuild of %s into slot %d stopped at stripe %d of %d: %v; the array stays degraded (replace the member that holds the bad data, or assemble again to retry)", m.name, slot, s, a.geo.Stripes(), err),
		map[string]any{"member": m.name, "slot": slot, "stripe": s, "error": err.Error()})
	a.mu.Lock()
	a.writeSuperblocksLocked(false)
	a.mu.Unlock()
}

// finishRebuild marks m in sync and, for a replacement, retires the member
// it replaced.
func (a *Array) finishRebuild(m *member, slot int, r *recovery) {
	a.mu.Lock()
	if m.failed.Load() || a.failed {
		a.mu.Unlock()
		return
	}
	m.rec.Store(nil)
	wasSpare := !r.readd
	if a.repl[slot] == m {
		old := a.slots[slot]
		a.slots[slot], a.repl[slot] = m, nil
		if old != nil {
			old.failed.Store(true)
			old.role = RoleFaulty
			a.faulty = append(a.faulty, old)
			a.log.Info("raid: replaced", "array", a.name, "old", old.name, "new", m.name)
		}
	}
	a.writeSuperblocksLocked(true)
	a.writeBitmapLocked(nil)
	a.mu.Unlock()
	a.log.Info("raid: rebuild finished", "array", a.name, "member", m.name)
	a.emit(events.RaidRebuildFinished, fmt.Sprintf("rebuild of %s finished", m.name), map[string]any{"member": m.name, "slot": slot})
	if wasSpare {
		a.emit(events.RaidSpareActive, fmt.Sprintf("%s is now active in slot %d", m.name, slot), map[string]any{"member": m.name, "slot": slot})
	}
}
