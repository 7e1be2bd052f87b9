package raid

import (
	"errors"
	"fmt"

	"tandem/internal/blockdev"
)

// piece is the part of a request that falls in one data chunk of a stripe.
type piece struct {
	s       int64
	d       int
	inChunk int64 // offset in the chunk
	n       int64
	bufOff  int64 // offset in the caller's buffer
}

// pieces splits [off, off+n) into per-chunk pieces, in order.
func (g Geometry) pieces(off, n int64) []piece {
	var out []piece
	for done := int64(0); done < n; {
		s, d, in := g.Locate(off + done)
		l := min(g.Chunk-in, n-done)
		out = append(out, piece{s, d, in, l, done})
		done += l
	}
	return out
}

func (a *Array) checkIO(off, n int64) error {
	if off < 0 || n < 0 || off+n > a.geo.Size() {
		return fmt.Errorf("raid: %w: offset %d length %d size %d", blockdev.ErrOutOfRange, off, n, a.geo.Size())
	}
	return nil
}

// ReadAt reads from the array. Blocks are verified against their checksums;
// a bad or unreadable block is rebuilt from redundancy, returned, rewritten
// and reported. Sequential readers are served from readahead windows.
func (a *Array) ReadAt(p []byte, off int64) (int, error) {
	if err := a.checkIO(off, int64(len(p))); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if a.ra != nil {
		if ok, err := a.ra.read(p, off); ok || err != nil {
			return len(p), err
		}
	}
	if err := a.readAt(p, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (a *Array) readAt(p []byte, off int64) error {
	if a.wb != nil {
		a.wb.waitFor(off, int64(len(p)))
	}
	ps := a.geo.pieces(off, int64(len(p)))
	s0, s1 := ps[0].s, ps[len(ps)-1].s+1
	h := a.locks.lock(s0, s1, false)
	slow, err := a.readFast(p, ps)
	if err == nil && len(slow) > 0 {
		var repair []piece
		repair, err = a.readSlow(p, slow, false)
		if err == nil && len(repair) > 0 {
			a.locks.unlock(h)
			h = a.locks.lock(repair[0].s, repair[len(repair)-1].s+1, true)
			_, err = a.readSlow(p, repair, true)
		}
	}
	a.locks.unlock(h)
	return err
}

// readRunMax caps one member read: larger reads are split and go out in
// parallel. On the virtual disks measured, 1 MiB reads beat 2–4 MiB ones
// (and a lone 4 MiB mirror read lost to four 1 MiB reads on two copies).
const readRunMax = 1 << 20

// readFast reads every piece from one in-sync copy, merging contiguous
// member ranges into single reads, and returns the pieces that need the
// slow path (member missing, read error, checksum mismatch).
func (a *Array) readFast(p []byte, ps []piece) ([]piece, error) {
	v, err := a.view()
	if err != nil {
		return nil, err
	}
	g := a.geo
	type run struct {
		m        *member
		off, end int64 // data-area offsets, block aligned
		pieces   []int
		at       []int64 // data-area offset of each piece
		done     bool    // read and verified; pieces copied unless marked bad
		verify   bool
		// vec: every piece is whole blocks at a block-aligned place of p,
		// so the run is read straight into p (gaps into scratch), with no
		// bounce buffer and no copy.
		vec bool
	}
	var runs []*run
	last := map[*member]*run{}
	var slow []piece
	var locs [MaxMembers]Loc
	mirror := g.Level == Raid1
	pAligned := uintptrOf(p)%BlockSize == 0
	for i, pc := range ps {
		var m *member
		var loc Loc
		cands := g.DataLocs(pc.s, pc.d, locs[:0])
		if mirror && len(cands) > 1 {
			// Spread mirror reads: alternate members every readRunMax of
			// member data, so a large read keeps every copy busy.
			k := int(pc.s/max(1, readRunMax/g.Chunk)) % len(cands)
			cands = append(cands[k:], cands[:k]...)
		}
		for _, l := range cands {
			if mm := v.readable(l.Member, pc.s); mm != nil {
				m, loc = mm, l
				break
			}
		}
		if m == nil {
			slow = append(slow, pc)
			continue
		}
		at := loc.Off + pc.inChunk
		lo := at &^ (BlockSize - 1)
		hi := (at + pc.n + BlockSize - 1) &^ (BlockSize - 1)
		verify := a.checksums && !a.pendingAt(pc.s)
		vec := pAligned && lo == at && hi == at+pc.n && pc.bufOff%BlockSize == 0
		// Gaps of up to a chunk (the parity chunk between two data chunks of
		// a member) are read and discarded while the run is small: one larger
		// read beats two, until the extra bytes cost more than the extra I/O.
		if r := last[m]; r != nil && r.end <= lo && hi-r.off <= readRunMax && (lo == r.end || lo-r.end <= g.Chunk && r.end-r.off < 512<<10) && r.verify == verify {
			r.vec = r.vec && vec
			r.end = hi
			r.pieces = append(r.pieces, i)
			r.at = append(r.at, at)
			continue
		}
		r := &run{m: m, off: lo, end: hi, pieces: []int{i}, at: []int64{at}, verify: verify, vec: vec}
		runs = append(runs, r)
		last[m] = r
	}
	// Every run in parallel: members are often files on one disk, which
	// serves several requests at once better than one after the other.
	errs := parallel(len(runs), func(k int) error {
		r := runs[k]
		m := r.m
		var bounce, scratch []byte
		defer func() {
			if bounce != nil {
				freeBuf(bounce)
			}
			if scratch != nil {
				freeBuf(scratch)
			}
		}()
		// where returns the bytes read for piece x of the run.
		var where func(x int) []byte
		if r.vec {
			var iov [][]byte
			cur := r.off
			for x, i := range r.pieces {
				if gap := r.at[x] - cur; gap > 0 {
					if int64(len(scratch)) < gap {
						if scratch != nil {
							freeBuf(scratch)
						}
						scratch = alignedBuf(int(gap))
					}
					iov = append(iov, scratch[:gap])
				}
				pc := ps[i]
				iov = appendIOV(iov, p[pc.bufOff:pc.bufOff+pc.n])
				cur = r.at[x] + pc.n
			}
			if err := m.readv(iov, m.lay.DataOff+r.off); err != nil {
				return fmt.Errorf("read at %d: %w", r.off, err)
			}
			where = func(x int) []byte { pc := ps[r.pieces[x]]; return p[pc.bufOff : pc.bufOff+pc.n] }
		} else {
			bounce = alignedBuf(int(r.end - r.off))
			if _, err := m.dev.ReadAt(bounce, m.lay.DataOff+r.off); err != nil {
				return fmt.Errorf("read at %d: %w", r.off, err)
			}
			where = func(x int) []byte { at := r.at[x] - r.off; return bounce[at : at+ps[r.pieces[x]].n] }
		}
		var sums []uint32
		var valid []bool
		if r.verify && m.crc != nil {
			var err error
			if sums, valid, err = m.crc.getRange(r.off/BlockSize, int(r.end-r.off)/BlockSize); err != nil {
				return err
			}
		}
		for x, i := range r.pieces {
			pc := ps[i]
			at := r.at[x] - r.off
			if sums != nil {
				// Whole blocks: from the bounce buffer, which holds the
				// edges of unaligned pieces too; vec pieces are whole blocks.
				blk := func(b int64) []byte { return bounce[b : b+BlockSize] }
				if r.vec {
					got := where(x)
					blk = func(b int64) []byte { return got[b-at : b-at+BlockSize] }
				}
				for b := at &^ (BlockSize - 1); b < at+pc.n; b += BlockSize {
					if valid[b/BlockSize] && blockCRC(blk(b)) != sums[b/BlockSize] {
						ps[i].n = -pc.n // mark bad; restored below
						break
					}
				}
			}
			if ps[i].n > 0 && !r.vec {
				copy(p[pc.bufOff:pc.bufOff+pc.n], where(x))
			}
		}
		r.done = true
		return nil
	})
	for k, err := range errs {
		if err != nil {
			a.stats.readErrors.Add(1)
			a.memberFailed(runs[k].m, err)
		}
	}
	for _, r := range runs {
		for _, i := range r.pieces {
			if ps[i].n < 0 {
				ps[i].n = -ps[i].n
				slow = append(slow, ps[i])
			} else if !r.done {
				slow = append(slow, ps[i])
			}
		}
	}
	return slow, nil
}

// readSlow serves pieces through readRows, stripe by stripe. Without
// repair, pieces whose stripe needs a repair are returned for a retry under
// an exclusive lock.
func (a *Array) readSlow(p []byte, ps []piece, repair bool) ([]piece, error) {
	v, err := a.view()
	if err != nil {
		return nil, err
	}
	var again []piece
	for _, pc := range ps {
		lo := pc.inChunk &^ (BlockSize - 1)
		hi := (pc.inChunk + pc.n + BlockSize - 1) &^ (BlockSize - 1)
		sr, err := a.readRows(v, pc.s, lo, hi, false, repair)
		if errors.Is(err, errNeedsRepair) {
			again = append(again, pc)
			continue
		}
		if err != nil {
			return nil, err
		}
		copy(p[pc.bufOff:pc.bufOff+pc.n], sr.data[pc.d][pc.inChunk-lo:])
		sr.free()
	}
	return again, nil
}

// stripePlan is one stripe's part of a write.
type stripePlan struct {
	s      int64
	lo, hi int64 // block-aligned rows covering every piece (bytes in chunk)
	pieces []piece
	full   bool // every data chunk entirely overwritten
}

// WriteAt writes to the array: into the write-behind queue when it has
// one (see writeBehind), else at once.
func (a *Array) WriteAt(p []byte, off int64) (int, error) {
	if err := a.checkIO(off, int64(len(p))); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if a.ra != nil {
		// Before and after: a window read while the write was on its way
		// (another goroutine reading ahead) must not be served either.
		a.ra.invalidate(off, int64(len(p)))
		defer a.ra.invalidate(off, int64(len(p)))
	}
	if a.wb != nil {
		queued, err := a.wb.write(p, off)
		if err != nil {
			return 0, err
		}
		if queued {
			return len(p), nil
		}
		if err := a.wb.drain(); err != nil {
			return 0, err
		}
	}
	return a.writeSync(p, off, nil)
}

// writeSync writes at once. Full stripes are written with parity computed
// from the new data alone; partial stripes read what they need, log the new
// blocks to the journal (RAID 5/6) and then write in place. sums, when not
// nil, are the checksums of p's blocks (off is then block aligned).
func (a *Array) writeSync(p []byte, off int64, sums []uint32) (int, error) {
	g := a.geo
	ps := g.pieces(off, int64(len(p)))
	s0, s1 := ps[0].s, ps[len(ps)-1].s+1
	h := a.locks.lock(s0, s1, true)
	defer a.locks.unlock(h)
	a.beginWrite(s0, s1)
	defer a.endWrite(s0, s1)
	var plans []*stripePlan
	for _, pc := range ps {
		if len(plans) == 0 || plans[len(plans)-1].s != pc.s {
			plans = append(plans, &stripePlan{s: pc.s, lo: g.Chunk})
		}
		sp := plans[len(plans)-1]
		sp.pieces = append(sp.pieces, pc)
		sp.lo = min(sp.lo, pc.inChunk&^(BlockSize-1))
		sp.hi = max(sp.hi, (pc.inChunk+pc.n+BlockSize-1)&^(BlockSize-1))
	}
	for _, sp := range plans {
		covered := int64(0)
		for _, pc := range sp.pieces {
			covered += pc.n
		}
		sp.full = covered == g.StripeBytes()
	}
	if a.jr != nil {
		for _, sp := range plans {
			if sp.full && a.jr.isLive(sp.s) {
				a.checkpointJournal()
				break
			}
		}
	}
	v, err := a.view()
	if err != nil {
		return 0, err
	}
	var ws []memberWrite
	var jts []journalTarget
	var bufs [][]byte
	defer func() {
		for _, b := range bufs {
			freeBuf(b)
		}
	}()
	k := g.DataChunks()
	var locs [MaxMembers]Loc
	plans, ws, bufs = a.planFullRun(v, p, sums, plans, ws, bufs)
	for _, sp := range plans {
		rows := sp.hi - sp.lo
		// The content of every data chunk over [lo, hi): new bytes over old.
		data := make([][]byte, k)
		touched := make([]bool, k)
		aligned := true
		for _, pc := range sp.pieces {
			touched[pc.d] = true
			aligned = aligned && pc.inChunk == sp.lo && pc.n == rows
		}
		needOld := !sp.full && (g.ParityChunks() > 0 || !aligned)
		var old *stripeRows
		if needOld {
			old, err = a.readRows(v, sp.s, sp.lo, sp.hi, false, true)
			if err != nil {
				return 0, err
			}
			for d := range data {
				data[d] = old.data[d]
			}
			defer old.free()
		} else {
			for d := range data {
				data[d] = alignedBuf(int(rows))
				bufs = append(bufs, data[d])
			}
		}
		for _, pc := range sp.pieces {
			copy(data[pc.d][pc.inChunk-sp.lo:], p[pc.bufOff:pc.bufOff+pc.n])
		}
		for d := 0; d < k; d++ {
			if !touched[d] {
				continue
			}
			for _, l := range g.DataLocs(sp.s, d, locs[:0]) {
				for _, m := range v.writable(l.Member, nil) {
					ws = append(ws, memberWrite{m: m, off: l.Off + sp.lo, buf: data[d]})
				}
			}
		}
		if g.ParityChunks() == 0 {
			continue
		}
		pbuf := alignedBuf(int(rows))
		bufs = append(bufs, pbuf)
		var qbuf []byte
		if g.ParityChunks() == 2 {
			qbuf = alignedBuf(int(rows))
			bufs = append(bufs, qbuf)
		}
		genParity(data, pbuf, qbuf)
		pm, qm := g.ParityMembers(sp.s)
		var parityMembers []*member
		for _, pq := range []struct {
			slot int
			buf  []byte
		}{{pm, pbuf}, {qm, qbuf}} {
			if pq.slot < 0 {
				continue
			}
			for _, m := range v.writable(pq.slot, nil) {
				ws = append(ws, memberWrite{m: m, off: sp.s*g.Chunk + sp.lo, buf: pq.buf})
				parityMembers = append(parityMembers, m)
			}
		}
		if !sp.full && len(parityMembers) > 0 {
			e := &journalEntry{Stripe: sp.s, RowLo: sp.lo / BlockSize, RowHi: sp.hi / BlockSize}
			for d := 0; d < k; d++ {
				if touched[d] {
					e.Slots |= 1 << d
					e.Payload = append(e.Payload, data[d]...)
				}
			}
			e.Slots |= 1 << k
			e.Payload = append(e.Payload, pbuf...)
			if qbuf != nil {
				e.Slots |= 1 << (k + 1)
				e.Payload = append(e.Payload, qbuf...)
			}
			jts = append(jts, journalTarget{e, parityMembers})
		}
	}
	var seqs []uint64
	if len(jts) > 0 {
		seqs = a.logEntries(jts)
		defer a.entriesDone(seqs)
	}
	if err := a.issueWrites(ws); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush makes every write acknowledged before it durable on every member:
// dirty checksum pages are written and all members synced. It also advances
// the journal checkpoint and clears idle bitmap bits.
func (a *Array) Flush() error {
	if a.wb != nil {
		if err := a.wb.drainForFlush(); err != nil {
			return err
		}
	}
	a.flushMu.Lock()
	defer a.flushMu.Unlock()
	start := a.opts.Clock.Now()
	a.mu.RLock()
	if a.closed {
		a.mu.RUnlock()
		return ErrClosed
	}
	ms := a.liveMembersLocked()
	a.mu.RUnlock()
	var applied, prev uint64
	if a.jr != nil {
		a.jr.mu.Lock()
		applied, prev = a.jr.appliedLocked(), a.jr.written
		a.jr.mu.Unlock()
	}
	errs := parallel(len(ms), func(i int) error {
		if ms[i].crc != nil {
			if err := ms[i].crc.flush(); err != nil {
				return err
			}
		}
		if err := ms[i].dev.Flush(); err != nil {
			return ms[i].errorf("flush: %w", err)
		}
		return nil
	})
	for i, err := range errs {
		if err != nil {
			a.memberFailed(ms[i], err)
		}
	}
	a.mu.RLock()
	failed := a.failed
	a.mu.RUnlock()
	if failed {
		return ErrFailed
	}
	if a.jr != nil {
		a.jr.mu.Lock()
		a.jr.dropDurableLocked(prev)
		a.jr.mu.Unlock()
		if applied > prev {
			a.writeCheckpoint(ms, applied)
			a.jr.mu.Lock()
			a.jr.written = max(a.jr.written, applied)
			a.jr.mu.Unlock()
		}
	}
	a.clearIdleBits(start, false)
	return nil
}

// Close flushes, stops background work, marks the array clean and releases
// the members (it closes their devices).
func (a *Array) Close() error {
	a.jobs.close()
	if a.metrics != nil {
		a.opts.Registerer.Unregister(a.metrics)
	}
	ferr := a.Flush()
	if a.wb != nil {
		a.wb.stop()
	}
	if a.ra != nil {
		a.ra.stop()
	}
	if ferr == nil {
		a.clearIdleBits(a.opts.Clock.Now().Add(1), true)
		if a.jr != nil {
			// Everything is in place and synced: nothing is left to replay.
			a.mu.RLock()
			ms := a.liveMembersLocked()
			a.mu.RUnlock()
			a.jr.mu.Lock()
			seq := a.jr.seq
			a.jr.mu.Unlock()
			a.writeCheckpoint(ms, seq)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	if ferr == nil && !a.failed {
		a.clean = a.resync.Load() == nil
		ferr = a.writeSuperblocksLocked(false)
	}
	a.closed = true
	var errs []error
	if ferr != nil {
		errs = append(errs, ferr)
	}
	for _, list := range [][]*member{a.slots, a.repl, a.spares, a.faulty} {
		for _, m := range list {
			if m != nil {
				if err := m.dev.Close(); err != nil {
					errs = append(errs, m.errorf("close: %w", err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// planFullRun handles the longest run of consecutive full stripes of a
// write: the data chunks are not
// copied at all (each member write is a slice of p, unless p is not
// block aligned), parity is computed into buffers of its own, and
// issueWrites gives each member one vectored write. It returns the plans
// left for the general path.
func (a *Array) planFullRun(v *view, p []byte, sums []uint32, plans []*stripePlan, ws []memberWrite, bufs [][]byte) ([]*stripePlan, []memberWrite, [][]byte) {
	g := a.geo
	i0, i1 := 0, 0 // the longest run of full plans: plans[i0:i1]
	for i := 0; i < len(plans); {
		j := i
		for j < len(plans) && plans[j].full {
			j++
		}
		if j-i > i1-i0 {
			i0, i1 = i, j
		}
		i = max(j, i+1)
	}
	if i1-i0 < 2 {
		return plans, ws, bufs
	}
	run := plans[i0:i1]
	f0, n := run[0].s, int64(len(run))
	chunk := g.Chunk
	if g.Level == Raid1 {
		// Every member gets the caller's bytes as they are: no copy at all
		// when the caller's buffer is aligned.
		src := p[run[0].pieces[0].bufOff:][:n*chunk]
		buf := src
		if uintptrOf(src)%BlockSize != 0 {
			buf = alignedBuf(int(n * chunk))
			bufs = append(bufs, buf)
			copy(buf, src)
		}
		var bs []uint32
		if sums != nil {
			b0 := run[0].pieces[0].bufOff / BlockSize
			bs = sums[b0 : b0+n*chunk/BlockSize]
		}
		for i := 0; i < g.Members; i++ {
			for _, m := range v.writable(i, nil) {
				ws = append(ws, memberWrite{m: m, off: f0 * chunk, buf: buf, sums: bs})
			}
		}
	} else {
		// Each chunk goes out as a slice of the caller's buffer; issueWrites
		// turns a member's chunks into one vectored write. Only parity gets
		// buffers of its own.
		base := run[0].pieces[0].bufOff
		src := p[base : base+n*g.StripeBytes()]
		if uintptrOf(src)%BlockSize != 0 {
			src = alignedBuf(len(src))
			bufs = append(bufs, src)
			copy(src, p[base:])
		}
		var pbuf, qbuf []byte
		if g.ParityChunks() > 0 {
			pbuf = alignedBuf(int(n * chunk))
			bufs = append(bufs, pbuf)
		}
		if g.ParityChunks() == 2 {
			qbuf = alignedBuf(int(n * chunk))
			bufs = append(bufs, qbuf)
		}
		var locs [MaxMembers]Loc
		data := make([][]byte, g.DataChunks())
		for x, sp := range run {
			for _, pc := range sp.pieces {
				data[pc.d] = src[pc.bufOff-base : pc.bufOff-base+chunk]
				var ds []uint32
				if sums != nil {
					ds = sums[pc.bufOff/BlockSize : (pc.bufOff+chunk)/BlockSize]
				}
				for _, l := range g.DataLocs(sp.s, pc.d, locs[:0]) { // RAID 10: both copies
					for _, m := range v.writable(l.Member, nil) {
						ws = append(ws, memberWrite{m: m, off: l.Off, buf: data[pc.d], sums: ds})
					}
				}
			}
			pm, qm := g.ParityMembers(sp.s)
			if pm < 0 {
				continue
			}
			o := int64(x) * chunk
			var q []byte
			if qm >= 0 {
				q = qbuf[o : o+chunk]
			}
			genParity(data, pbuf[o:o+chunk], q)
			// Parity is checksummed now, while it is still in the cache.
			var ps, qs []uint32
			if a.checksums {
				ps = appendBlockCRCs(nil, pbuf[o:o+chunk])
				if q != nil {
					qs = appendBlockCRCs(nil, q)
				}
			}
			for _, m := range v.writable(pm, nil) {
				ws = append(ws, memberWrite{m: m, off: sp.s * chunk, buf: pbuf[o : o+chunk], sums: ps})
			}
			if qm >= 0 {
				for _, m := range v.writable(qm, nil) {
					ws = append(ws, memberWrite{m: m, off: sp.s * chunk, buf: q, sums: qs})
				}
			}
		}
	}
	rest := append(append([]*stripePlan(nil), plans[:i0]...), plans[i1:]...)
	return rest, ws, bufs
}
