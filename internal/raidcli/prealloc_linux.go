package raidcli

import (
	"os"

	"golang.org/x/sys/unix"
)

// preallocate reserves the file's blocks so O_DIRECT writes do not pay for
// block allocation (as a partition or an LV would not).
func preallocate(f *os.File, size int64) error {
	return unix.Fallocate(int(f.Fd()), 0, 0, size)
}
