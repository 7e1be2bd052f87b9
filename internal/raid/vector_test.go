package raid

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"tandem/internal/blockdev"
	"tandem/internal/clock"
	"tandem/internal/events"
)

// vecMem is a memory device that also takes vectored I/O, as files do, so
// the scatter/gather paths (member reads straight into the caller's buffer,
// a member's chunks written from where they lie) run against a model.
type vecMem struct {
	*blockdev.Mem
	readv, writev *atomic.Int64
}

func (d vecMem) ReadvAt(bufs [][]byte, off int64) (int, error) {
	d.readv.Add(1)
	b := make([]byte, vectorLen(bufs))
	n, err := d.ReadAt(b, off)
	if err != nil {
		return n, err
	}
	for o := 0; len(bufs) > 0; bufs = bufs[1:] {
		o += copy(bufs[0], b[o:])
	}
	return n, nil
}

func (d vecMem) WritevAt(bufs [][]byte, off int64) (int, error) {
	d.writev.Add(1)
	return d.WriteAt(bytes.Join(bufs, nil), off)
}

func TestVectoredMemberIO(t *testing.T) {
	for _, lc := range levelCases() {
		t.Run(lc.name, func(t *testing.T) {
			var readv, writev atomic.Int64
			var ms []Member
			for i := 0; i < lc.n; i++ {
				ms = append(ms, Member{fmt.Sprintf("m%d", i), vecMem{blockdev.NewMem(testMemberSize), &readv, &writev}})
			}
			co := lc.co
			co.AssumeClean = true
			o := testOptions(t, clock.NewFake(time.Unix(1_700_000_000, 0)), &events.Recorder{})
			a, err := Create(ms, nil, co, o)
			if err != nil {
				t.Fatal(err)
			}
			ref := make([]byte, a.Size())
			a.WriteAt(ref, 0) // zero everything, so parity and checksums hold
			r := rand.New(rand.NewPCG(5, uint64(lc.n)))
			stripe := a.geo.StripeBytes()
			for i := 0; i < 60; i++ {
				// Runs of whole stripes (vectored writes), unaligned ones,
				// from aligned and unaligned buffers.
				n := (r.Int64N(4) + 1) * stripe
				off := r.Int64N(a.Size()/stripe-4) * stripe
				if i%3 == 0 {
					off, n = r.Int64N(a.Size()-3*stripe), r.Int64N(3*stripe)+1
				}
				buf := blockdev.AlignedBuffer(int(n) + 1)
				p := buf[:n]
				if i%4 == 0 {
					p = buf[1 : n+1]
				}
				for j := range p {
					p[j] = byte(r.Uint32())
				}
				if _, err := a.WriteAt(p, off); err != nil {
					t.Fatalf("write %d+%d: %v", off, n, err)
				}
				copy(ref[off:], p)
				got := buf[:n]
				if i%5 == 0 {
					got = buf[1 : n+1]
				}
				if _, err := a.ReadAt(got, off); err != nil || !bytes.Equal(got, ref[off:off+n]) {
					t.Fatalf("read back %d+%d: %v", off, n, err)
				}
			}
			whole := blockdev.AlignedBuffer(len(ref))
			if _, err := a.ReadAt(whole, 0); err != nil || !bytes.Equal(whole, ref) {
				t.Fatalf("whole read: %v", err)
			}
			if rep, err := a.Check(context.Background(), false); err != nil || rep.Mismatches+rep.ChecksumErrors > 0 {
				t.Fatalf("check: %+v %v", rep, err)
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			// A mirror member's pieces lie together in the caller's buffer:
			// one plain read each.
			if (readv.Load() == 0 && lc.co.Level != Raid1) || writev.Load() == 0 {
				t.Fatalf("vectored calls: %d reads, %d writes", readv.Load(), writev.Load())
			}
		})
	}
}

func TestWriteBehindEntrySizes(t *testing.T) {
	mib := int64(1 << 20)
	for _, c := range []struct {
		name                string
		stripe, target, off int64
		n, want             int64
	}{
		{"aligned start", 256 << 10, 4 * mib, 0, mib, 4 * mib},
		{"ends on a stripe boundary", 192 << 10, 3 * mib, 100 << 10, 4096, 3*mib - 100<<10},
		{"a large write is one entry", 256 << 10, 4 * mib, 0, 8 * mib, 8 * mib},
		{"stripe larger than target", 8 * mib, 4 * mib, 4096, 4096, 4 * mib},
	} {
		if got := wbEntrySize(c.stripe, c.target, c.off, c.n); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	g := Geometry{Level: Raid5, Members: 5, Chunk: 64 << 10}.Normalize()
	if got := wbTarget(g, 32<<20); got != 8<<20 {
		t.Errorf("raid5 x5 target %d, want 8 MiB (2 MiB per data member)", got)
	}
	if got := wbTarget(g, 16<<20); got != 4<<20 {
		t.Errorf("raid5 x5 target %d in a 16 MiB queue, want 4 MiB (a quarter of the queue)", got)
	}
	g = Geometry{Level: Raid6, Members: 5, Chunk: 64 << 10}.Normalize()
	if got := wbTarget(g, 32<<20); got%g.StripeBytes() != 0 || got > 6<<20 || got < 5<<20 {
		t.Errorf("raid6 x5 target %d: whole stripes, about 6 MiB", got)
	}
}

func TestAppendIOVMergesAdjacentPieces(t *testing.T) {
	buf := make([]byte, 100)
	other := make([]byte, 100)
	iov := appendIOV(nil, buf[0:10])
	iov = appendIOV(iov, buf[10:30]) // continues buf: merged
	iov = appendIOV(iov, buf[40:50]) // a hole: new segment
	iov = appendIOV(iov, other[0:10])
	iov = appendIOV(iov, buf[50:60]) // continues buf[40:50], but not the last segment
	if len(iov) != 4 || len(iov[0]) != 30 || &iov[0][0] != &buf[0] || len(iov[1]) != 10 || &iov[2][0] != &other[0] {
		t.Fatalf("segments %d: %v", len(iov), []int{len(iov[0]), len(iov[1]), len(iov[2])})
	}
	if vectorLen(iov) != 60 {
		t.Fatalf("length %d", vectorLen(iov))
	}
}
