package raid

import (
	"errors"
	"fmt"

	"tandem/internal/events"
)

// stripeRows is one stripe's content over rows [lo, hi) (byte offsets within
// the chunk, block aligned) of each chunk.
type stripeRows struct {
	s, lo, hi int64
	data      [][]byte
	p, q      []byte
}

func (sr *stripeRows) free() {
	for _, d := range sr.data {
		freeBuf(d)
	}
	if sr.p != nil {
		freeBuf(sr.p)
	}
	if sr.q != nil {
		freeBuf(sr.q)
	}
}

// errNeedsRepair tells a reader holding a shared lock to retry exclusively.
var errNeedsRepair = errors.New("raid: stripe needs repair")

// ErrUnrecoverable is returned for blocks no copy or parity can restore.
var ErrUnrecoverable = errors.New("raid: data unrecoverable")

// chunkRead is what was read of one chunk (data copy, P or Q).
type chunkRead struct {
	m   *member
	loc Loc
	buf []byte
	bad []bool // per row block: checksum mismatch
}

// readChunk reads rows [lo,hi) of loc from m and verifies them. An I/O
// error fails the member and returns nil.
func (a *Array) readChunk(m *member, loc Loc, lo, hi int64, verify bool) *chunkRead {
	buf := alignedBuf(int(hi - lo))
	if _, err := m.dev.ReadAt(buf, m.lay.DataOff+loc.Off+lo); err != nil {
		freeBuf(buf)
		a.stats.readErrors.Add(1)
		a.memberFailed(m, fmt.Errorf("read at %d: %w", loc.Off+lo, err))
		return nil
	}
	cr := &chunkRead{m: m, loc: loc, buf: buf, bad: make([]bool, (hi-lo)/BlockSize)}
	if verify && m.crc != nil {
		sums, valid, err := m.crc.getRange((loc.Off+lo)/BlockSize, len(cr.bad))
		if err != nil {
			freeBuf(buf)
			a.memberFailed(m, err)
			return nil
		}
		for i := range cr.bad {
			cr.bad[i] = valid[i] && blockCRC(buf[i*BlockSize:(i+1)*BlockSize]) != sums[i]
		}
	}
	return cr
}

func anyBad(b []bool) bool {
	for _, x := range b {
		if x {
			return true
		}
	}
	return false
}

// repairBlock rewrites one bad block with content now known right.
type repairBlock struct {
	m      *member
	off    int64 // data-area offset
	buf    []byte
	d, row int // with buf nil: take row of rebuilt data chunk d
}

// readRows returns the data (and with wantParity, P and Q) of stripe s over
// rows [lo, hi), trusting only blocks whose checksums match and rebuilding
// the rest from copies or parity. Blocks found bad are rewritten when repair
// is set (the caller holds the stripe exclusively); otherwise the call fails
// with errNeedsRepair.
func (a *Array) readRows(v *view, s, lo, hi int64, wantParity, repair bool) (*stripeRows, error) {
	g := a.geo
	k := g.DataChunks()
	rows := int((hi - lo) / BlockSize)
	verify := a.checksums && !a.pendingAt(s)
	sr := &stripeRows{s: s, lo: lo, hi: hi, data: make([][]byte, k)}
	var repairs []repairBlock
	lostRow := make([][]bool, k) // per data chunk, rows still unknown
	var locs [MaxMembers]Loc
	for d := 0; d < k; d++ {
		lostRow[d] = make([]bool, rows)
		for i := range lostRow[d] {
			lostRow[d][i] = true
		}
		var reads []*chunkRead
		for _, loc := range g.DataLocs(s, d, locs[:0]) {
			m := v.readable(loc.Member, s)
			if m == nil {
				continue
			}
			cr := a.readChunk(m, loc, lo, hi, verify)
			if cr == nil {
				continue
			}
			reads = append(reads, cr)
			if sr.data[d] == nil {
				sr.data[d] = alignedBuf(int(hi - lo))
			}
			for r := 0; r < rows; r++ {
				if lostRow[d][r] && !cr.bad[r] {
					copy(sr.data[d][r*BlockSize:(r+1)*BlockSize], cr.buf[r*BlockSize:])
					lostRow[d][r] = false
				}
			}
			if !anyBad(lostRow[d]) {
				break
			}
		}
		// Copies that were read bad where another copy was good get the good rows.
		for _, cr := range reads {
			for r := 0; r < rows; r++ {
				if cr.bad[r] && !lostRow[d][r] {
					repairs = append(repairs, repairBlock{m: cr.m, off: cr.loc.Off + lo + int64(r)*BlockSize, buf: sr.data[d][r*BlockSize : (r+1)*BlockSize]})
				}
			}
			if g.ParityChunks() > 0 && anyBad(cr.bad) {
				// Parity levels have one copy: bad rows are rebuilt below and
				// written back to this member.
				for r := 0; r < rows; r++ {
					if cr.bad[r] {
						repairs = append(repairs, repairBlock{m: cr.m, off: cr.loc.Off + lo + int64(r)*BlockSize, d: d, row: r})
					}
				}
			}
			defer freeBuf(cr.buf)
		}
		if sr.data[d] == nil {
			sr.data[d] = alignedBuf(int(hi - lo))
		}
	}
	needParity := false
	for d := 0; d < k; d++ {
		needParity = needParity || anyBad(lostRow[d])
	}
	if needParity && g.ParityChunks() == 0 {
		sr.free()
		return nil, fmt.Errorf("%w: stripe %d: no readable copy", ErrUnrecoverable, s)
	}
	var pRead, qRead *chunkRead
	if needParity || wantParity && g.ParityChunks() > 0 {
		pm, qm := g.ParityMembers(s)
		if m := v.readable(pm, s); m != nil {
			pRead = a.readChunk(m, Loc{pm, s * g.Chunk}, lo, hi, verify)
		}
		if qm >= 0 {
			if m := v.readable(qm, s); m != nil {
				qRead = a.readChunk(m, Loc{qm, s * g.Chunk}, lo, hi, verify)
			}
		}
	}
	if needParity {
		if err := a.rebuildRows(sr, lostRow, pRead, qRead); err != nil {
			sr.free()
			return nil, err
		}
	}
	for i := range repairs {
		if rb := &repairs[i]; rb.buf == nil {
			rb.buf = sr.data[rb.d][rb.row*BlockSize : (rb.row+1)*BlockSize]
		}
	}
	if wantParity && g.ParityChunks() > 0 {
		sr.p = alignedBuf(int(hi - lo))
		if g.ParityChunks() == 2 {
			sr.q = alignedBuf(int(hi - lo))
		}
		genParity(sr.data, sr.p, sr.q)
		// Parity blocks that failed their checksum are rewritten too.
		for _, pr := range []*chunkRead{pRead, qRead} {
			if pr == nil {
				continue
			}
			src := sr.p
			if pr == qRead {
				src = sr.q
			}
			for r, bad := range pr.bad {
				if bad {
					repairs = append(repairs, repairBlock{m: pr.m, off: pr.loc.Off + lo + int64(r)*BlockSize, buf: src[r*BlockSize : (r+1)*BlockSize]})
				}
			}
		}
	}
	for _, pr := range []*chunkRead{pRead, qRead} {
		if pr != nil {
			freeBuf(pr.buf)
		}
	}
	if len(repairs) > 0 {
		if !repair {
			sr.free()
			return nil, errNeedsRepair
		}
		a.writeRepairs(s, repairs)
	}
	return sr, nil
}

