package raid

import (
	"encoding/binary"
	"hash/crc32"
	"sync"
)

// crcTable is a member's per-block CRC-32C table, loaded page by page on
// first use and written back (A/B pages) by Flush. A page that fails its own
// checksum is rebuilt from the data it describes (and logged): the table
// protects data, the data does not depend on the table.
type crcTable struct {
	m     *member
	seed  UUID
	mu    sync.Mutex
	pages map[int64]*crcPage
}

type crcPage struct {
	seq   uint64
	sums  [crcsPerPage]uint32
	valid bool   // read from disk, or every entry computed since
	known bitset // while !valid: which entries have been computed
	dirty bool
}

var crcKind = [4]byte{'T', 'R', 'C', 'S'}

func blockCRC(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// appendBlockCRCs appends the checksum of every whole block of b.
func appendBlockCRCs(sums []uint32, b []byte) []uint32 {
	for i := 0; i+BlockSize <= len(b); i += BlockSize {
		sums = append(sums, blockCRC(b[i:i+BlockSize]))
	}
	return sums
}

// page returns page p, loading it; the caller holds t.mu.
func (t *crcTable) page(p int64) (*crcPage, error) {
	if pg := t.pages[p]; pg != nil {
		return pg, nil
	}
	buf := alignedBuf(2 * BlockSize)
	defer freeBuf(buf)
	off := t.m.lay.CRCOff + 2*p*BlockSize
	if _, err := t.m.dev.ReadAt(buf, off); err != nil {
		return nil, t.m.errorf("read checksum page %d: %w", p, err)
	}
	pg := &crcPage{}
	if seq, payload, ok := pickPage(buf[:BlockSize], buf[BlockSize:], t.seed, crcKind, uint32(p)); ok {
		pg.seq, pg.valid = seq, true
		for i := range pg.sums {
			pg.sums[i] = binary.LittleEndian.Uint32(payload[4*i:])
		}
	} else {
		// Unknown until every entry has been computed; entries outside the
		// data area never will be, so they count as known.
		pg.known = newBitset(crcsPerPage)
		lo, hi := t.firstBlock(), t.firstBlock()+t.m.lay.MemberData/BlockSize
		for i := int64(0); i < crcsPerPage; i++ {
			if b := p*crcsPerPage + i; b < lo || b >= hi {
				pg.known.set(i)
			}
		}
	}
	t.pages[p] = pg
	return pg, nil
}

// get returns the stored checksum of data-area block b; ok is false when the
// page holding it is not valid (never written, or torn and lost).
func (t *crcTable) get(b int64) (sum uint32, ok bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pg, err := t.page((b + t.firstBlock()) / crcsPerPage)
	if err != nil {
		return 0, false, err
	}
	i := (b + t.firstBlock()) % crcsPerPage
	return pg.sums[i], pg.valid, nil
}

// firstBlock is the block number of the data area on the member: the table
// covers the whole member so its size never depends on the data offset.
func (t *crcTable) firstBlock() int64 { return t.m.lay.DataOff / BlockSize }

// set records the checksums of the blocks of data, written at data-area
// offset off.
func (t *crcTable) set(off int64, data []byte) error {
	sums := make([]uint32, len(data)/BlockSize)
	for i := range sums {
		sums[i] = blockCRC(data[i*BlockSize : (i+1)*BlockSize])
	}
	return t.setSums(off/BlockSize, sums)
}

func (t *crcTable) setSums(first int64, sums []uint32) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := 0; i < len(sums); {
		b := first + int64(i) + t.firstBlock()
		pg, err := t.page(b / crcsPerPage)
		if err != nil {
			return err
		}
		for j := b % crcsPerPage; j < crcsPerPage && i < len(sums); j, i = j+1, i+1 {
			pg.sums[j] = sums[i]
			if !pg.valid {
				pg.known.set(j)
			}
		}
		pg.dirty = true
		if !pg.valid && pg.known.count() == crcsPerPage {
			pg.valid, pg.known = true, nil
		}
	}
	return nil
}

// forget makes the page holding data-area block b unknown again (its copy
// on disk failed its checksum, or a resync will recompute it).
func (t *crcTable) forget(b int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.pages, (b+t.firstBlock())/crcsPerPage)
}

// flush writes the dirty pages (not synced: the caller syncs the device).
func (t *crcTable) flush() error {
	t.mu.Lock()
	type w struct {
		p, seq int64
		buf    []byte
	}
	var ws []w
	for p, pg := range t.pages {
		if !pg.dirty || !pg.valid {
			continue
		}
		pg.seq++
		payload := make([]byte, pagePayload)
		for i, s := range pg.sums {
			binary.LittleEndian.PutUint32(payload[4*i:], s)
		}
		buf := alignedBuf(BlockSize)
		encodePage(buf, t.seed, crcKind, uint32(p), pg.seq, payload)
		ws = append(ws, w{p, int64(pg.seq), buf})
		pg.dirty = false
	}
	t.mu.Unlock()
	var first error
	for _, w := range ws {
		off := t.m.lay.CRCOff + (2*w.p+pageSlot(uint64(w.seq)))*BlockSize
		if _, err := t.m.dev.WriteAt(w.buf, off); err != nil && first == nil {
			first = t.m.errorf("write checksum page %d: %w", w.p, err)
		}
		freeBuf(w.buf)
	}
	return first
}

// getRange returns the checksums of n data-area blocks from b; valid[i] is
// false where the page is unknown (nothing to verify against).
func (t *crcTable) getRange(b int64, n int) (sums []uint32, valid []bool, err error) {
	sums, valid = make([]uint32, n), make([]bool, n)
	t.mu.Lock()
	defer t.mu.Unlock()
	fb := t.firstBlock()
	for i := 0; i < n; i++ {
		x := b + int64(i) + fb
		pg, err := t.page(x / crcsPerPage)
		if err != nil {
			return nil, nil, err
		}
		sums[i] = pg.sums[x%crcsPerPage]
		valid[i] = pg.valid || pg.known.has(x%crcsPerPage)
	}
	return sums, valid, nil
}
