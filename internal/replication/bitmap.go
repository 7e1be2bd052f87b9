package replication

import "math/bits"

// Bitmap is a set of regions: the dirty bitmap (regions the peer may lack),
// and the sets frames carry.
type Bitmap struct {
	words []uint64
	n     int // regions
	count int
}

// NewBitmap returns an empty bitmap of n regions.
func NewBitmap(n int) *Bitmap { return &Bitmap{words: make([]uint64, (n+63)/64), n: n} }

// Len is the number of regions the bitmap covers; Count the number set.
func (b *Bitmap) Len() int   { return b.n }
func (b *Bitmap) Count() int { return b.count }

func (b *Bitmap) Has(r int) bool { return b.words[r/64]&(1<<(r%64)) != 0 }

// Set adds r and reports whether it was new.
func (b *Bitmap) Set(r int) bool {
	if b.Has(r) {
		return false
	}
	b.words[r/64] |= 1 << (r % 64)
	b.count++
	return true
}

// Clear removes r and reports whether it was set.
func (b *Bitmap) Clear(r int) bool {
	if !b.Has(r) {
		return false
	}
	b.words[r/64] &^= 1 << (r % 64)
	b.count--
	return true
}

// Next returns the first set region at or after r, or -1.
func (b *Bitmap) Next(r int) int {
	for r < b.n {
		w := b.words[r/64] >> (r % 64)
		if w != 0 {
			return r + bits.TrailingZeros64(w)
		}
		r = (r/64 + 1) * 64
	}
	return -1
}

// Regions lists the set regions in order.
func (b *Bitmap) Regions() []int {
	out := make([]int, 0, b.count)
	for r := b.Next(0); r >= 0; r = b.Next(r + 1) {
		out = append(out, r)
	}
	return out
}
