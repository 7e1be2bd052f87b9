package meta

import (
	"encoding/binary"
	"math/bits"
)

// bitmap is the dirty bitmap in memory: one bit per region, set where the
// peer may miss what this replica has. Pages are metapage pages (kind TVBM,
// index = page number, seeded with the volume UUID), each stored twice; the
// payload is the page's 64-bit words, little endian, bit i of the volume at
// byte i/8, bit i%8 of its page's share.
type bitmap struct {
	words   []uint64
	nbits   int64
	pageSeq []uint64 // newest durable version of each page
	dirty   []bool   // page changed since written
	cleared []bool   // page has a bit cleared since written
}

var bitmapKind = [4]byte{'T', 'V', 'B', 'M'}

const wordsPerPage = bitsPerPage / 64

func newBitmap(nbits, pages int64) *bitmap {
	return &bitmap{
		words: make([]uint64, pages*wordsPerPage), nbits: nbits,
		pageSeq: make([]uint64, pages), dirty: make([]bool, pages), cleared: make([]bool, pages),
	}
}

func (b *bitmap) has(i int64) bool { return b.words[i/64]&(1<<(i%64)) != 0 }

// set marks regions [r0, r1) dirty.
func (b *bitmap) set(r0, r1 int64) {
	for r := r0; r < r1; r++ {
		if w, m := r/64, uint64(1)<<(r%64); b.words[w]&m == 0 {
			b.words[w] |= m
			b.dirty[r/bitsPerPage] = true
		}
	}
}

// unset marks regions [r0, r1) clean.
func (b *bitmap) unset(r0, r1 int64) {
	for r := r0; r < r1; r++ {
		if w, m := r/64, uint64(1)<<(r%64); b.words[w]&m != 0 {
			b.words[w] &^= m
			p := r / bitsPerPage
			b.dirty[p], b.cleared[p] = true, true
		}
	}
}

// any reports whether a region in [r0, r1) is dirty.
func (b *bitmap) any(r0, r1 int64) bool {
	for r := r0; r < r1; r++ {
		if r%64 == 0 && r+64 <= r1 {
			if b.words[r/64] != 0 {
				return true
			}
			r += 63
			continue
		}
		if b.has(r) {
			return true
		}
	}
	return false
}

func (b *bitmap) count() int64 {
	var n int
	for _, w := range b.words {
		n += bits.OnesCount64(w)
	}
	return int64(n)
}

// next returns the first dirty region at or after r, or nbits.
func (b *bitmap) next(r int64) int64 {
	for r < b.nbits {
		w := b.words[r/64] >> (r % 64)
		if w != 0 {
			return min(r+int64(bits.TrailingZeros64(w)), b.nbits)
		}
		r = (r/64 + 1) * 64
	}
	return b.nbits
}

// nextClean returns the first clean region at or after r, or nbits.
func (b *bitmap) nextClean(r int64) int64 {
	for r < b.nbits {
		w := ^b.words[r/64] >> (r % 64)
		if w != 0 {
			return min(r+int64(bits.TrailingZeros64(w)), b.nbits)
		}
		r = (r/64 + 1) * 64
	}
	return b.nbits
}

// payload encodes page p.
func (b *bitmap) payload(p int64) []byte {
	out := make([]byte, wordsPerPage*8)
	for i, w := range b.words[p*wordsPerPage : (p+1)*wordsPerPage] {
		binary.LittleEndian.PutUint64(out[8*i:], w)
	}
	return out
}

// load sets page p from its payload; bits past the data are ignored.
func (b *bitmap) load(p int64, payload []byte, seq uint64) {
	for i := range wordsPerPage {
		b.words[p*wordsPerPage+int64(i)] = binary.LittleEndian.Uint64(payload[8*i:])
	}
	b.pageSeq[p] = seq
}

// trim clears the bits past nbits, which no region owns.
func (b *bitmap) trim() {
	w := b.nbits / 64
	if b.nbits%64 != 0 {
		b.words[w] &= 1<<(b.nbits%64) - 1
		w++
	}
	clear(b.words[w:])
}

// bytes returns the bits, one per region, LSB first, ceil(nbits/8) bytes.
func (b *bitmap) bytes() []byte {
	out := make([]byte, (b.nbits+7)/8)
	for i := range out {
		out[i] = byte(b.words[i/8] >> (8 * (i % 8)))
	}
	return out
}
