//go:build !linux

package blockdev

import "os"

func openFile(path string, direct bool) (*os.File, error) { return os.OpenFile(path, os.O_RDWR, 0) }

func deviceSize(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func syncData(f *os.File) error { return f.Sync() }
