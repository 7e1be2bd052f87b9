package raid

import (
	"encoding/binary"
	"hash/crc32"
	"math/bits"
	"sync"
)

// The write-hole journal (RAID 5/6). A write that updates only part of a
// stripe first logs the new contents of every block it will change — data
// and parity, for the rows it touches — to the journal ring of the stripe's
// parity members, syncs them, and only then writes in place. If a crash
// interrupts the in-place writes, assembly replays the entry, so data and
// parity agree again even when a member is missing: blocks the write did not
// touch are rebuilt from consistent parity. Full-stripe writes are not
// logged (every block of the stripe is theirs) unless the stripe has a live
// entry, which replay would otherwise roll back over them.
//
// Layout of a member's journal area: two checkpoint pages (A/B metapages
// holding the highest sequence known applied and durable), then the ring.
// Every entry starts on a block: a header block, then the payload blocks.
//
//	0  magic "TRJE"
//	8  seq      uint64
//	16 stripe   uint64
//	24 rowLo    uint32 (blocks within the chunk)
//	28 rowHi    uint32
//	32 slots    uint64 (bit d: data chunk d; bit k: P; bit k+1: Q)
//	40 blocks   uint32 (payload blocks)
//	44 payload  crc32c
//	4092 header crc32c seeded with the array UUID

var (
	journalMagic   = [4]byte{'T', 'R', 'J', 'E'}
	checkpointKind = [4]byte{'T', 'R', 'J', 'C'}
)

type journalEntry struct {
	Seq          uint64
	Stripe       int64
	RowLo, RowHi int64 // blocks
	Slots        uint64
	Payload      []byte // len = popcount(Slots) * (RowHi-RowLo) * BlockSize
}

func (e *journalEntry) rows() int64   { return e.RowHi - e.RowLo }
func (e *journalEntry) blocks() int64 { return 1 + int64(bits.OnesCount64(e.Slots))*e.rows() }

// slotData returns the payload of slot bit i.
func (e *journalEntry) slotData(i int) []byte {
	n := int64(bits.OnesCount64(e.Slots&(1<<i-1))) * e.rows() * BlockSize
	return e.Payload[n : n+e.rows()*BlockSize]
}

func encodeJournalHeader(dst []byte, seed UUID, e *journalEntry) {
	clear(dst[:BlockSize])
	le := binary.LittleEndian
	copy(dst[0:4], journalMagic[:])
	le.PutUint64(dst[8:], e.Seq)
	le.PutUint64(dst[16:], uint64(e.Stripe))
	le.PutUint32(dst[24:], uint32(e.RowLo))
	le.PutUint32(dst[28:], uint32(e.RowHi))
	le.PutUint64(dst[32:], e.Slots)
	le.PutUint32(dst[40:], uint32(e.blocks()-1))
	le.PutUint32(dst[44:], crc32.Checksum(e.Payload, castagnoli))
	le.PutUint32(dst[BlockSize-4:], pageCRC(seed, dst[:BlockSize-4]))
}

// decodeJournalHeader returns the entry (without payload) and the payload
// checksum, or ok false when the block is not a valid header of this array.
func decodeJournalHeader(src []byte, seed UUID) (e journalEntry, payloadCRC uint32, ok bool) {
	le := binary.LittleEndian
	if [4]byte(src[0:4]) != journalMagic || le.Uint32(src[BlockSize-4:]) != pageCRC(seed, src[:BlockSize-4]) {
		return e, 0, false
	}
	e = journalEntry{
		Seq: le.Uint64(src[8:]), Stripe: int64(le.Uint64(src[16:])),
		RowLo: int64(le.Uint32(src[24:])), RowHi: int64(le.Uint32(src[28:])), Slots: le.Uint64(src[32:]),
	}
	if e.RowHi <= e.RowLo || int64(le.Uint32(src[40:])) != e.blocks()-1 {
		return e, 0, false
	}
	return e, le.Uint32(src[44:]), true
}

// journal is the in-memory state of the ring (positions are shared by all
// members: an entry sits at the same ring offset on each member it is on).
type journal struct {
	mu       sync.Mutex
	cond     *sync.Cond
	ringOff  int64 // member offset of the ring
	ringSize int64
	head     int64  // next free byte in the ring
	seq      uint64 // last sequence used
	inflight map[uint64]bool
	wrapping bool
	cpSeq    uint64           // page sequence of the checkpoint pages
	written  uint64           // checkpoint written at the last flush (maybe not durable yet)
	live     map[int64]uint64 // stripe -> newest entry not known replay-safe to drop
}

