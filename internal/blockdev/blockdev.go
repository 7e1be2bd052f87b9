// Package blockdev owns the block device seam: the Device interface that the
// RAID engine, replication and the NBD server all speak, plus optional
// capabilities (Trimmer, ZeroWriter). Implementations: memory devices for
// tests (error injection, torn writes, bit flips, crash keeping only what was
// flushed) and files / block devices (O_DIRECT where available). It imports
// nothing of ours; any package may import it.
package blockdev

import (
	"errors"
	"io"
)

// Device is a fixed-size random-access block device. WriteAt returning nil
// means the data is in the device's cache; only after Flush returns nil is it
// durable.
type Device interface {
	io.ReaderAt
	io.WriterAt
	Flush() error
	Size() int64
	Close() error
}

// Trimmer is implemented by devices that can discard a range. After Trim the
// range reads as zeroes or as its old contents (like NBD_CMD_TRIM).
type Trimmer interface {
	Trim(off, length int64) error
}

// ZeroWriter is implemented by devices that can zero a range faster than by
// writing zero buffers.
type ZeroWriter interface {
	WriteZeroes(off, length int64) error
}

// ErrOutOfRange is returned for I/O past the end of a device.
var ErrOutOfRange = errors.New("blockdev: I/O past the end of the device")
