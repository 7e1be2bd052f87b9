package nbd

import (
	"fmt"
	"sync"

	"tandem/internal/blockdev"
)

// hookDev wraps a memory device with hooks for failure and timing tests.
type hookDev struct {
	*blockdev.Mem
	mu      sync.Mutex
	onRead  func(off int64) error // nil: no hook
	onWrite func(off int64) error
	onFlush func() error
}

func newHookDev(size int64) *hookDev { return &hookDev{Mem: blockdev.NewMem(size)} }

func (d *hookDev) hooks() (r, w func(int64) error, f func() error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.onRead, d.onWrite, d.onFlush
}

func (d *hookDev) ReadAt(p []byte, off int64) (int, error) {
	if r, _, _ := d.hooks(); r != nil {
		if err := r(off); err != nil {
			return 0, err
		}
	}
	return d.Mem.ReadAt(p, off)
}

func (d *hookDev) WriteAt(p []byte, off int64) (int, error) {
	if _, w, _ := d.hooks(); w != nil {
		if err := w(off); err != nil {
			return 0, err
		}
	}
	return d.Mem.WriteAt(p, off)
}

func (d *hookDev) Flush() error {
	if _, _, f := d.hooks(); f != nil {
		if err := f(); err != nil {
			return err
		}
	}
	return d.Mem.Flush()
}

// discardDev records Trim and WriteZeroes calls (it implements both
// optional capabilities) and zeroes on WriteZeroes.
type discardDev struct {
	*blockdev.Mem
	mu     sync.Mutex
	trims  [][2]int64
	zeroed [][2]int64
}

func (d *discardDev) Trim(off, n int64) error {
	d.mu.Lock()
	d.trims = append(d.trims, [2]int64{off, n})
	d.mu.Unlock()
	return nil
}

func (d *discardDev) WriteZeroes(off, n int64) error {
	d.mu.Lock()
	d.zeroed = append(d.zeroed, [2]int64{off, n})
	d.mu.Unlock()
	_, err := d.Mem.WriteAt(make([]byte, n), off)
	return err
}

func (d *discardDev) calls() (trims, zeroed string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return fmt.Sprint(d.trims), fmt.Sprint(d.zeroed)
}
