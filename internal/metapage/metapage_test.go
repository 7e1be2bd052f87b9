package metapage

import (
	"bytes"
	"encoding/hex"
	"testing"
)

func TestPickNewestValidCopy(t *testing.T) {
	seed := [16]byte{5}
	kind := [4]byte{'T', 'E', 'S', 'T'}
	a, b := make([]byte, Size), make([]byte, Size)
	Encode(a, seed, kind, 3, 10, []byte("old"))
	Encode(b, seed, kind, 3, 11, []byte("new"))
	if seq, p, ok := Pick(a, b, seed, kind, 3); !ok || seq != 11 || !bytes.HasPrefix(p, []byte("new")) {
		t.Fatal("newest not picked")
	}
	b[100] ^= 1 // torn newer copy
	if seq, p, ok := Pick(a, b, seed, kind, 3); !ok || seq != 10 || !bytes.HasPrefix(p, []byte("old")) {
		t.Fatal("older copy not used when newer is torn")
	}
	if _, _, ok := Pick(a, b, [16]byte{6}, kind, 3); ok {
		t.Fatal("page of another owner accepted")
	}
	if _, _, ok := Pick(a, b, seed, kind, 4); ok {
		t.Fatal("page with another index accepted")
	}
	if _, _, err := Decode(a[:100], seed, kind, 3); err != ErrBadPage {
		t.Fatalf("short page: %v", err)
	}
}

func TestPageBytes(t *testing.T) {
	p := make([]byte, Size)
	Encode(p, [16]byte{1}, [4]byte{'T', 'E', 'S', 'T'}, 2, 7, []byte{0xaa})
	if got, want := hex.EncodeToString(p[:Header+1]), "54455354020000000700000000000000aa"; got != want {
		t.Fatalf("header bytes %s, want %s", got, want)
	}
	if got, want := hex.EncodeToString(p[Size-4:]), "ace07752"; got != want {
		t.Fatalf("crc bytes %s, want %s", got, want)
	}
}
