package nbd

import (
	"math/bits"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Payload buffers come in power-of-two size classes, aligned to 4096 bytes
// so a Device opened with O_DIRECT can use them as they are. On Linux they
// are mapped outside the Go heap (buffers_linux.go) and unmapped when no
// longer kept: memory a burst of clients made the server take goes back to
// the system the moment their buffers are released, instead of waiting for
// a garbage collection and the runtime's scavenger (with heap buffers, 2 GB
// taken by 30 clients that never read their replies stayed resident after
// they left). Elsewhere they live on the heap.
const (
	bufAlign       = 4096
	minBufClassLog = 12 // 4 KiB
	maxBufClassLog = 25 // 32 MiB = MaxPayload
)

// poolBytes bounds the released buffers kept for reuse, over all classes
// and servers of the process. It covers the working set of busy clients
// (nbdcopy: 4 connections × 16 requests of 256 KiB = 16 MiB; qemu-img
// convert: 8 × 2 MiB), so steady traffic allocates nothing; anything
// beyond it is unmapped at once. The pool is emptied when the last
// connection of the process ends (see connEnded).
const poolBytes = 32 << 20

type buffer struct {
	b      []byte // full capacity of the class
	class  int
	mapped bool // from mapPayload, to be unmapped; else on the heap
}

// pool keeps released buffers by class. Unlike sync.Pool it survives
// garbage collections: a pool drained at every GC made each busy connection
// fault in and zero fresh pages continually.
var pool struct {
	mu    sync.Mutex
	bytes int64
	free  [maxBufClassLog - minBufClassLog + 1][]*buffer
}

// allocatedBytes is the payload memory held by the process: buffers in use
// plus those pooled. Tests and the metrics read it.
var allocatedBytes atomic.Int64

// bufferClass returns the class of a buffer for n bytes and its size.
func bufferClass(n int) (class int, size int64) {
	if n > 1<<minBufClassLog {
		class = bits.Len(uint(n-1)) - minBufClassLog
	}
	return class, 1 << (class + minBufClassLog)
}

// getBuffer returns a buffer of at least n bytes (n <= MaxPayload).
func getBuffer(n int) *buffer {
	class, size := bufferClass(n)
	pool.mu.Lock()
	if fl := pool.free[class]; len(fl) > 0 {
		b := fl[len(fl)-1]
		pool.free[class] = fl[:len(fl)-1]
		pool.bytes -= size
		pool.mu.Unlock()
		return b
	}
	pool.mu.Unlock()
	allocatedBytes.Add(size)
	if p := mapPayload(int(size)); p != nil {
		return &buffer{b: p, class: class, mapped: true}
	}
	return &buffer{b: alignedBytes(int(size)), class: class}
}

// putBuffer releases b: pooled while the pool has room, else freed. b must
// not be used afterwards (a mapped buffer's pages are gone).
func putBuffer(b *buffer) {
	if b == nil {
		return
	}
	size := int64(len(b.b))
	pool.mu.Lock()
	if pool.bytes+size <= poolBytes {
		pool.free[b.class] = append(pool.free[b.class], b)
		pool.bytes += size
		pool.mu.Unlock()
		return
	}
	pool.mu.Unlock()
	freeBuffer(b)
}

func freeBuffer(b *buffer) {
	allocatedBytes.Add(-int64(len(b.b)))
	if b.mapped {
		unmapPayload(b.b)
	}
	b.b = nil
}

// drainPool frees every pooled buffer.
func drainPool() {
	pool.mu.Lock()
	var drop []*buffer
	for c, fl := range pool.free {
		drop = append(drop, fl...)
		pool.free[c] = nil
	}
	pool.bytes = 0
	pool.mu.Unlock()
	for _, b := range drop {
		freeBuffer(b)
	}
}

// liveConns counts connections in transmission over every server of the
// process; when it drops to zero the pool is drained, so a server nobody
// uses holds no payload memory.
var liveConns atomic.Int64

func connStarted() { liveConns.Add(1) }

func connEnded() {
	if liveConns.Add(-1) == 0 {
		drainPool()
	}
}

// alignedBytes returns n bytes starting on a bufAlign boundary. Go's
// allocator already aligns page-sized objects; over-allocate only when it
// did not.
func alignedBytes(n int) []byte {
	b := make([]byte, n)
	if uintptr(unsafe.Pointer(unsafe.SliceData(b)))%bufAlign == 0 {
		return b
	}
	b = make([]byte, n+bufAlign)
	off := int(-uintptr(unsafe.Pointer(unsafe.SliceData(b))) % bufAlign)
	return b[off : off+n : off+n]
}

// zeroes is a shared source for WRITE_ZEROES on devices without a
// ZeroWriter. WriterAt must not modify its argument, so sharing is safe.
var zeroes = alignedBytes(1 << 20)
