//go:build !linux

package blockdev

import "os"

func readvFull(f *os.File, bufs [][]byte, off int64) (int, error) {
	return eachBuffer(bufs, off, f.ReadAt)
}

func writevFull(f *os.File, bufs [][]byte, off int64) (int, error) {
	return eachBuffer(bufs, off, f.WriteAt)
}

// eachBuffer does op for every buffer at consecutive offsets.
func eachBuffer(bufs [][]byte, off int64, op func([]byte, int64) (int, error)) (int, error) {
	done := 0
	for _, b := range bufs {
		n, err := op(b, off+int64(done))
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}
