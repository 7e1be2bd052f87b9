package raid

import (
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"tandem/internal/blockdev"
)

// member is one device of an open array.
type member struct {
	id    int // order of arrival, for stable sorting
	name  string
	dev   blockdev.Device
	uuid  UUID
	lay   diskLayout
	crc   *crcTable // nil when checksums are off
	sbSeq uint64    // page sequence of the last superblock written

	role     int32 // slot, RoleSpare or RoleFaulty (guarded by Array.mu)
	lastSlot int32
	failed   atomic.Bool
	rec      atomic.Pointer[recovery] // non-nil while being rebuilt
}

// recovery tracks the rebuild of a member: stripes below pos are in sync;
// with only set, stripes outside those bitmap regions were in sync from the
// start (a re-added member that missed a few writes).
type recovery struct {
	pos   atomic.Int64
	only  bitset // regions to rebuild; nil = all
	spb   int64  // stripes per bitmap bit
	readd bool   // a returning member, not a spare
	// aborted: a stripe could not be rebuilt (no good copy left); the
	// member keeps what it has up to pos and is not rebuilt again until a
	// new recovery starts (re-assembly, add, replace).
	aborted atomic.Bool
}

// pending reports whether r is a rebuild still to run.
func (r *recovery) pending() bool { return r != nil && !r.aborted.Load() }

func (r *recovery) needs(s int64) bool {
	return r.only == nil || r.only.has(s/r.spb)
}

// inSyncAt reports whether m holds valid data for stripe s.
func (m *member) inSyncAt(s int64) bool {
	if m == nil || m.failed.Load() {
		return false
	}
	r := m.rec.Load()
	return r == nil || s < r.pos.Load() || !r.needs(s)
}

func (m *member) usable() bool { return m != nil && !m.failed.Load() }

func (m *member) errorf(format string, args ...any) error {
	return fmt.Errorf("raid: member %s: "+format, append([]any{m.name}, args...)...)
}

// view is a snapshot of who holds which slot, taken under Array.mu after
// the stripe range is locked.
type view struct {
	slot []*member // current holder of each slot (in sync or rebuilding)
	repl []*member // member being built to replace the holder
}

// readable returns the member of slot i if it has valid data for stripe s.
func (v *view) readable(i int, s int64) *member {
	if m := v.slot[i]; m.inSyncAt(s) {
		return m
	}
	if m := v.repl[i]; m.inSyncAt(s) {
		return m
	}
	return nil
}

// writable appends the members a write to slot i must reach.
func (v *view) writable(i int, dst []*member) []*member {
	if m := v.slot[i]; m.usable() {
		dst = append(dst, m)
	}
	if m := v.repl[i]; m.usable() {
		dst = append(dst, m)
	}
	return dst
}

// parallel runs fn(0..n-1) concurrently and returns their errors.
func parallel(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	if n == 1 {
		errs[0] = fn(0)
		return errs
	}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	return errs
}

// readv reads the member's bytes from off on into bufs, one after the
// other: one preadv when the device takes vectors, else one read into a
// bounce buffer. Either way the member sees a single request.
func (m *member) readv(bufs [][]byte, off int64) error {
	if len(bufs) == 1 {
		_, err := m.dev.ReadAt(bufs[0], off)
		return err
	}
	if v, ok := m.dev.(blockdev.Vectored); ok {
		_, err := v.ReadvAt(bufs, off)
		return err
	}
	b := alignedBuf(int(vectorLen(bufs)))
	defer freeBuf(b)
	if _, err := m.dev.ReadAt(b, off); err != nil {
		return err
	}
	for o := 0; len(bufs) > 0; bufs = bufs[1:] {
		o += copy(bufs[0], b[o:])
	}
	return nil
}

// writev writes bufs one after the other from off on, as one request (see
// readv): a device without vectors gets them gathered into one write, so a
// power cut or torn write in tests hits the request as a whole.
func (m *member) writev(bufs [][]byte, off int64) error {
	if len(bufs) == 1 {
		_, err := m.dev.WriteAt(bufs[0], off)
		return err
	}
	if v, ok := m.dev.(blockdev.Vectored); ok {
		_, err := v.WritevAt(bufs, off)
		return err
	}
	b := alignedBuf(int(vectorLen(bufs)))
	defer freeBuf(b)
	o := 0
	for _, x := range bufs {
		o += copy(b[o:], x)
	}
	_, err := m.dev.WriteAt(b, off)
	return err
}

// appendIOV appends b to iov, extending the last buffer instead when b
// starts right where it ends in memory (pieces of one caller buffer), so
// the kernel gets as few and as large segments as there are.
func appendIOV(iov [][]byte, b []byte) [][]byte {
	if k := len(iov) - 1; k >= 0 && len(b) > 0 {
		last := iov[k]
		if cap(last)-len(last) >= len(b) && unsafe.Pointer(unsafe.SliceData(last[len(last):cap(last)])) == unsafe.Pointer(unsafe.SliceData(b)) {
			iov[k] = last[:len(last)+len(b)]
			return iov
		}
	}
	return append(iov, b)
}

func vectorLen(bufs [][]byte) int64 {
	var n int64
	for _, b := range bufs {
		n += int64(len(b))
	}
	return n
}
