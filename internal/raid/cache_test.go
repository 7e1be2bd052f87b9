package raid

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// Sequential reads run ahead of the reader; writes landing in the windows
// read ahead (queued or written) must still be seen.
func TestReadAheadSeesLaterWrites(t *testing.T) {
	lc := levelCases()[4] // raid5 on 4
	ta := newTestArray(t, lc.co, lc.n, 0, 2*testMemberSize)
	r := rand.New(rand.NewPCG(8, 8))
	step := int64(24 << 10)
	size := int64(len(ta.ref))
	buf := make([]byte, step)
	for off := int64(0); off+step <= size; off += step {
		if r.IntN(4) == 0 {
			// A write just ahead of the reader, inside the readahead windows.
			w := make([]byte, r.IntN(20000)+1)
			for i := range w {
				w[i] = byte(r.Uint32())
			}
			at := min(off+step+r.Int64N(1<<20), size-int64(len(w)))
			ta.write(w, at)
		}
		if _, err := ta.a.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, ta.ref[off:off+step]) {
			t.Fatalf("stale read at %d", off)
		}
	}
}

// Writes queued behind the caller are visible to reads at once and durable
// after Flush, in order, even when they overlap.
func TestWriteBehindKeepsOrderAndVisibility(t *testing.T) {
	lc := levelCases()[6] // raid6 on 5
	ta := newTestArray(t, lc.co, lc.n, 0, testMemberSize)
	r := rand.New(rand.NewPCG(9, 9))
	for i := 0; i < 200; i++ {
		n := r.Int64N(40000) + 1
		off := r.Int64N(int64(len(ta.ref)) - n)
		if r.IntN(3) == 0 {
			off = int64(i%7) * 4096 // overlapping rewrites of the same place
		}
		p := make([]byte, n)
		for j := range p {
			p[j] = byte(r.Uint32())
		}
		ta.write(p, off)
		got := make([]byte, n)
		if _, err := ta.a.ReadAt(got, off); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("write %d not visible: %v", i, err)
		}
	}
	ta.verify("before flush")
	ta.reopen(nil)
	ta.verify("after reopen")
}

// A queued write that fails after it was acknowledged fails the next
// Flush, even when an unrelated WriteAt has already returned the error: a
// client must never see a FLUSH succeed over a write that did not land.
func TestFlushReportsALostQueuedWrite(t *testing.T) {
	lc := levelCases()[4] // raid5 on 4: stripe 0 is d0 m0, d1 m1, d2 m2, P m3
	ta := newTestArray(t, lc.co, lc.n, 0, testMemberSize)
	if err := ta.a.Fail("m0"); err != nil {
		t.Fatal(err)
	}
	// A corrupt block under d1 (its checksum fails): a partial write of d2
	// must read it to reconstruct d0 for the parity, and cannot.
	ta.faults[1].FlipOnRead(ta.a.lay.DataOff+100, 3)
	if _, err := ta.a.WriteAt(make([]byte, BlockSize), 2*ta.a.geo.Chunk); err != nil {
		t.Fatalf("the write is queued and acknowledged: %v", err)
	}
	// Somebody else's write takes the error first (or not: either way the
	// Flush must fail).
	far := ta.a.Size() - 2*ta.a.geo.StripeBytes()
	_, _ = ta.a.WriteAt(make([]byte, BlockSize), far)
	_, _ = ta.a.WriteAt(make([]byte, BlockSize), far+BlockSize)
	if err := ta.a.Flush(); err == nil {
		t.Fatal("Flush succeeded although an acknowledged write was lost")
	}
	if err := ta.a.Flush(); err != nil {
		t.Fatalf("the loss is reported once; the next Flush has nothing new to report: %v", err)
	}
}
