package raid

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
)

// Metadata pages (superblock, bitmap, checksum table, journal checkpoint) are
// 4 KiB pages stored twice, in an A and a B copy: an update goes to the copy
// that does not hold the newest version, so a write torn by a crash leaves the
// previous version readable. Each page carries a kind, an index, a sequence
// number and a CRC-32C of the whole page seeded with the array UUID, so a
// page left by another array on a reused member never passes as ours (the
// superblock, read before the UUID is known, uses the zero seed).
//
//	0  kind   [4]byte
//	4  index  uint32
//	8  seq    uint64
//	16 payload [pagePayload]byte
//	4092 crc32c(seed, bytes 0..4092)

const (
	pageHeader  = 16
	pagePayload = BlockSize - pageHeader - 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var errBadPage = errors.New("raid: metadata page fails its checksum or names another page")

func pageCRC(seed UUID, b []byte) uint32 {
	return crc32.Update(crc32.Checksum(seed[:], castagnoli), castagnoli, b)
}

func encodePage(dst []byte, seed UUID, kind [4]byte, index uint32, seq uint64, payload []byte) {
	clear(dst[:BlockSize])
	copy(dst[0:4], kind[:])
	binary.LittleEndian.PutUint32(dst[4:], index)
	binary.LittleEndian.PutUint64(dst[8:], seq)
	copy(dst[pageHeader:pageHeader+pagePayload], payload)
	binary.LittleEndian.PutUint32(dst[BlockSize-4:], pageCRC(seed, dst[:BlockSize-4]))
}

// decodePage checks a page and returns its sequence number and payload.
func decodePage(src []byte, seed UUID, kind [4]byte, index uint32) (seq uint64, payload []byte, err error) {
	if len(src) < BlockSize || [4]byte(src[0:4]) != kind || binary.LittleEndian.Uint32(src[4:]) != index ||
		binary.LittleEndian.Uint32(src[BlockSize-4:]) != pageCRC(seed, src[:BlockSize-4]) {
		return 0, nil, errBadPage
	}
	return binary.LittleEndian.Uint64(src[8:]), src[pageHeader : pageHeader+pagePayload], nil
}

// pickPage chooses between the A and B copies: the valid one with the
// higher sequence. ok is false when neither is valid.
func pickPage(a, b []byte, seed UUID, kind [4]byte, index uint32) (seq uint64, payload []byte, ok bool) {
	sa, pa, ea := decodePage(a, seed, kind, index)
	sb, pb, eb := decodePage(b, seed, kind, index)
	switch {
	case ea == nil && (eb != nil || sa >= sb):
		return sa, pa, true
	case eb == nil:
		return sb, pb, true
	}
	return 0, nil, false
}

// pageSlot is which copy (0 = A, 1 = B) version seq is written to.
func pageSlot(seq uint64) int64 { return int64(seq & 1) }
