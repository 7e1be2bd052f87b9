package blockdev

import (
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// iovMax is the kernel's limit on buffers per preadv/pwritev (UIO_MAXIOV).
const iovMax = 1024

func readvFull(f *os.File, bufs [][]byte, off int64) (int, error) {
	return vectorFull(f, bufs, off, unix.Preadv)
}

func writevFull(f *os.File, bufs [][]byte, off int64) (int, error) {
	return vectorFull(f, bufs, off, unix.Pwritev)
}

// vectorFull repeats op until every byte moved: a short transfer (a signal,
// a file system that splits the request) continues where it stopped.
func vectorFull(f *os.File, bufs [][]byte, off int64, op func(int, [][]byte, int64) (int, error)) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	bufs = advance(append([][]byte(nil), bufs...), 0)
	done := 0
	for len(bufs) > 0 {
		var n int
		var opErr error
		if err := rc.Control(func(fd uintptr) {
			n, opErr = op(int(fd), bufs[:min(len(bufs), iovMax)], off)
		}); err != nil {
			return done, err
		}
		if errors.Is(opErr, unix.EINTR) {
			continue
		}
		if opErr != nil {
			return done, &os.PathError{Op: "vectored io", Path: f.Name(), Err: opErr}
		}
		if n == 0 {
			return done, io.ErrUnexpectedEOF
		}
		done += n
		off += int64(n)
		bufs = advance(bufs, n)
	}
	return done, nil
}
