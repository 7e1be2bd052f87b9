package blockdev

import "sync"

// Mem is an in-memory Device that models a disk with a volatile write cache:
// it keeps the last flushed image apart from the live one, and the writes
// issued since, in order, so a test can cut the power and choose which of
// those writes reached the medium (Crash, CrashKeeping).
type Mem struct {
	mu      sync.Mutex
	data    []byte
	durable []byte
	pending []pendingWrite
}

type pendingWrite struct {
	off  int64
	data []byte
}

// NewMem returns a zeroed in-memory device of size bytes.
func NewMem(size int64) *Mem {
	return &Mem{data: make([]byte, size), durable: make([]byte, size)}
}

func (m *Mem) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := checkRange(off, int64(len(p)), int64(len(m.data))); err != nil {
		return 0, err
	}
	return copy(p, m.data[off:]), nil
}

func (m *Mem) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := checkRange(off, int64(len(p)), int64(len(m.data))); err != nil {
		return 0, err
	}
	m.pending = append(m.pending, pendingWrite{off: off, data: append([]byte(nil), p...)})
	return copy(m.data[off:], p), nil
}

func (m *Mem) Flush() error {
	m.mu.Lock()
	for _, w := range m.pending {
		copy(m.durable[w.off:], w.data)
	}
	m.pending = nil
	m.mu.Unlock()
	return nil
}

func (m *Mem) Size() int64  { return int64(len(m.data)) }
func (m *Mem) Close() error { return nil }

// Pending reports how many writes were issued since the last Flush.
func (m *Mem) Pending() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.pending)
}

// Crash returns a new device holding only what was flushed on m.
func (m *Mem) Crash() *Mem { return m.CrashKeeping(func(int) bool { return false }) }

// CrashKeeping returns what a power cut would leave if, of the writes issued
// since the last Flush, exactly those i (0-based, in issue order) for which
// keep(i) is true reached the medium. keep always true gives the live image.
func (m *Mem) CrashKeeping(keep func(i int) bool) *Mem {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := NewMem(int64(len(m.durable)))
	copy(c.data, m.durable)
	for i, w := range m.pending {
		if keep(i) {
			copy(c.data[w.off:], w.data)
		}
	}
	copy(c.durable, c.data)
	return c
}

// Flush applies the pending writes in order, which leaves durable equal to
// data: every change to data goes through WriteAt (or FlipBit, which
// changes both).

// FlipBit corrupts the medium: bit (0..7) of the byte at off is inverted in
// both the live and the durable image, as a decaying sector would.
func (m *Mem) FlipBit(off int64, bit uint) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data[off] ^= 1 << (bit & 7)
	m.durable[off] ^= 1 << (bit & 7)
}

// Bytes returns a copy of the live image (tests compare whole devices).
func (m *Mem) Bytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]byte(nil), m.data...)
}
