package blockdev

import "sync"

// Mem is an in-memory Device. It keeps the last flushed image apart from the
// live one so Crash can return what a power cut would leave.
type Mem struct {
	mu      sync.Mutex
	data    []byte
	durable []byte
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
	return copy(m.data[off:], p), nil
}

func (m *Mem) Flush() error {
	m.mu.Lock()
	copy(m.durable, m.data)
	m.mu.Unlock()
	return nil
}

func (m *Mem) Size() int64  { return int64(len(m.data)) }
func (m *Mem) Close() error { return nil }

// Crash returns a new device holding only what was flushed on m.
func (m *Mem) Crash() *Mem {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := NewMem(int64(len(m.durable)))
	copy(c.data, m.durable)
	copy(c.durable, m.durable)
	return c
}
