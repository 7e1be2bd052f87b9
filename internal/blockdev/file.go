package blockdev

import (
	"fmt"
	"os"
)

// File is a Device backed by a regular file or a block device.
type File struct {
	f    *os.File
	size int64
	path string
}

// OpenFile opens path read-write as a Device. With direct it uses O_DIRECT
// where the platform has it (callers must then use aligned buffers and
// offsets, multiples of 4096). Size is the file size, or the block device
// size.
func OpenFile(path string, direct bool) (*File, error) {
	f, err := openFile(path, direct)
	if err != nil {
		return nil, fmt.Errorf("blockdev: open %s: %w", path, err)
	}
	size, err := deviceSize(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blockdev: size of %s: %w", path, err)
	}
	return &File{f: f, size: size, path: path}, nil
}

func (d *File) ReadAt(p []byte, off int64) (int, error) {
	if err := checkRange(off, int64(len(p)), d.size); err != nil {
		return 0, err
	}
	return d.f.ReadAt(p, off)
}

func (d *File) WriteAt(p []byte, off int64) (int, error) {
	if err := checkRange(off, int64(len(p)), d.size); err != nil {
		return 0, err
	}
	return d.f.WriteAt(p, off)
}

// Flush makes every write that returned durable: fdatasync where the
// platform has it. A device's data never depends on the file's times, and
// fdatasync still writes what reading the data back needs (allocation,
// size); fsync also commits the inode's new mtime, which on ext4 is a
// journal commit, a second device flush, at every flush of an overwritten
// file (a 4 KiB write + flush cost about twice a raw fdatasync).
func (d *File) Flush() error { return syncData(d.f) }
func (d *File) Size() int64  { return d.size }
func (d *File) Close() error { return d.f.Close() }

// Path returns the path the device was opened from.
func (d *File) Path() string { return d.path }

// Fd exposes the descriptor for platform helpers (punch hole, fallocate).
func (d *File) Fd() uintptr { return d.f.Fd() }

func checkRange(off, n, size int64) error {
	if off < 0 || n < 0 || off+n > size || off+n < off {
		return fmt.Errorf("%w: offset %d length %d size %d", ErrOutOfRange, off, n, size)
	}
	return nil
}
