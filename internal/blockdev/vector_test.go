package blockdev

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestFileVectored(t *testing.T) {
	p := filepath.Join(t.TempDir(), "d")
	const size = 8 << 20
	if err := os.WriteFile(p, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, direct := range []bool{false, true} {
		d, err := OpenFile(p, direct)
		if err != nil {
			t.Skipf("open (direct=%v): %v", direct, err)
		}
		// More buffers than one preadv takes (1024), so the call is split.
		var src, dst [][]byte
		var want []byte
		for i := 0; i < 1500; i++ {
			b := AlignedBuffer(4096)
			for j := range b {
				b[j] = byte(i + j)
			}
			src = append(src, b)
			dst = append(dst, AlignedBuffer(4096))
			want = append(want, b...)
		}
		if n, err := d.WritevAt(src, 4096); err != nil || n != len(want) {
			t.Fatalf("direct=%v: writev: %d %v", direct, n, err)
		}
		if n, err := d.ReadvAt(dst, 4096); err != nil || n != len(want) {
			t.Fatalf("direct=%v: readv: %d %v", direct, n, err)
		}
		if got := bytes.Join(dst, nil); !bytes.Equal(got, want) {
			t.Fatalf("direct=%v: read back differs", direct)
		}
		plain := AlignedBuffer(len(want))
		if _, err := d.ReadAt(plain, 4096); err != nil || !bytes.Equal(plain, want) {
			t.Fatalf("direct=%v: ReadAt after WritevAt differs: %v", direct, err)
		}
		if _, err := d.ReadvAt(dst[:2], size-4096); !errors.Is(err, ErrOutOfRange) {
			t.Fatalf("direct=%v: readv past end: %v", direct, err)
		}
		if _, err := d.WritevAt(dst[:2], size-4096); !errors.Is(err, ErrOutOfRange) {
			t.Fatalf("direct=%v: writev past end: %v", direct, err)
		}
		d.Close()
	}
}

func TestAdvanceSkipsTransferredBytes(t *testing.T) {
	bufs := [][]byte{make([]byte, 3), {}, make([]byte, 5), make([]byte, 2)}
	got := advance(append([][]byte(nil), bufs...), 4)
	if len(got) != 2 || len(got[0]) != 4 || len(got[1]) != 2 {
		t.Fatalf("advance 4: %d buffers, first %d", len(got), len(got[0]))
	}
	if got := advance(append([][]byte(nil), bufs...), 3); len(got) != 2 || len(got[0]) != 5 {
		t.Fatalf("advance 3 must also drop the empty buffer: %v", got)
	}
	if got := advance(append([][]byte(nil), bufs...), 10); len(got) != 0 {
		t.Fatalf("advance all: %v", got)
	}
}
