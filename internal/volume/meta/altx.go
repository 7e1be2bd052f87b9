package meta

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"tandem/internal/metapage"
)

// An activity log transaction lists every hot extent; it fills one slot of
// the ring (slot = seq mod ALSlots), of which only the pages it needs are
// written, and the newest valid one is the log. A write torn by a crash
// fails the checksum and leaves the transaction before it, in another
// slot, the newest. Little endian:
//
//	0     kind   "TVAL"
//	4     count  uint32
//	8     seq    uint64 (> 0)
//	16    extent uint32 × count, ascending
//	16+4c crc32c(volume UUID, bytes 0..16+4c)

var alKind = [4]byte{'T', 'V', 'A', 'L'}

const alHeader = 16

var errNoTx = errors.New("no transaction")

// txLen is the bytes a transaction of n extents writes: whole pages.
func txLen(n int) int { return int(ceilDiv(alHeader+4*int64(n)+4, pageSize) * pageSize) }

// encodeTx writes a transaction into dst (len(dst) >= txLen(len(extents)));
// extents must be ascending.
func encodeTx(dst []byte, seed [16]byte, seq uint64, extents []uint32) []byte {
	le := binary.LittleEndian
	n := txLen(len(extents))
	dst = dst[:n]
	clear(dst)
	copy(dst[0:4], alKind[:])
	le.PutUint32(dst[4:], uint32(len(extents)))
	le.PutUint64(dst[8:], seq)
	for i, e := range extents {
		le.PutUint32(dst[alHeader+4*i:], e)
	}
	end := alHeader + 4*len(extents)
	le.PutUint32(dst[end:], metapage.CRC(seed, dst[:end]))
	return dst
}

// decodeTx reads the transaction at the start of src (one ring slot). It
// fails with errNoTx for a slot that does not hold one of ours (empty,
// torn, another volume's); with another error for a transaction that
// passes its checksum but names impossible extents. It never panics.
func decodeTx(src []byte, seed [16]byte, capacity, extents int64) (seq uint64, list []uint32, err error) {
	le := binary.LittleEndian
	if len(src) < alHeader+4 || [4]byte(src[0:4]) != alKind {
		return 0, nil, errNoTx
	}
	n := int64(le.Uint32(src[4:]))
	end := alHeader + 4*n
	if end+4 > int64(len(src)) || le.Uint32(src[end:]) != metapage.CRC(seed, src[:end]) {
		return 0, nil, errNoTx
	}
	seq = le.Uint64(src[8:])
	if seq == 0 {
		return 0, nil, fmt.Errorf("activity log transaction with sequence 0")
	}
	if n > capacity {
		return 0, nil, fmt.Errorf("activity log transaction %d lists %d extents, the log holds %d", seq, n, capacity)
	}
	list = make([]uint32, n)
	for i := range list {
		list[i] = le.Uint32(src[alHeader+4*i:])
		if int64(list[i]) >= extents {
			return 0, nil, fmt.Errorf("activity log transaction %d names extent %d, the data has %d", seq, list[i], extents)
		}
		if i > 0 && list[i] <= list[i-1] {
			return 0, nil, fmt.Errorf("activity log transaction %d lists extents out of order", seq)
		}
	}
	return seq, list, nil
}

// newestTx picks the newest transaction of a ring read whole. found is
// false when no slot holds one; err reports the first transaction that
// passed its checksum yet was impossible.
func newestTx(ring []byte, l layout, seed [16]byte) (seq uint64, list []uint32, found bool, err error) {
	slot := int(l.ALSlotPages * pageSize)
	for i := 0; i+slot <= len(ring); i += slot {
		s, ext, e := decodeTx(ring[i:i+slot], seed, l.ALExtents, l.extents())
		switch {
		case errors.Is(e, errNoTx):
		case e != nil:
			if err == nil {
				err = fmt.Errorf("ring slot %d: %w", i/slot, e)
			}
		case !found || s > seq:
			seq, list, found = s, ext, true
		}
	}
	return seq, list, found, err
}

// sortedExtents returns the keys of m, ascending.
func sortedExtents[V any](m map[uint32]V) []uint32 {
	out := make([]uint32, 0, len(m))
	for e := range m {
		out = append(out, e)
	}
	slices.Sort(out)
	return out
}
