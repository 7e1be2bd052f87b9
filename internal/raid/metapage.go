package raid

import "tandem/internal/metapage"

// Metadata pages (superblock, bitmap, checksum table, journal checkpoint) are
// metapage's 4 KiB A/B pages, seeded with the array UUID (the superblock,
// read before the UUID is known, uses the zero seed). The names below keep
// the engine's spelling.

const pagePayload = metapage.Payload

var castagnoli = metapage.Castagnoli

func pageCRC(seed UUID, b []byte) uint32 { return metapage.CRC(seed, b) }

func encodePage(dst []byte, seed UUID, kind [4]byte, index uint32, seq uint64, payload []byte) {
	metapage.Encode(dst, seed, kind, index, seq, payload)
}

func pickPage(a, b []byte, seed UUID, kind [4]byte, index uint32) (seq uint64, payload []byte, ok bool) {
	return metapage.Pick(a, b, seed, kind, index)
}

func pageSlot(seq uint64) int64 { return metapage.Slot(seq) }
