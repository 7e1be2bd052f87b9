package seal

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

var key = bytes.Repeat([]byte{7}, 32)

func TestSealOpenRoundTrip(t *testing.T) {
	s := NewSealer(key, 2, 1000)
	o := NewOpener(key)
	pkt := s.Seal(nil, 1, []byte("hello"))
	if len(pkt) != Overhead+5 {
		t.Fatalf("len %d", len(pkt))
	}
	h, p, err := o.Open(pkt, 0)
	if err != nil || string(p) != "hello" || h.Sender != 2 || h.Link != 1 || h.Boot != 1000 || h.Counter != 1 {
		t.Fatalf("open: %+v %q %v", h, p, err)
	}
}

func TestHeaderGolden(t *testing.T) {
	s := NewSealer(nil, 3, 0x0102030405060708)
	pkt := s.Seal(nil, 1, []byte{0xAA})
	want := "544401010301000001020304050607080000000000000001aa"
	if got := hex.EncodeToString(pkt); got != want {
		t.Fatalf("insecure datagram\n got %s\nwant %s", got, want)
	}
}

func TestRejects(t *testing.T) {
	s := NewSealer(key, 1, 5)
	o := NewOpener(key)
	p1 := s.Seal(nil, 0, []byte("a"))
	p2 := s.Seal(nil, 0, []byte("b"))
	if _, _, err := o.Open(p2, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := o.Open(p1, 0); err != nil {
		t.Fatalf("out-of-order within window must pass: %v", err)
	}
	if _, _, err := o.Open(p1, 0); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay: %v", err)
	}
	tampered := append([]byte(nil), s.Seal(nil, 0, []byte("c"))...)
	tampered[len(tampered)-1] ^= 1
	if _, _, err := o.Open(tampered, 0); !errors.Is(err, ErrAuth) {
		t.Fatalf("tampered: %v", err)
	}
	hdr := append([]byte(nil), s.Seal(nil, 0, []byte("d"))...)
	hdr[5] = 3 // link index is authenticated too
	if _, _, err := o.Open(hdr, 0); !errors.Is(err, ErrAuth) {
		t.Fatalf("tampered header: %v", err)
	}
	other := NewSealer(bytes.Repeat([]byte{8}, 32), 1, 6)
	if _, _, err := o.Open(other.Seal(nil, 0, []byte("x")), DeriveEvery); !errors.Is(err, ErrAuth) {
		t.Fatalf("wrong key: %v", err)
	}
	// A forged packet must not have moved the window: the real sender's next
	// packet still passes.
	if _, _, err := o.Open(s.Seal(nil, 0, []byte("e")), DeriveEvery); err != nil {
		t.Fatalf("after forgery: %v", err)
	}
	if _, _, err := o.Open(NewSealer(nil, 1, 7).Seal(nil, 0, nil), 0); !errors.Is(err, ErrInsecure) {
		t.Fatalf("plaintext to secure cluster: %v", err)
	}
	if _, _, err := o.Open([]byte("GET / HTTP/1.1\r\n\r\n......."), 0); !errors.Is(err, ErrMagic) {
		t.Fatalf("garbage: %v", err)
	}
}

func TestBootOrdering(t *testing.T) {
	o := NewOpener(key)
	old := NewSealer(key, 1, 100)
	oldPkt := old.Seal(nil, 0, nil)
	cur := NewSealer(key, 1, 200)
	if _, _, err := o.Open(cur.Seal(nil, 0, nil), 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := o.Open(oldPkt, 1e9); !errors.Is(err, ErrReplay) {
		t.Fatalf("old boot while current is alive: %v", err)
	}
	// Boot ids only grow: an older one is never believed again, however
	// long the current one has been silent (it was accepted after 2 s).
	if _, _, err := o.Open(oldPkt, 3600e9); !errors.Is(err, ErrReplay) {
		t.Fatalf("old boot after an hour of silence: %v", err)
	}
	if n := o.Derivations(); n != 1 {
		t.Fatalf("%d key derivations: an older boot must be refused before any", n)
	}
}

// Item 4 of issue 10: forged datagrams claiming new boots of a sender cost
// at most one key derivation per DeriveEvery; a genuine restart still gets
// through once the flood's slot has passed.
func TestNewBootDerivationsAreRateLimited(t *testing.T) {
	o := NewOpener(key)
	cur := NewSealer(key, 1, 100)
	if _, _, err := o.Open(cur.Seal(nil, 0, nil), 0); err != nil {
		t.Fatal(err)
	}
	forged := 0
	for i := 0; i < 10000; i++ {
		pkt := NewSealer([]byte("not the cluster key, 32 bytes!!!"), 1, uint64(1000+i)).Seal(nil, 0, nil)
		if _, _, err := o.Open(pkt, int64(i)*1000); errors.Is(err, ErrRate) {
			forged++
		}
	}
	if n := o.Derivations(); n > 2 {
		t.Fatalf("10000 forged boots in 10 ms cost %d key derivations", n)
	}
	next := NewSealer(key, 1, 200000) // the sender restarted
	if _, _, err := o.Open(next.Seal(nil, 0, nil), 10e6+DeriveEvery); err != nil {
		t.Fatalf("a genuine new boot after the flood: %v", err)
	}
	if forged < 9990 {
		t.Fatalf("only %d of 10000 forged boots were turned away before the cipher", forged)
	}
}

func TestWindowProperty(t *testing.T) {
	var w window
	seen := map[uint64]bool{}
	seq := []uint64{1, 5, 3, 70, 6, 7, 69, 2, 200, 150, 137, 136, 300, 299}
	for _, c := range seq {
		want := !seen[c] && (c > w.highest || w.highest-c < windowSize)
		if got := w.check(c); got != want {
			t.Fatalf("check(%d) = %v, want %v (highest %d)", c, got, want, w.highest)
		}
		if want {
			w.mark(c)
			seen[c] = true
		}
	}
}

func FuzzOpen(f *testing.F) {
	s := NewSealer(key, 1, 9)
	f.Add(s.Seal(nil, 0, []byte("seed")))
	f.Add([]byte("TD"))
	f.Fuzz(func(t *testing.T, b []byte) {
		o := NewOpener(key)
		_, _, _ = o.Open(b, 0)
	})
}
