// Package metapage owns the on-disk page format that tandem's metadata
// shares: the RAID superblock, bitmap, checksum and journal pages, and a
// replicated volume's superblock and bitmap. A page is 4 KiB and is stored
// twice, in an A and a B copy; an update goes to the copy that does not hold
// the newest version, so a write torn by a crash leaves the previous version
// readable. Each page carries a kind, an index, a sequence number and a
// CRC-32C of the whole page seeded with an owner's UUID (an array, a
// volume), so a page left by another owner on a reused device never passes
// as ours (a superblock, read before its owner is known, uses the zero
// seed).
//
//	0    kind    [4]byte
//	4    index   uint32
//	8    seq     uint64
//	16   payload [Payload]byte
//	4092 crc32c(seed, bytes 0..4092)
//
// It is pure encoding and imports nothing of ours; raid and volume/meta
// import it.
package metapage

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
)

const (
	// Size is a page's size on disk.
	Size = 4096
	// Header is the bytes before the payload.
	Header = 16
	// Payload is what a page carries.
	Payload = Size - Header - 4
)

// Castagnoli is the CRC-32C table every tandem checksum uses.
var Castagnoli = crc32.MakeTable(crc32.Castagnoli)

// The superblocks that claim a device. Each owner's create refuses a
// device that carries the other's (unless forced), so both kinds live here.
var (
	// RaidSuperblock: a tandem raid member's, in its first 8 KiB.
	RaidSuperblock = [4]byte{'T', 'R', 'S', 'B'}
	// VolumeSuperblock: a replicated volume's metadata, in the last 8 KiB
	// (below the last whole page) of the device holding it.
	VolumeSuperblock = [4]byte{'T', 'V', 'S', 'B'}
)

// ErrBadPage says a page fails its checksum or names another page.
var ErrBadPage = errors.New("metadata page fails its checksum or names another page")

// CRC is the CRC-32C of b seeded with seed.
func CRC(seed [16]byte, b []byte) uint32 {
	return crc32.Update(crc32.Checksum(seed[:], Castagnoli), Castagnoli, b)
}

// Encode writes page (kind, index, seq) with payload (at most Payload
// bytes, zero padded) into dst[:Size].
func Encode(dst []byte, seed [16]byte, kind [4]byte, index uint32, seq uint64, payload []byte) {
	clear(dst[:Size])
	copy(dst[0:4], kind[:])
	binary.LittleEndian.PutUint32(dst[4:], index)
	binary.LittleEndian.PutUint64(dst[8:], seq)
	copy(dst[Header:Header+Payload], payload)
	binary.LittleEndian.PutUint32(dst[Size-4:], CRC(seed, dst[:Size-4]))
}

// Decode checks a page and returns its sequence number and payload (a
// slice of src).
func Decode(src []byte, seed [16]byte, kind [4]byte, index uint32) (seq uint64, payload []byte, err error) {
	if len(src) < Size || [4]byte(src[0:4]) != kind || binary.LittleEndian.Uint32(src[4:]) != index ||
		binary.LittleEndian.Uint32(src[Size-4:]) != CRC(seed, src[:Size-4]) {
		return 0, nil, ErrBadPage
	}
	return binary.LittleEndian.Uint64(src[8:]), src[Header : Header+Payload], nil
}

// Pick chooses between the A and B copies: the valid one with the higher
// sequence. ok is false when neither is valid.
func Pick(a, b []byte, seed [16]byte, kind [4]byte, index uint32) (seq uint64, payload []byte, ok bool) {
	sa, pa, ea := Decode(a, seed, kind, index)
	sb, pb, eb := Decode(b, seed, kind, index)
	switch {
	case ea == nil && (eb != nil || sa >= sb):
		return sa, pa, true
	case eb == nil:
		return sb, pb, true
	}
	return 0, nil, false
}

// Slot is which copy (0 = A, 1 = B) version seq is written to. A writer
// moves to seq+1 only once seq is durable: retrying a failed write with the
// same seq keeps it off the copy that holds the newest good version.
func Slot(seq uint64) int64 { return int64(seq & 1) }
