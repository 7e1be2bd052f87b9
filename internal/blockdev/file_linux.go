package blockdev

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

func openFile(path string, direct bool) (*os.File, error) {
	flags := os.O_RDWR
	if direct {
		flags |= unix.O_DIRECT
	}
	return os.OpenFile(path, flags, 0)
}

func syncData(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}

func deviceSize(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if st.Mode()&os.ModeDevice == 0 {
		return st.Size(), nil
	}
	var n uint64
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&n)))
	if errno != 0 {
		return 0, errno
	}
	return int64(n), nil
}