// rebuildRows fills the lost rows of sr.data from parity, row by row, each
// row with its own set of lost blocks (consecutive rows with the same set
// are done in one call).
func (a *Array) rebuildRows(sr *stripeRows, lostRow [][]bool, pRead, qRead *chunkRead) error {
	g := a.geo
	k := len(sr.data)
	rows := int((sr.hi - sr.lo) / BlockSize)
	hasQ := g.ParityChunks() == 2
	lostSet := func(r int) (set []int) {
		for d := 0; d < k; d++ {
			if lostRow[d][r] {
				set = append(set, d)
			}
		}
		if pRead == nil || pRead.bad[r] {
			set = append(set, k)
		}
		if hasQ && (qRead == nil || qRead.bad[r]) {
			set = append(set, k+1)
		}
		return set
	}
	same := func(x, y []int) bool {
		if len(x) != len(y) {
			return false
		}
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	scratchP := alignedBuf(int(sr.hi - sr.lo))
	defer freeBuf(scratchP)
	var scratchQ []byte
	if hasQ {
		scratchQ = alignedBuf(int(sr.hi - sr.lo))
		defer freeBuf(scratchQ)
	}
	if pRead != nil {
		copy(scratchP, pRead.buf)
	}
	if qRead != nil {
		copy(scratchQ, qRead.buf)
	}
	for r0 := 0; r0 < rows; {
		set := lostSet(r0)
		r1 := r0 + 1
		for r1 < rows && same(lostSet(r1), set) {
			r1++
		}
		hasData := len(set) > 0 && set[0] < k
		if hasData {
			b0, b1 := r0*BlockSize, r1*BlockSize
			data := make([][]byte, k)
			for d := range data {
				data[d] = sr.data[d][b0:b1]
			}
			var q []byte
			if hasQ {
				q = scratchQ[b0:b1]
			}
			if err := reconstruct(data, scratchP[b0:b1], q, set); err != nil {
				return fmt.Errorf("%w: stripe %d rows %d-%d: %d blocks lost", ErrUnrecoverable, sr.s, r0, r1, len(set))
			}
		}
		r0 = r1
	}
	return nil
}

// writeRepairs rewrites blocks found bad, after checking the rebuilt content
// against the stored checksum, and records them.
func (a *Array) writeRepairs(s int64, rs []repairBlock) {
	for _, rb := range rs {
		buf := alignedBuf(BlockSize)
		copy(buf, rb.buf)
		if rb.m.crc != nil {
			if sums, valid, err := rb.m.crc.getRange(rb.off/BlockSize, 1); err == nil && valid[0] && sums[0] != blockCRC(buf) {
				// The stored checksum matches neither the medium nor the
				// redundancy: the redundancy wins, the table is corrected.
				a.log.Warn("raid: checksum entry disagrees with rebuilt block; trusting redundancy", "array", a.name, "member", rb.m.name, "offset", rb.off)
			}
			rb.m.crc.set(rb.off, buf)
		}
		_, err := rb.m.dev.WriteAt(buf, rb.m.lay.DataOff+rb.off)
		freeBuf(buf)
		if err != nil {
			a.memberFailed(rb.m, fmt.Errorf("repair write at %d: %w", rb.off, err))
			continue
		}
		a.stats.repaired.Add(1)
		a.log.Warn("raid: repaired block", "array", a.name, "member", rb.m.name, "offset", rb.off, "stripe", s)
		a.emit(events.RaidChecksumRepaired, fmt.Sprintf("member %s block at %d rewritten from redundancy", rb.m.name, rb.off),
			map[string]any{"member": rb.m.name, "offset": rb.off, "stripe": s})
	}
}
