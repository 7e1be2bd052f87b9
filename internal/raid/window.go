package raid

import (
	"errors"
	"fmt"
	"sort"
)

// window is the content of stripes [s0, s1) as read from every member in
// one sequential I/O each, for the levels whose stripe s sits at row s of
// every member (0, 1, 5, 6). Rebuild, resync and check use it; stripes with
// a problem fall back to readRows.
type window struct {
	s0, s1 int64
	chunk  int64
	bufs   []([]byte) // per slot; nil when not read
	src    []*member
	bad    [][]bool // per slot, per stripe: a block failed its checksum
	// sums are the stored checksums of what was read, per slot and block,
	// and sumsOK whether each is known (verify only).
	sums   [][]uint32
	sumsOK [][]bool
}

func (a *Array) rowAligned() bool { return a.geo.Level != Raid10 }

// readWindow reads stripes [s0,s1) from the members of every slot for
// which use returns a member (nil skips the slot).
func (a *Array) readWindow(s0, s1 int64, use func(slot int) *member, verify bool) *window {
	g := a.geo
	w := &window{s0: s0, s1: s1, chunk: g.Chunk, bufs: make([][]byte, g.Members), src: make([]*member, g.Members), bad: make([][]bool, g.Members),
		sums: make([][]uint32, g.Members), sumsOK: make([][]bool, g.Members)}
	for i := range w.src {
		w.src[i] = use(i)
	}
	n := int((s1 - s0) * g.Chunk)
	parallel(g.Members, func(i int) error {
		m := w.src[i]
		if m == nil {
			return nil
		}
		buf := alignedBuf(n)
		if _, err := m.dev.ReadAt(buf, m.lay.DataOff+s0*g.Chunk); err != nil {
			freeBuf(buf)
			w.src[i] = nil
			a.stats.readErrors.Add(1)
			a.memberFailed(m, fmt.Errorf("read at %d: %w", s0*g.Chunk, err))
			return nil
		}
		w.bufs[i] = buf
		w.bad[i] = make([]bool, s1-s0)
		if verify && m.crc != nil {
			blocks := n / BlockSize
			sums, valid, err := m.crc.getRange(s0*g.Chunk/BlockSize, blocks)
			if err != nil {
				return nil
			}
			w.sums[i], w.sumsOK[i] = sums, valid
			perChunk := int(g.Chunk / BlockSize)
			for b := 0; b < blocks; b++ {
				if valid[b] && blockCRC(buf[b*BlockSize:(b+1)*BlockSize]) != sums[b] {
					w.bad[i][b/perChunk] = true
				}
			}
		}
		return nil
	})
	return w
}

// at returns slot i's chunk of stripe s, or nil if it was not read or is bad.
func (w *window) at(i int, s int64) []byte {
	if w.bufs[i] == nil || w.bad[i][s-w.s0] {
		return nil
	}
	o := (s - w.s0) * w.chunk
	return w.bufs[i][o : o+w.chunk]
}

// sumsAt returns the checksums of slot i's chunk of stripe s when every
// one is known, else nil.
func (w *window) sumsAt(i int, s int64) []uint32 {
	if w.sums[i] == nil {
		return nil
	}
	per := int(w.chunk / BlockSize)
	o := int(s-w.s0) * per
	for _, ok := range w.sumsOK[i][o : o+per] {
		if !ok {
			return nil
		}
	}
	return w.sums[i][o : o+per]
}

func (w *window) free() {
	for _, b := range w.bufs {
		if b != nil {
			freeBuf(b)
		}
	}
}

// memberWrite is one write to a member's data area (buf aligned).
type memberWrite struct {
	m   *member
	off int64
	buf []byte
	// sums are buf's block checksums when the caller has them already
	// (computed while the data was hot in the cache); nil: computed here.
	sums []uint32
}

// issueWrites merges contiguous writes per member, records their
// checksums, writes them in parallel and fails members whose write fails.
// It returns ErrFailed if the array did not survive.
func (a *Array) issueWrites(ws []memberWrite) error {
	if len(ws) == 0 {
		return nil
	}
	sort.SliceStable(ws, func(i, j int) bool {
		if ws[i].m != ws[j].m {
			return ws[i].m.id < ws[j].m.id
		}
		return ws[i].off < ws[j].off
	})
	type run struct{ i, j int } // ws[i:j] are contiguous on one member
	var runs []run
	for i := 0; i < len(ws); {
		j := i + 1
		end := ws[i].off + int64(len(ws[i].buf))
		for j < len(ws) && ws[j].m == ws[i].m && ws[j].off == end {
			end += int64(len(ws[j].buf))
			j++
		}
		runs = append(runs, run{i, j})
		i = j
	}
	// Each run checksums and writes in its own goroutine, so the CRC work is
	// spread over the cores too. A run's buffers go to the member as one
	// vectored write: no gathering copy.
	errs := parallel(len(runs), func(k int) error {
		r := runs[k]
		m := ws[r.i].m
		iov := make([][]byte, 0, r.j-r.i)
		for _, w := range ws[r.i:r.j] {
			iov = appendIOV(iov, w.buf)
		}
		if m.crc != nil {
			sums := make([]uint32, 0, vectorLen(iov)/BlockSize)
			for _, w := range ws[r.i:r.j] {
				if w.sums != nil {
					sums = append(sums, w.sums...)
				} else {
					sums = appendBlockCRCs(sums, w.buf)
				}
			}
			if err := m.crc.setSums(ws[r.i].off/BlockSize, sums); err != nil {
				return err
			}
		}
		if m.failed.Load() {
			return nil
		}
		if err := m.writev(iov, m.lay.DataOff+ws[r.i].off); err != nil {
			return fmt.Errorf("write at %d: %w", ws[r.i].off, err)
		}
		return nil
	})
	for k, err := range errs {
		if err != nil {
			a.memberFailed(ws[runs[k].i].m, err)
		}
	}
	a.mu.RLock()
	failed := a.failed
	a.mu.RUnlock()
	if failed {
		return ErrFailed
	}
	return nil
}

var errStopped = errors.New("raid: job stopped")
