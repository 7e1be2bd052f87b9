package durable

import (
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The mode is the one asked for, whatever the umask: wider than it
// allows, and narrower than CreateTemp's 0600.
func TestWriteFileModeIgnoresTheUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	path := filepath.Join(dir, "rec.json")
	if err := WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantFile(t, path, "x", 0o644)
	if err := WriteNew(filepath.Join(dir, "new"), []byte("y"), 0o640); err != nil {
		t.Fatal(err)
	}
	wantFile(t, filepath.Join(dir, "new"), "y", 0o640)
	if err := WriteFile(path, []byte("z"), 0o400); err != nil {
		t.Fatal(err)
	}
	wantFile(t, path, "z", 0o400)
}

// A write that fails half way (the file size limit: EFBIG, the runtime
// ignores SIGXFSZ) leaves the old content and no temporary file.
func TestWriteFileFailingHalfWayKeepsTheOldContent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rec.json")
	if err := WriteFile(path, []byte("old\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	limit := old
	limit.Cur = 4096
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &limit); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(path, make([]byte, 8192), 0o640)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(err, syscall.EFBIG) {
		t.Fatalf("writing past the file size limit: %v, want EFBIG", err)
	}
	if !strings.HasPrefix(err.Error(), "durable: write "+path+": write ") {
		t.Errorf("error %q does not say it is the write for %s that failed", err, path)
	}
	wantFile(t, path, "old\n", 0o640)
	wantNames(t, dir, "rec.json")
}
