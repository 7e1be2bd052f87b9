package raid

import (
	"bytes"
)

// runResync makes parity, mirrors and checksums agree with the data in
// every pending region (only checksums when degraded), trusting the data as
// md does. It returns false when stopped.
func (a *Array) runResync(r *resyncState, stop <-chan struct{}) bool {
	g := a.geo
	spb := a.lay.StripesPerBit
	r.mu.Lock()
	var regions []int64
	for reg := int64(0); reg*spb < g.Stripes(); reg++ {
		if r.pending.has(reg) {
			regions = append(regions, reg)
		}
	}
	r.mu.Unlock()
	total := int64(0)
	for _, reg := range regions {
		total += min(spb, g.Stripes()-reg*spb)
	}
	a.log.Info("raid: resync started", "array", a.name, "regions", len(regions), "checksums_only", r.crcOnly)
	p := a.startProgress("resync", "", total)
	p.stop = stop
	W := a.windowStripes()
	for _, reg := range regions {
		s1r := min((reg+1)*spb, g.Stripes())
		for s0 := reg * spb; s0 < s1r; s0 += W {
			s1 := min(s0+W, s1r)
			h := a.locks.lock(s0, s1, true)
			v, err := a.view()
			if err != nil {
				a.locks.unlock(h)
				return false
			}
			n := a.resyncWindow(v, s0, s1, r.crcOnly)
			a.locks.unlock(h)
			if !p.step(s1-s0, n) {
				return false
			}
		}
		r.mu.Lock()
		r.pending.unset(reg)
		r.mu.Unlock()
	}
	a.resync.CompareAndSwap(r, nil)
	a.log.Info("raid: resync finished", "array", a.name)
	return true
}

// resyncWindow returns the bytes it wrote.
func (a *Array) resyncWindow(v *view, s0, s1 int64, crcOnly bool) int64 {
	g := a.geo
	var ws []memberWrite
	var written int64
	if !a.rowAligned() {
		var locs [2]Loc
		for s := s0; s < s1; s++ {
			for d := 0; d < g.DataChunks(); d++ {
				var first []byte
				for _, loc := range g.DataLocs(s, d, locs[:0]) {
					for _, m := range v.writable(loc.Member, nil) {
						cr := a.readChunk(m, loc, 0, g.Chunk, false)
						if cr == nil {
							continue
						}
						if m.crc != nil {
							m.crc.set(loc.Off, cr.buf)
						}
						if !m.inSyncAt(s) {
							freeBuf(cr.buf)
							continue
						}
						if first == nil {
							first = cr.buf
							continue
						}
						if !crcOnly && !bytes.Equal(first, cr.buf) {
							ws = append(ws, memberWrite{m: m, off: loc.Off, buf: first})
						}
						freeBuf(cr.buf)
					}
				}
			}
		}
		for _, w := range ws {
			written += int64(len(w.buf))
		}
		a.issueWrites(ws)
		return written
	}
	win := a.readWindow(s0, s1, func(i int) *member {
		if m := v.slot[i]; inSyncRange(m, s0, s1) {
			return m
		}
		return nil
	}, false)
	defer win.free()
	for i, m := range win.src {
		if m != nil && m.crc != nil {
			m.crc.set(s0*g.Chunk, win.bufs[i])
		}
	}
	if crcOnly || g.Level == Raid0 {
		return 0
	}
	k := g.DataChunks()
	var locs [1]Loc
	for s := s0; s < s1; s++ {
		switch g.Level {
		case Raid1:
			var first []byte
			for i := 0; i < g.Members; i++ {
				c := win.at(i, s)
				if c == nil {
					continue
				}
				if first == nil {
					first = c
				} else if !bytes.Equal(first, c) {
					ws = append(ws, memberWrite{m: win.src[i], off: s * g.Chunk, buf: first})
				}
			}
		case Raid5, Raid6:
			data := make([][]byte, k)
			ok := true
			for d := range data {
				data[d] = win.at(g.DataLocs(s, d, locs[:0])[0].Member, s)
				ok = ok && data[d] != nil
			}
			if !ok {
				continue
			}
			pm, qm := g.ParityMembers(s)
			p := alignedBuf(int(g.Chunk))
			var q []byte
			if qm >= 0 {
				q = alignedBuf(int(g.Chunk))
			}
			genParity(data, p, q)
			for _, pq := range []struct {
				slot int
				buf  []byte
			}{{pm, p}, {qm, q}} {
				if pq.slot < 0 {
					continue
				}
				if c := win.at(pq.slot, s); c == nil || !bytes.Equal(c, pq.buf) {
					for _, m := range v.writable(pq.slot, nil) {
						ws = append(ws, memberWrite{m: m, off: s * g.Chunk, buf: pq.buf})
					}
				}
			}
		}
	}
	for _, w := range ws {
		written += int64(len(w.buf))
	}
	a.issueWrites(ws)
	return written
}
