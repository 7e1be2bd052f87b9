package volume

import (
	"math/bits"
	"sync"
)

// Buffers for the data of frames from the peer and of local reads whose
// bytes are only digested. The link reuses a frame's buffer at the next
// Recv, so the data of a write from the peer is copied out; a fresh
// allocation per 1 MiB frame (zeroed, faulted in, collected) cost the
// secondary a fifth of its CPU in tandem volume bench's sequential
// writes, where a copy into a buffer used before costs a fraction of that.

// pooledMin: smaller data is cloned (the allocator does well with it).
const pooledMin = 32 << 10

// bufPools holds buffers in power-of-two classes from pooledMin up.
type bufPools struct {
	classes [16]sync.Pool
}

func class(n int) int { return bits.Len(uint(n-1)) - bits.Len(uint(pooledMin-1)) }

// get returns a buffer of n bytes (contents undefined).
func (p *bufPools) get(n int) []byte {
	c := class(n)
	if n < pooledMin || c >= len(p.classes) {
		return make([]byte, n)
	}
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, pooledMin<<c)
}

// put returns b, from get, for reuse: nothing may use it afterwards.
func (p *bufPools) put(b []byte) {
	n := cap(b)
	c := class(n)
	if n < pooledMin || c >= len(p.classes) || pooledMin<<c != n {
		return
	}
	b = b[:n]
	p.classes[c].Put(&b)
}

// lent tracks the pooled buffers holding peer write data while the
// machine has them, by their first byte, so that the completion of the
// local write that applied one returns it (the loop's).
type lent map[*byte]struct{}

// maxLent bounds lent: data the machine drops without writing it (a
// refused or stale frame, a detached disk) is never returned, and once
// this many are out the rest is cloned until the session ends.
const maxLent = 1024
