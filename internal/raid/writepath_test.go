package raid

import (
	"sync/atomic"
	"testing"

	"tandem/internal/blockdev"
)

// BenchmarkNBDWritePath is what the array's write-through path costs per
// NBD write: 256 KiB writes (nbdcopy's request size) to a single-member
// RAID 0, several writers at once, against the same writes straight to the
// member. The member is memory, so the figures are the array's own CPU per
// byte (block checksums, bitmap, locks, planning) on top of the copy.
// Write-behind is off here to see that path alone; `tandem raid serve`
// runs with it on, which adds one copy per write before the same path.
func BenchmarkNBDWritePath(b *testing.B) {
	const req, span = 256 << 10, 64 << 20
	run := func(b *testing.B, dev blockdev.Device) {
		var next atomic.Int64
		b.SetBytes(req)
		b.SetParallelism(2)
		b.RunParallel(func(pb *testing.PB) {
			buf := alignedBuf(req)
			for i := range buf {
				buf[i] = byte(i * 7)
			}
			for pb.Next() {
				off := next.Add(req) % span
				if _, err := dev.WriteAt(buf, off); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.Run("member", func(b *testing.B) { run(b, &plainMem{data: make([]byte, span)}) })
	for _, sums := range []bool{true, false} {
		name := "raid0-checksums"
		if !sums {
			name = "raid0-no-checksums"
		}
		b.Run(name, func(b *testing.B) {
			m := &plainMem{data: make([]byte, span+64<<20)}
			a, err := Create([]Member{{Name: "m0", Dev: m}}, nil, CreateOptions{Name: "b", Level: Raid0, AssumeClean: true, NoChecksums: !sums},
				Options{WriteBehind: -1, ReadAhead: -1, NoBackground: true})
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			run(b, a)
		})
	}
}

// plainMem is memory with nothing else: blockdev.Mem keeps the writes since
// the last Flush apart (for crash tests), which costs more than the copy.
type plainMem struct{ data []byte }

func (m *plainMem) ReadAt(p []byte, off int64) (int, error) {
	return copy(p, m.data[off:]), nil
}

func (m *plainMem) WriteAt(p []byte, off int64) (int, error) {
	return copy(m.data[off:], p), nil
}

func (m *plainMem) Flush() error { return nil }
func (m *plainMem) Size() int64  { return int64(len(m.data)) }
func (m *plainMem) Close() error { return nil }

// Full-stripe writes read nothing from the members (parity comes from the
// new data alone); a partial-stripe write does read.
func TestFullStripeWritesReadNothing(t *testing.T) {
	for _, lc := range []levelCase{levelCases()[4], levelCases()[6]} { // raid5 on 4, raid6 on 5
		t.Run(lc.name, func(t *testing.T) {
			ta := newTestArray(t, lc.co, lc.n, 0, testMemberSize)
			g := ta.a.geo
			reads := func() int {
				n := 0
				for _, f := range ta.faults {
					r, _ := f.Counts()
					n += r
				}
				return n
			}
			full := make([]byte, 4*g.StripeBytes())
			for i := range full {
				full[i] = byte(i * 7)
			}
			at := 2 * g.StripeBytes()
			// Once, so metadata the write path looks up (checksum pages) is loaded.
			ta.write(full, at)
			if err := ta.a.Flush(); err != nil {
				t.Fatal(err)
			}
			before := reads()
			ta.write(full, at)
			if err := ta.a.Flush(); err != nil {
				t.Fatal(err)
			}
			if n := reads() - before; n != 0 {
				t.Fatalf("full-stripe writes made %d member reads", n)
			}
			before = reads()
			ta.write(full[:BlockSize], at+g.Chunk)
			if err := ta.a.Flush(); err != nil {
				t.Fatal(err)
			}
			if reads() == before {
				t.Fatal("a partial-stripe write read nothing: the test cannot see reads")
			}
			ta.verify("after the writes")
		})
	}
}
