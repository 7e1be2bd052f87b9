package raid

import "sync"

// rangeLock serializes I/O on overlapping stripe ranges: writers (and
// rebuild, resync, repair) hold a range exclusively, readers share it, so a
// read never sees data and checksum from different writes. Ranges are taken
// whole, never one stripe at a time, so there is no lock ordering to get
// wrong.
type rangeLock struct {
	mu   sync.Mutex
	cond *sync.Cond
	held []heldRange
}

type heldRange struct {
	lo, hi    int64 // [lo, hi)
	exclusive bool
}

func (l *rangeLock) lock(lo, hi int64, exclusive bool) heldRange {
	l.mu.Lock()
	if l.cond == nil {
		l.cond = sync.NewCond(&l.mu)
	}
	r := heldRange{lo, hi, exclusive}
	for l.conflicts(r) {
		l.cond.Wait()
	}
	l.held = append(l.held, r)
	l.mu.Unlock()
	return r
}

func (l *rangeLock) conflicts(r heldRange) bool {
	for _, h := range l.held {
		if h.lo < r.hi && r.lo < h.hi && (h.exclusive || r.exclusive) {
			return true
		}
	}
	return false
}

func (l *rangeLock) unlock(r heldRange) {
	l.mu.Lock()
	for i, h := range l.held {
		if h == r {
			l.held = append(l.held[:i], l.held[i+1:]...)
			break
		}
	}
	l.cond.Broadcast()
	l.mu.Unlock()
}

// bitset is a fixed-size set of small integers.
type bitset []uint64

func newBitset(n int64) bitset    { return make(bitset, (n+63)/64) }
func (b bitset) has(i int64) bool { return i >= 0 && i/64 < int64(len(b)) && b[i/64]&(1<<(i%64)) != 0 }
func (b bitset) set(i int64)      { b[i/64] |= 1 << (i % 64) }
func (b bitset) unset(i int64)    { b[i/64] &^= 1 << (i % 64) }
func (b bitset) clone() bitset    { return append(bitset(nil), b...) }
func (b bitset) empty() bool {
	for _, w := range b {
		if w != 0 {
			return false
		}
	}
	return true
}
func (b bitset) count() int64 {
	var n int64
	for _, w := range b {
		for ; w != 0; w &= w - 1 {
			n++
		}
	}
	return n
}

// bufPool hands out BlockSize-aligned buffers (O_DIRECT needs aligned
// memory) in power-of-two size classes.
var bufPools [28]sync.Pool

func alignedBuf(n int) []byte {
	c := 12
	for 1<<c < n {
		c++
	}
	if c >= hugeMinClass && c < len(bufPools) {
		if b := hugeBuf(c); b != nil {
			return b[:n]
		}
	}
	if c < len(bufPools) {
		if b, ok := bufPools[c].Get().(*[]byte); ok {
			return (*b)[:n]
		}
	}
	raw := make([]byte, 1<<c+BlockSize)
	off := 0
	if r := int(uintptrOf(raw) % BlockSize); r != 0 {
		off = BlockSize - r
	}
	return raw[off : off+1<<c : off+1<<c][:n]
}

func freeBuf(b []byte) {
	if putHuge(b) {
		return
	}
	c := 12
	for 1<<c < cap(b) {
		c++
	}
	if 1<<c != cap(b) || c >= len(bufPools) {
		return
	}
	b = b[:cap(b)]
	bufPools[c].Put(&b)
}
