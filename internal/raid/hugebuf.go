package raid

import (
	"sync"
	"unsafe"
)

// Large I/O buffers (write-behind entries, readahead windows, parity of
// full-stripe runs, rebuild windows) come from memory the kernel backs with
// 2 MiB pages where it can. Every request a member gets is a list of
// physical segments; in 4 KiB pages a 1 MiB request is 256 of them, each a
// descriptor the virtual disk's host walks and an entry the kernel pins.
// Measured on the dev VM (docs/raid.md), raw 1 MiB writes from a 32 MiB
// ring of 2 MiB pages ran at 1.15× the same writes from an ordinary
// buffer, and reads at 1.7×; from an ordinary 32 MiB ring (what the
// write-behind queue was) they ran at 0.81× and 0.75×. This is what SPDK
// and DPDK do with hugepages for the same reason.
//
// Buffers from 2 MiB up are mapped outside the Go heap, so they are
// recycled by freeBuf rather than collected: every caller frees what it
// takes (they did already, for the pools). Free ones are kept up to
// hugeKeep bytes and unmapped beyond that.

const (
	hugePage     = 2 << 20
	hugeMinClass = 21 // 1<<21 = 2 MiB
	hugeKeep     = 256 << 20
)

var huge struct {
	mu   sync.Mutex
	free [len(bufPools)][][]byte
	held int64
	// maps is every buffer handed out or free, by address, with the mapping
	// to release it with.
	maps map[uintptr]hugeMapping
	// off: the platform has no such mappings; ordinary buffers are used.
	off bool
}

type hugeMapping struct {
	class int
	raw   []byte // as mapped (larger than the buffer, for alignment)
}

// hugeBuf returns a buffer of size class c (1<<c bytes) from huge pages, or
// nil when the platform or the kernel refuses.
func hugeBuf(c int) []byte {
	huge.mu.Lock()
	defer huge.mu.Unlock()
	if huge.off {
		return nil
	}
	if l := huge.free[c]; len(l) > 0 {
		b := l[len(l)-1]
		huge.free[c] = l[:len(l)-1]
		huge.held -= int64(len(b))
		return b
	}
	raw, b := mapHuge(1 << c)
	if b == nil {
		huge.off = true
		return nil
	}
	if huge.maps == nil {
		huge.maps = map[uintptr]hugeMapping{}
	}
	huge.maps[uintptr(unsafe.Pointer(unsafe.SliceData(b)))] = hugeMapping{c, raw}
	return b
}

// putHuge takes back b if it came from hugeBuf.
func putHuge(b []byte) bool {
	if cap(b) < hugePage {
		return false
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	huge.mu.Lock()
	defer huge.mu.Unlock()
	m, ok := huge.maps[p]
	if !ok || cap(b) != 1<<m.class {
		return false
	}
	b = b[:cap(b)]
	if huge.held+int64(len(b)) > hugeKeep {
		delete(huge.maps, p)
		unmapHuge(m.raw)
		return true
	}
	huge.free[m.class] = append(huge.free[m.class], b)
	huge.held += int64(len(b))
	return true
}

// IOBuffer returns an n-byte buffer of the kind the array does its own
// large I/O from (2 MiB pages from 2 MiB up, where the platform has them),
// and FreeIOBuffer gives it back. Exported for `tandem raid bench`, whose
// baselines use the same memory as the array.
// Smaller requests get the start of a 2 MiB one.
func IOBuffer(n int) []byte { return alignedBuf(max(n, hugePage))[:n] }

// FreeIOBuffer returns a buffer from IOBuffer.
func FreeIOBuffer(b []byte) { freeBuf(b) }
