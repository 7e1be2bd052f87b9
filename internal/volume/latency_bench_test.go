package volume

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"tandem/internal/blockdev"
	"tandem/internal/replication"
	"tandem/internal/replication/link"
	"tandem/internal/volume/meta"
)

// BenchmarkSyncWriteFlushTCP times issue 11's latency sample, a 4 KiB
// write then a flush at queue depth 1 in sync mode, through two volumes
// in this process over the real link (TLS on loopback) and backing files
// in the test's temporary directory: the engine without NBD and without
// the second process. It reports the p50 of the pair and of each part,
// and, in alternating rounds of the same run, the p50 of a local 4 KiB
// write + fdatasync (the disk part of issue 11's bound).
//
//	go test -run - -bench SyncWriteFlushTCP -benchtime 2000x ./internal/volume
func BenchmarkSyncWriteFlushTCP(b *testing.B) {
	const size = 64 << 20
	dir := b.TempDir()
	var la, lb []link.Path
	pa, pb := freeAddr(b, "127.0.0.31"), freeAddr(b, "127.0.0.32")
	la, lb = append(la, link.Path{Local: pa, Peer: pb}), append(lb, link.Path{Local: pb, Peer: pa})
	var id replication.VolumeID
	names := [2]string{"a", "b"}
	vols := [2]*Volume{}
	for i := range 2 {
		path := filepath.Join(dir, names[i])
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			b.Fatal(err)
		}
		if err := os.Truncate(path, size+4<<20); err != nil {
			b.Fatal(err)
		}
		dev, err := blockdev.OpenFile(path, false)
		if err != nil {
			b.Fatal(err)
		}
		md, err := meta.Create(dev, meta.CreateOptions{ID: id, Node: names[i], Peer: names[1-i], DataSize: size,
			ExtentSize: 4 << 20, ALExtents: 64, Gen: replication.GenIDs{Current: 7}, Disk: replication.UpToDate})
		if err != nil {
			b.Fatal(err)
		}
		id = md.ID()
		ep, err := link.Start(link.Config{Self: names[i], Peer: names[1-i], Key: bytes.Repeat([]byte{3}, 32), Volume: id,
			Size: uint64(size), Paths: [][]link.Path{la, lb}[i], Fenced: link.MessageFenced})
		if err != nil {
			b.Fatal(err)
		}
		v, err := Open(Options{Name: "v", Meta: md, Link: ep, Fencer: replication.NewMemFencer(),
			Replication: replication.Config{Mode: replication.Sync}})
		if err != nil {
			b.Fatal(err)
		}
		vols[i] = v
		b.Cleanup(func() { v.Close(); dev.Close() })
	}
	deadline := time.Now().Add(20 * time.Second)
	for vols[0].Status().Connection != "Connected" || vols[1].Status().Connection != "Connected" {
		if time.Now().After(deadline) {
			b.Fatal("not connected within 20 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := vols[0].Promote(1, false); err != nil {
		b.Fatal(err)
	}
	buf := bytes.Repeat([]byte{0x5a}, 4096)
	for off := int64(0); off < 16<<20; off += 1 << 20 { // allocate the area written below
		if _, err := vols[0].WriteAt(bytes.Repeat(buf, 256), off); err != nil {
			b.Fatal(err)
		}
	}
	if err := vols[0].Flush(); err != nil {
		b.Fatal(err)
	}
	lpath := filepath.Join(dir, "local")
	if err := os.WriteFile(lpath, bytes.Repeat(buf, 4096), 0o600); err != nil {
		b.Fatal(err)
	}
	local, err := blockdev.OpenFile(lpath, false)
	if err != nil {
		b.Fatal(err)
	}
	defer local.Close()
	if err := local.Flush(); err != nil {
		b.Fatal(err)
	}
	var pairs, writes, flushes, disk []time.Duration
	const rounds = 4
	b.ResetTimer()
	for r := range rounds {
		n := b.N / rounds
		for i := range n {
			off := int64((r*n+i)%4096) * 4096
			start := time.Now()
			if _, err := vols[0].WriteAt(buf, off); err != nil {
				b.Fatal(err)
			}
			w := time.Since(start)
			if err := vols[0].Flush(); err != nil {
				b.Fatal(err)
			}
			d := time.Since(start)
			pairs, writes, flushes = append(pairs, d), append(writes, w), append(flushes, d-w)
		}
		b.StopTimer()
		for i := range n {
			start := time.Now()
			local.WriteAt(buf, int64((r*n+i)%4096)*4096)
			if err := local.Flush(); err != nil { // fdatasync, as the volume's
				b.Fatal(err)
			}
			disk = append(disk, time.Since(start))
		}
		b.StartTimer()
	}
	p50 := func(d []time.Duration) float64 {
		if len(d) == 0 {
			return 0
		}
		s := slices.Clone(d)
		slices.Sort(s)
		return float64(s[len(s)/2]) / 1e3
	}
	b.ReportMetric(p50(pairs), "pair_p50_µs")
	b.ReportMetric(p50(writes), "write_p50_µs")
	b.ReportMetric(p50(flushes), "flush_p50_µs")
	b.ReportMetric(p50(disk), "local_sync_p50_µs")
}

func freeAddr(t testing.TB, ip string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return netip.MustParseAddrPort(ln.Addr().String())
}