func newJournal(l diskLayout) *journal {
	j := &journal{
		ringOff: l.JournalOff + 2*BlockSize, ringSize: l.JournalSize - 2*BlockSize,
		inflight: map[uint64]bool{}, live: map[int64]uint64{},
	}
	j.cond = sync.NewCond(&j.mu)
	return j
}

// applied is the highest sequence S such that every entry <= S finished its
// in-place writes.
func (j *journal) appliedLocked() uint64 {
	a := j.seq
	for s := range j.inflight {
		a = min(a, s-1)
	}
	return a
}

// isLive reports whether stripe s has an entry that replay could still apply.
func (j *journal) isLive(s int64) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	_, ok := j.live[s]
	return ok
}

// dropDurable forgets live entries covered by a checkpoint now durable.
func (j *journal) dropDurableLocked(cp uint64) {
	for s, seq := range j.live {
		if seq <= cp {
			delete(j.live, s)
		}
	}
}

// journalTarget is an entry and the members whose rings receive it.
type journalTarget struct {
	e  *journalEntry
	ms []*member
}

// logEntries assigns sequences and ring positions to the entries, writes
// them and syncs the members holding them. The caller then writes in place
// and calls entriesDone.
func (a *Array) logEntries(ts []journalTarget) []uint64 {
	j := a.jr
	j.mu.Lock()
	for j.wrapping {
		j.cond.Wait()
	}
	pos := make([]int64, len(ts))
	seqs := make([]uint64, len(ts))
	total := int64(0)
	for _, t := range ts {
		total += t.e.blocks() * BlockSize
	}
	if j.head+total > j.ringSize {
		// A request has at most two partial stripes (its ends), and the ring
		// holds at least two of the largest entries.
		j.wrapLocked(a)
	}
	for i, t := range ts {
		size := t.e.blocks() * BlockSize
		pos[i] = j.head
		j.head += size
		j.seq++
		t.e.Seq = j.seq
		seqs[i] = j.seq
		j.inflight[j.seq] = true
		j.live[t.e.Stripe] = j.seq
	}
	j.mu.Unlock()

	byMember := map[*member][]int{}
	var order []*member
	for i, t := range ts {
		for _, m := range t.ms {
			if _, ok := byMember[m]; !ok {
				order = append(order, m)
			}
			byMember[m] = append(byMember[m], i)
		}
	}
	bufs := make([][]byte, len(ts))
	for i, t := range ts {
		b := alignedBuf(int(t.e.blocks() * BlockSize))
		encodeJournalHeader(b, a.uuid, t.e)
		copy(b[BlockSize:], t.e.Payload)
		bufs[i] = b
	}
	errs := parallel(len(order), func(k int) error {
		m := order[k]
		for _, i := range byMember[m] {
			if _, err := m.dev.WriteAt(bufs[i], j.ringOff+pos[i]); err != nil {
				return m.errorf("journal write: %w", err)
			}
		}
		if err := m.dev.Flush(); err != nil {
			return m.errorf("journal flush: %w", err)
		}
		return nil
	})
	for _, b := range bufs {
		freeBuf(b)
	}
	for k, err := range errs {
		if err != nil {
			a.memberFailed(order[k], err)
		}
	}
	return seqs
}

// wrapLocked makes the whole ring reusable: it waits for in-flight entries,
// makes every member durable, then writes and syncs a checkpoint covering
// every entry. Called with j.mu held; releases it while waiting.
func (j *journal) wrapLocked(a *Array) {
	j.wrapping = true
	for len(j.inflight) > 0 {
		j.cond.Wait()
	}
	seq := j.seq
	j.mu.Unlock()
	a.mu.RLock()
	ms := a.liveMembersLocked()
	a.mu.RUnlock()
	a.syncMembers(ms)
	a.writeCheckpoint(ms, seq)
	a.syncMembers(ms)
	j.mu.Lock()
	j.written = seq
	j.dropDurableLocked(seq)
	j.head = 0
	j.wrapping = false
	j.cond.Broadcast()
}

// checkpointJournal makes a stripe with a live entry safe for an unlogged
// full-stripe write: replay must never roll it back.
func (a *Array) checkpointJournal() {
	j := a.jr
	j.mu.Lock()
	for j.wrapping {
		j.cond.Wait()
	}
	j.wrapLocked(a)
	j.mu.Unlock()
}

