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

func TestMemCrashKeepingChoosesPendingWrites(t *testing.T) {
	m := NewMem(3 * 4096)
	m.WriteAt([]byte{1}, 0)
	m.WriteAt([]byte{2}, 4096)
	m.WriteAt([]byte{3}, 8192)
	c := m.CrashKeeping(func(i int) bool { return i != 1 })
	got := c.Bytes()
	if got[0] != 1 || got[4096] != 0 || got[8192] != 3 {
		t.Fatalf("kept %d %d %d, want 1 0 3", got[0], got[4096], got[8192])
	}
	m.FlipBit(0, 1)
	if b := m.Crash().Bytes(); b[0] != 2 {
		t.Fatalf("flip on durable image: %d", b[0])
	}
}

func TestFaultyInjects(t *testing.T) {
	m := NewMem(8192)
	f := NewFaulty(m)
	buf := make([]byte, 4096)
	f.FailRange(4096, 1)
	if _, err := f.ReadAt(buf, 4096); !errors.Is(err, ErrInjected) {
		t.Fatalf("bad range read: %v", err)
	}
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatalf("good range read: %v", err)
	}
	f.Heal()
	f.TearNextWrite(100)
	if _, err := f.WriteAt(bytes.Repeat([]byte{9}, 4096), 0); !errors.Is(err, ErrInjected) {
		t.Fatalf("torn write: %v", err)
	}
	f.ReadAt(buf, 0)
	if buf[99] != 9 || buf[100] != 0 {
		t.Fatalf("torn write landed %d/%d", buf[99], buf[100])
	}
	f.FlipOnRead(5, 0)
	f.ReadAt(buf, 0)
	if buf[5] != 8 {
		t.Fatalf("flip on read: %d", buf[5])
	}
	cut := NewPowerCut(1, 0)
	f.Heal()
	f.SharePowerCut(cut)
	if _, err := f.WriteAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Flush(); !errors.Is(err, ErrPowerCut) || !cut.Fired() {
		t.Fatalf("power cut: %v", err)
	}
}
