package replication

import "math/bits"

// Bitmap is a set of regions: the dirty bitmap (regions the peer may lack),
// and the sets frames carry.
type Bitmap struct {
	words []uint64
	n     int // regions
	count int
}

// RegionRange is N regions from First: the unit of SetBits, ClearBits and
// Persisted.Dirty (a full sync of any volume is one range).
type RegionRange struct{ First, N int }

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

// Ranges lists the set regions as runs.
func (b *Bitmap) Ranges() []RegionRange { return rangesOf(b.Regions()) }

// SetAll adds every region.
func (b *Bitmap) SetAll() {
	for i := range b.words {
		b.words[i] = ^uint64(0)
	}
	if tail := b.n % 64; tail != 0 {
		b.words[len(b.words)-1] = 1<<tail - 1
	}
	b.count = b.n
}

// ClearAll removes every region.
func (b *Bitmap) ClearAll() {
	clear(b.words)
	b.count = 0
}

// Words returns a copy of words [from, from+n) (region from*64 on).
func (b *Bitmap) Words(from, n int) []uint64 {
	return append([]uint64(nil), b.words[from:min(from+n, len(b.words))]...)
}

// WordCount is the number of 64-region words.
func (b *Bitmap) WordCount() int { return len(b.words) }

// Or adds the regions of words (a bitset starting at word from) and returns
// those that were new. It reports false if the words fall outside the
// bitmap or set regions past its end.
func (b *Bitmap) Or(from int, words []uint64) ([]RegionRange, bool) {
	if from < 0 || from+len(words) > len(b.words) {
		return nil, false
	}
	if tail := b.n % 64; tail != 0 && from+len(words) == len(b.words) && words[len(words)-1]>>tail != 0 {
		return nil, false
	}
	var fresh []int
	for i, w := range words {
		nw := w &^ b.words[from+i]
		b.count += bits.OnesCount64(nw)
		b.words[from+i] |= w
		for ; nw != 0; nw &= nw - 1 {
			fresh = append(fresh, (from+i)*64+bits.TrailingZeros64(nw))
		}
	}
	return rangesOf(fresh), true
}

// rangesOf turns sorted regions into runs.
func rangesOf(regions []int) []RegionRange {
	var out []RegionRange
	for _, r := range regions {
		if k := len(out) - 1; k >= 0 && out[k].First+out[k].N == r {
			out[k].N++
		} else if k < 0 || out[k].First+out[k].N < r {
			out = append(out, RegionRange{First: r, N: 1})
		}
	}
	return out
}
