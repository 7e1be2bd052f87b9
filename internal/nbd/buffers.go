package nbd

import (
	"context"
	"math/bits"
	"sync"
	"unsafe"
)

// Payload buffers are pooled by power-of-two size class and aligned to
// 4096 bytes, so a Device opened with O_DIRECT can use them as they are and
// a busy connection does not allocate per request.
const (
	bufAlign       = 4096
	minBufClassLog = 12 // 4 KiB
	maxBufClassLog = 25 // 32 MiB = MaxPayload
)

type buffer struct {
	b     []byte // full capacity of the class
	class int
}

// freeLists keep released buffers for reuse. Unlike sync.Pool they survive
// garbage collections: a pool drained at every GC made each busy connection
// fault in and zero fresh pages continually. Each class keeps at most
// freeListBytes (and at least 4 buffers); the rest goes to the GC.
var freeLists [maxBufClassLog - minBufClassLog + 1]struct {
	mu   sync.Mutex
	bufs []*buffer
}

const freeListBytes = 64 << 20

// getBuffer returns a buffer of at least n bytes (n <= MaxPayload).
func getBuffer(n int) *buffer {
	class := 0
	if n > 1<<minBufClassLog {
		class = bits.Len(uint(n-1)) - minBufClassLog
	}
	fl := &freeLists[class]
	fl.mu.Lock()
	if k := len(fl.bufs); k > 0 {
		b := fl.bufs[k-1]
		fl.bufs = fl.bufs[:k-1]
		fl.mu.Unlock()
		return b
	}
	fl.mu.Unlock()
	return &buffer{b: alignedBytes(1 << (class + minBufClassLog)), class: class}
}

func putBuffer(b *buffer) {
	if b == nil {
		return
	}
	fl := &freeLists[b.class]
	fl.mu.Lock()
	if len(fl.bufs) < max(4, freeListBytes>>(b.class+minBufClassLog)) {
		fl.bufs = append(fl.bufs, b)
	}
	fl.mu.Unlock()
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

// budget bounds the bytes a connection holds in flight (payloads being
// read, executed or waiting for the socket), so one client cannot make the
// server allocate without limit. Only the connection's reader acquires;
// handlers and the writer release.
type budget struct {
	mu    sync.Mutex
	cond  sync.Cond
	used  int64
	limit int64
	dead  bool
}

func newBudget(limit int64) *budget {
	b := &budget{limit: limit}
	b.cond.L = &b.mu
	return b
}

// acquire waits until n more bytes fit; it fails once the budget is killed.
func (b *budget) acquire(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for !b.dead && b.used+n > b.limit && b.used > 0 {
		b.cond.Wait()
	}
	if b.dead {
		return false
	}
	b.used += n
	return true
}

func (b *budget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
	b.cond.Signal()
}

// kill wakes a waiting acquire for good (connection shutting down).
func (b *budget) kill() {
	b.mu.Lock()
	b.dead = true
	b.mu.Unlock()
	b.cond.Broadcast()
}

// killOnDone kills b when ctx ends; the returned func stops watching.
func (b *budget) killOnDone(ctx context.Context) func() bool {
	return context.AfterFunc(ctx, b.kill)
}