func (a *Array) entriesDone(seqs []uint64) {
	j := a.jr
	j.mu.Lock()
	for _, s := range seqs {
		delete(j.inflight, s)
	}
	j.cond.Broadcast()
	j.mu.Unlock()
}

func (a *Array) writeCheckpoint(ms []*member, seq uint64) {
	j := a.jr
	j.mu.Lock()
	j.cpSeq++
	cps := j.cpSeq
	j.mu.Unlock()
	payload := make([]byte, 8)
	binary.LittleEndian.PutUint64(payload, seq)
	errs := parallel(len(ms), func(i int) error {
		return writeMetaPage(ms[i], a.uuid, a.lay.JournalOff, checkpointKind, 0, cps, payload)
	})
	for i, err := range errs {
		if err != nil {
			a.memberFailed(ms[i], err)
		}
	}
}

func (a *Array) syncMembers(ms []*member) {
	errs := parallel(len(ms), func(i int) error {
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
}

// replayJournal applies every complete entry newer than the checkpoint, in
// sequence order, to the members present, then checkpoints. It returns how
// many entries it replayed.
func (a *Array) replayJournal(ms []*member) (int, error) {
	j := a.jr
	var cp uint64
	var cpSeq uint64
	for _, m := range ms {
		buf := alignedBuf(2 * BlockSize)
		if _, err := m.dev.ReadAt(buf, a.lay.JournalOff); err == nil {
			if seq, payload, ok := pickPage(buf[:BlockSize], buf[BlockSize:], a.uuid, checkpointKind, 0); ok {
				cp = max(cp, binary.LittleEndian.Uint64(payload))
				cpSeq = max(cpSeq, seq)
			}
		}
		freeBuf(buf)
	}
	found := map[uint64]*journalEntry{}
	maxSeq := cp
	for _, m := range ms {
		ring := alignedBuf(int(j.ringSize))
		if _, err := m.dev.ReadAt(ring, j.ringOff); err != nil {
			freeBuf(ring)
			return 0, m.errorf("read journal: %w", err)
		}
		for off := int64(0); off+BlockSize <= j.ringSize; off += BlockSize {
			e, sum, ok := decodeJournalHeader(ring[off:off+BlockSize], a.uuid)
			if !ok {
				continue
			}
			maxSeq = max(maxSeq, e.Seq)
			end := off + e.blocks()*BlockSize
			if e.Seq <= cp || found[e.Seq] != nil || end > j.ringSize || e.Stripe >= a.geo.Stripes() || e.RowHi*BlockSize > a.geo.Chunk {
				continue
			}
			payload := ring[off+BlockSize : end]
			if crc32.Checksum(payload, castagnoli) != sum {
				continue // torn: its in-place writes never started
			}
			e.Payload = append([]byte(nil), payload...)
			found[e.Seq] = &e
		}
		freeBuf(ring)
	}
	seqs := make([]uint64, 0, len(found))
	for s := range found {
		seqs = append(seqs, s)
	}
	sortU64(seqs)
	g := a.geo
	k := g.DataChunks()
	for _, sq := range seqs {
		e := found[sq]
		pm, qm := g.ParityMembers(e.Stripe)
		var ws []memberWrite
		for i := 0; i < k+2; i++ {
			if e.Slots&(1<<i) == 0 {
				continue
			}
			slot := pm
			switch {
			case i < k:
				slot = g.DataLocs(e.Stripe, i, nil)[0].Member
			case i == k+1:
				slot = qm
			}
			if slot < 0 {
				continue
			}
			buf := alignedBuf(int(e.rows() * BlockSize))
			copy(buf, e.slotData(i))
			for _, m := range (&view{slot: a.slots, repl: a.repl}).writable(slot, nil) {
				ws = append(ws, memberWrite{m: m, off: e.Stripe*g.Chunk + e.RowLo*BlockSize, buf: buf})
			}
		}
		err := a.issueWrites(ws)
		if err != nil {
			return 0, err
		}
		a.log.Info("raid: journal entry replayed", "array", a.name, "seq", sq, "stripe", e.Stripe)
	}
	a.syncMembers(ms)
	j.seq = maxSeq
	j.cpSeq = cpSeq
	a.writeCheckpoint(ms, maxSeq)
	a.syncMembers(ms)
	j.written = maxSeq
	return len(seqs), nil
}

func sortU64(s []uint64) {
	for i := 1; i < len(s); i++ {
		for k := i; k > 0 && s[k] < s[k-1]; k-- {
			s[k], s[k-1] = s[k-1], s[k]
		}
	}
}
