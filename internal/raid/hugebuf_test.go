package raid

import "testing"

func TestLargeBuffersAreRecycledAndAligned(t *testing.T) {
	b := alignedBuf(3 << 20)
	if len(b) != 3<<20 || cap(b) != 4<<20 || uintptrOf(b)%BlockSize != 0 {
		t.Fatalf("len %d cap %d addr %#x", len(b), cap(b), uintptrOf(b))
	}
	for i := range b {
		b[i] = byte(i)
	}
	huged := putHuge(b)
	if !huged {
		freeBuf(b)
	}
	c := alignedBuf(4 << 20)
	if huged && &c[0] != &b[0] {
		t.Fatal("a freed huge buffer was not handed out again")
	}
	if huged && uintptrOf(c)%hugePage != 0 {
		t.Fatalf("huge buffer at %#x, not on a 2 MiB boundary", uintptrOf(c))
	}
	freeBuf(c)
	// A buffer of ours that did not come from huge pages, and a foreign
	// one, are not taken.
	if putHuge(make([]byte, 4<<20)) || putHuge(c[:1<<20:1<<20]) {
		t.Fatal("putHuge took a buffer that is not one of its own")
	}
	small := alignedBuf(64 << 10)
	if putHuge(small) {
		t.Fatal("small buffers do not come from huge pages")
	}
	freeBuf(small)
}
