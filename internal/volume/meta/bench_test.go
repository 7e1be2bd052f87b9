package meta

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"tandem/internal/blockdev"
)

// fileDevice is a file-backed device of size bytes in a temporary folder.
func fileDevice(b *testing.B, size int64) *blockdev.File {
	p := filepath.Join(b.TempDir(), "backing")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		b.Fatal(err)
	}
	f, err := blockdev.OpenFile(p, false)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return f
}

// pairTimer times each measured write right after its baseline, so both
// see the same machine (a shared one's load changes by the second).
type pairTimer struct{ raw, measured time.Duration }

func (p *pairTimer) run(raw, measured func()) {
	t0 := time.Now()
	raw()
	t1 := time.Now()
	measured()
	p.raw += t1.Sub(t0)
	p.measured += time.Since(t1)
}

func (p *pairTimer) report(b *testing.B, n int, unit string) {
	b.ReportMetric(float64(p.measured.Nanoseconds())/float64(n), "ns/write")
	b.ReportMetric(float64(p.raw.Nanoseconds())/float64(n), "raw_ns/write")
	b.ReportMetric(float64(p.measured)/float64(p.raw), unit)
}

// BenchmarkALHotPath: 4 KiB writes spread over 64 extents, all hot (the
// log holds 1024): the activity log costs a lock and a map look-up, no
// I/O. The ratio is against the same writes to the file directly.
func BenchmarkALHotPath(b *testing.B) {
	dev := fileDevice(b, 512<<20)
	m, err := Create(dev, CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	al, data := m.AL(), m.Data()
	var offs []int64
	for i := int64(0); i < 64*16; i++ {
		offs = append(offs, (i%64)*al.ExtentSize()+(i/64)*(64<<10)) // extent i%64, region i/64
	}
	buf := make([]byte, 4096)
	for _, off := range offs[:64] { // warm: every extent hot
		al.Begin(off / al.ExtentSize())
		al.End(off / al.ExtentSize())
	}
	var pt pairTimer
	i := 0
	for b.Loop() {
		off := offs[i%len(offs)]
		e := off / al.ExtentSize()
		pt.run(func() { dev.WriteAt(buf, off) }, func() {
			if wrote, err := al.Begin(e); err != nil || wrote {
				b.Fatalf("hot Begin: wrote %v, %v", wrote, err)
			}
			data.WriteAt(buf, off)
			al.End(e)
		})
		i++
	}
	pt.report(b, i, "x_raw_write")
}

// BenchmarkALColdPath: every 4 KiB write goes to a cold extent (a log of 4
// extents, 64 extents cycled), so each costs one activity log transaction:
// a 4 KiB write and a flush. The ratio is against a raw 4 KiB write and
// flush, the price of the smallest durable write.
func BenchmarkALColdPath(b *testing.B) {
	dev := fileDevice(b, 512<<20)
	m, err := Create(dev, CreateOptions{ALExtents: 4})
	if err != nil {
		b.Fatal(err)
	}
	al, data := m.AL(), m.Data()
	var offs []int64
	for e := int64(0); e < 64; e++ {
		offs = append(offs, e*al.ExtentSize())
	}
	buf := make([]byte, 4096)
	var pt pairTimer
	i := 0
	for b.Loop() {
		off := offs[i%len(offs)]
		e := off / al.ExtentSize()
		if i%4 == 0 {
			data.Flush() // as a file system's commits would: evictions find their data durable
		}
		pt.run(func() {
			dev.WriteAt(buf, off)
			dev.Flush()
		}, func() {
			if wrote, err := al.Begin(e); err != nil || !wrote {
				b.Fatalf("cold Begin: wrote %v, %v", wrote, err)
			}
			data.WriteAt(buf, off)
			al.End(e)
		})
		i++
	}
	pt.report(b, i, "x_raw_durable_write")
}
