package meta

import (
	"fmt"

	"tandem/internal/blockdev"
)

// Data returns the data area as a device: bytes [0, DataSize) of the
// backing device, every access bounds-checked. Every data write must go
// through it (or be counted by it): the metadata orders its own writes
// after the data's flushes. Its Close does nothing; the Meta and the
// backing device stay open.
func (m *Meta) Data() *DataDevice { return &DataDevice{m: m} }

// DataDevice is the data area of a replica's backing device. Besides
// blockdev.Device it offers Trim and WriteZeroes, passed to the backing
// device where it has them.
type DataDevice struct{ m *Meta }

var (
	_ blockdev.Device     = (*DataDevice)(nil)
	_ blockdev.Trimmer    = (*DataDevice)(nil)
	_ blockdev.ZeroWriter = (*DataDevice)(nil)
)

func (d *DataDevice) check(off, n int64) error {
	if size := d.m.lay.DataSize; off < 0 || n < 0 || off > size || n > size-off {
		return fmt.Errorf("%w: offset %d length %d, the volume's data is %d bytes", blockdev.ErrOutOfRange, off, n, size)
	}
	return nil
}

// wrote counts a completed data write.
func (d *DataDevice) wrote(err error) {
	if err == nil {
		d.m.writes.Add(1)
	}
}

func (d *DataDevice) ReadAt(p []byte, off int64) (int, error) {
	if err := d.check(off, int64(len(p))); err != nil {
		return 0, err
	}
	return d.m.dev.ReadAt(p, off)
}

func (d *DataDevice) WriteAt(p []byte, off int64) (int, error) {
	if err := d.check(off, int64(len(p))); err != nil {
		return 0, err
	}
	n, err := d.m.dev.WriteAt(p, off)
	d.wrote(err)
	return n, err
}

// Flush makes every completed data write durable.
func (d *DataDevice) Flush() error { return d.m.flushData() }
func (d *DataDevice) Size() int64  { return d.m.lay.DataSize }
func (d *DataDevice) Close() error { return nil }

// Trim discards a range where the backing device can, else does nothing
// (a trimmed range may read as its old contents).
func (d *DataDevice) Trim(off, n int64) error {
	if err := d.check(off, n); err != nil {
		return err
	}
	t, ok := d.m.dev.(blockdev.Trimmer)
	if !ok {
		return nil
	}
	err := t.Trim(off, n)
	d.wrote(err)
	return err
}

// WriteZeroes zeroes a range, by the backing device where it can.
func (d *DataDevice) WriteZeroes(off, n int64) error {
	if err := d.check(off, n); err != nil {
		return err
	}
	if z, ok := d.m.dev.(blockdev.ZeroWriter); ok {
		err := z.WriteZeroes(off, n)
		d.wrote(err)
		return err
	}
	zero := blockdev.AlignedBuffer(int(min(n, 1<<20)))
	for at := off; at < off+n; at += int64(len(zero)) {
		if _, err := d.m.dev.WriteAt(zero[:min(int64(len(zero)), off+n-at)], at); err != nil {
			return err
		}
	}
	d.wrote(nil)
	return nil
}
