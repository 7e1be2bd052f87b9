package blockdev

import (
	"errors"
	"fmt"
	"sync"
)

// ErrInjected is the error a Faulty device returns for an injected fault.
var ErrInjected = errors.New("blockdev: injected I/O error")

// ErrPowerCut is returned by every device sharing a PowerCut once it fired.
var ErrPowerCut = errors.New("blockdev: power cut")

// PowerCut is a budget of write operations (WriteAt and Flush) shared by
// several Faulty devices: once it is spent every later write or flush on any
// of them fails, as if the machine lost power between two steps. Tests cut
// the power at every step of an operation in turn.
type PowerCut struct {
	mu        sync.Mutex
	remaining int
	fired     bool
	tear      int
}

// NewPowerCut allows steps write operations before the cut. With tear > 0
// the write that meets the cut still lands its first tear bytes (a torn
// write) before failing.
func NewPowerCut(steps, tear int) *PowerCut { return &PowerCut{remaining: steps, tear: tear} }

// Fired reports whether the budget ran out.
func (c *PowerCut) Fired() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fired
}

// step spends one operation; it returns -1 if the operation may proceed,
// otherwise how many bytes of it land (0 after the first failed operation).
func (c *PowerCut) step() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fired {
		return 0
	}
	if c.remaining > 0 {
		c.remaining--
		return -1
	}
	c.fired = true
	return c.tear
}

// Faulty wraps a Device and injects faults on demand: I/O errors on reads,
// writes or flushes (whole device or a byte range), a torn next write, bit
// flips on read, and a power cut shared with other devices.
type Faulty struct {
	Device
	mu         sync.Mutex
	failRead   bool
	failWrite  bool
	failFlush  bool
	badRanges  [][2]int64 // reads and writes touching [lo,hi) fail
	tearNext   int        // >= 0: the next write lands this many bytes and fails
	flipOnRead map[int64]byte
	cut        *PowerCut
	reads      int
	writes     int
}

// NewFaulty wraps d; with no fault armed it behaves exactly like d.
func NewFaulty(d Device) *Faulty { return &Faulty{Device: d, tearNext: -1} }

// FailAll makes every later read, write and flush fail (a dead disk).
func (f *Faulty) FailAll() { f.set(func() { f.failRead, f.failWrite, f.failFlush = true, true, true }) }

// FailReads makes reads fail (writes still succeed).
func (f *Faulty) FailReads() { f.set(func() { f.failRead = true }) }

// FailWrites makes writes and flushes fail (reads still succeed).
func (f *Faulty) FailWrites() { f.set(func() { f.failWrite, f.failFlush = true, true }) }

// FailRange makes reads and writes that touch [off, off+n) fail (a bad sector).
func (f *Faulty) FailRange(off, n int64) {
	f.set(func() { f.badRanges = append(f.badRanges, [2]int64{off, off + n}) })
}

// TearNextWrite makes the next write land only its first n bytes and fail.
func (f *Faulty) TearNextWrite(n int) { f.set(func() { f.tearNext = n }) }

// FlipOnRead inverts bit of the byte at off in every read that covers it,
// leaving the medium intact (a flaky cable).
func (f *Faulty) FlipOnRead(off int64, bit uint) {
	f.set(func() {
		if f.flipOnRead == nil {
			f.flipOnRead = map[int64]byte{}
		}
		f.flipOnRead[off] ^= 1 << (bit & 7)
	})
}

// SharePowerCut makes the device obey c.
func (f *Faulty) SharePowerCut(c *PowerCut) { f.set(func() { f.cut = c }) }

// Heal removes every armed fault (not the power cut).
func (f *Faulty) Heal() {
	f.set(func() {
		f.failRead, f.failWrite, f.failFlush = false, false, false
		f.badRanges, f.tearNext, f.flipOnRead = nil, -1, nil
	})
}

// Counts reports how many reads and writes reached the device.
func (f *Faulty) Counts() (reads, writes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads, f.writes
}

func (f *Faulty) set(fn func()) {
	f.mu.Lock()
	fn()
	f.mu.Unlock()
}

func (f *Faulty) badLocked(off, n int64) bool {
	for _, r := range f.badRanges {
		if off < r[1] && off+n > r[0] {
			return true
		}
	}
	return false
}

func (f *Faulty) ReadAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	f.reads++
	fail := f.failRead || f.badLocked(off, int64(len(p)))
	flips := f.flipOnRead
	f.mu.Unlock()
	if fail {
		return 0, fmt.Errorf("read at %d: %w", off, ErrInjected)
	}
	n, err := f.Device.ReadAt(p, off)
	for at, mask := range flips {
		if at >= off && at < off+int64(n) {
			p[at-off] ^= mask
		}
	}
	return n, err
}

func (f *Faulty) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	f.writes++
	fail := f.failWrite || f.badLocked(off, int64(len(p)))
	tear := f.tearNext
	f.tearNext = -1
	cut := f.cut
	f.mu.Unlock()
	if fail {
		return 0, fmt.Errorf("write at %d: %w", off, ErrInjected)
	}
	if cut != nil {
		if land := cut.step(); land >= 0 {
			f.Device.WriteAt(p[:min(land, len(p))], off)
			return 0, fmt.Errorf("write at %d: %w", off, ErrPowerCut)
		}
	}
	if tear >= 0 {
		f.Device.WriteAt(p[:min(tear, len(p))], off)
		return 0, fmt.Errorf("torn write at %d: %w", off, ErrInjected)
	}
	return f.Device.WriteAt(p, off)
}

func (f *Faulty) Flush() error {
	f.mu.Lock()
	fail := f.failFlush
	cut := f.cut
	f.mu.Unlock()
	if fail {
		return fmt.Errorf("flush: %w", ErrInjected)
	}
	if cut != nil && cut.step() >= 0 {
		return fmt.Errorf("flush: %w", ErrPowerCut)
	}
	return f.Device.Flush()
}
