package blockdev

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestMemCrashKeepsOnlyFlushed(t *testing.T) {
	m := NewMem(8192)
	m.WriteAt(bytes.Repeat([]byte{1}, 4096), 0)
	m.Flush()
	m.WriteAt(bytes.Repeat([]byte{2}, 4096), 4096)
	c := m.Crash()
	buf := make([]byte, 8192)
	c.ReadAt(buf, 0)
	if buf[0] != 1 || buf[4096] != 0 {
		t.Fatalf("crash image: first=%d second=%d, want 1 and 0", buf[0], buf[4096])
	}
	if _, err := m.WriteAt(buf[:2], 8191); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("write past end: %v", err)
	}
}

func TestFileDevice(t *testing.T) {
	p := filepath.Join(t.TempDir(), "d")
	if err := os.WriteFile(p, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := OpenFile(p, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Size() != 1<<20 {
		t.Fatalf("size %d", d.Size())
	}
	want := bytes.Repeat([]byte("x"), 512)
	if _, err := d.WriteAt(want, 4096); err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 512)
	if _, err := d.ReadAt(got, 4096); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back: %v", err)
	}
	if _, err := d.ReadAt(got, 1<<20-100); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("read past end: %v", err)
	}
}
