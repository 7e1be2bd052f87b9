package volumecli

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"tandem/internal/nbd"
	"tandem/internal/peerid"
	"tandem/internal/replication"
)

// The bench's timed loops. Local files are written buffered (as the
// volume writes its backing file) and made durable with fdatasync; the
// volume is driven through its NBD export with tandem's NBD client, which
// pipelines requests on one connection.

const benchBlock = 1 << 20

func randomBuffer(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := 0; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b
}

// fileSeqWrite writes n bytes to f in 1 MiB writes, then fdatasync.
func fileSeqWrite(f *os.File, n int64, buf []byte) (time.Duration, error) {
	start := time.Now()
	for off := int64(0); off < n; off += int64(len(buf)) {
		if _, err := f.WriteAt(buf, off); err != nil {
			return 0, err
		}
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return 0, fmt.Errorf("fdatasync %s: %w", f.Name(), err)
	}
	return time.Since(start), nil
}

// fileSeqRead reads n bytes of f in 1 MiB reads.
func fileSeqRead(f *os.File, n int64, buf []byte) (time.Duration, error) {
	start := time.Now()
	for off := int64(0); off < n; off += int64(len(buf)) {
		if _, err := f.ReadAt(buf, off); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// both runs fn on each file at once and returns the longer time: what
// each of two hosts sharing this disk gets.
func both(fa, fb *os.File, fn func(*os.File) (time.Duration, error)) (time.Duration, error) {
	var wg sync.WaitGroup
	var da, db time.Duration
	var ea, eb error
	wg.Add(2)
	go func() { defer wg.Done(); da, ea = fn(fa) }()
	go func() { defer wg.Done(); db, eb = fn(fb) }()
	wg.Wait()
	return max(da, db), errors.Join(ea, eb)
}

// syncWriteOffset is where the i-th 4 KiB write of a latency run goes:
// consecutive blocks of a 16 MiB area at the start of the file or
// volume, written before (so nothing is allocated while timed).
func syncWriteOffset(i int) int64 { return int64(i%4096) * 4096 }

// fileSyncWrites times n 4 KiB writes each followed by fdatasync.
func fileSyncWrites(f *os.File, n, from int, buf []byte) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	for i := from; i < from+n; i++ {
		start := time.Now()
		if _, err := f.WriteAt(buf[:4096], syncWriteOffset(i)); err != nil {
			return nil, err
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return nil, err
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}

// nbdSyncWrites times n 4 KiB writes each followed by a flush, one
// request at a time; it also returns the writes' own times.
func nbdSyncWrites(c *nbd.Client, n, from int, buf []byte) (pairs, writes []time.Duration, err error) {
	for i := from; i < from+n; i++ {
		start := time.Now()
		if _, err := c.WriteAt(buf[:4096], syncWriteOffset(i)); err != nil {
			return nil, nil, err
		}
		w := time.Since(start)
		if err := c.Flush(); err != nil {
			return nil, nil, err
		}
		pairs, writes = append(pairs, time.Since(start)), append(writes, w)
	}
	return pairs, writes, nil
}

// nbdFUAWrites times n 4 KiB writes with FUA, one at a time: a write and
// a flush in one request, as the kernel's client sends an O_DSYNC write
// to a device that offers FUA.
func nbdFUAWrites(c *nbd.Client, n, from int, buf []byte) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	for i := from; i < from+n; i++ {
		start := time.Now()
		if _, err := c.WriteAtFUA(buf[:4096], syncWriteOffset(i)); err != nil {
			return nil, err
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}

// nbdWrites writes buf at each offset with qd requests in flight, then
// flushes.
func nbdWrites(c *nbd.Client, offs []int64, buf []byte, qd int) (time.Duration, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, qd)
	start := time.Now()
	for w := 0; w < qd; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(len(offs)) {
					return
				}
				if _, err := c.WriteAt(buf, offs[i]); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	if err := c.Flush(); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func sequentialOffsets(n int64) []int64 {
	offs := make([]int64, 0, n/benchBlock)
	for off := int64(0); off < n; off += benchBlock {
		offs = append(offs, off)
	}
	return offs
}

// scatteredOffsets picks n/1MiB distinct 1 MiB blocks of a volume of
// size bytes, in random order.
func scatteredOffsets(size, n int64, seed uint64) []int64 {
	r := rand.New(rand.NewPCG(seed, 7))
	perm := r.Perm(int(size / benchBlock))
	offs := make([]int64, 0, n/benchBlock)
	for _, b := range perm[:n/benchBlock] {
		offs = append(offs, int64(b)*benchBlock)
	}
	return offs
}

// digestRate is the verify digest's rate on one core (MB/s): 1 MiB
// reads digested region by region (64 KiB), as verify does on both
// replicas.
func digestRate(buf []byte) float64 {
	var n int64
	start := time.Now()
	for time.Since(start) < 300*time.Millisecond {
		replication.RegionDigests(buf, 64<<10)
		n += int64(len(buf))
	}
	return mbps(n, time.Since(start))
}

// benchNet measures the link between the hosts with the bench peer.
type benchNet struct {
	dial      func() (net.Conn, error) // from host a to the bench peer on b
	dialFloor func() (net.Conn, error) // from host a to the floor's primary on a
	ids       *peerid.Set
}

// throughput sends n bytes to the sink and returns the time until the
// sink has counted them all.
func (bn *benchNet) throughput(n int64, overTLS bool) (time.Duration, error) {
	c, err := bn.dial()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	mode := byte(peerSink)
	if overTLS {
		mode = peerTLSSink
	}
	if _, err := c.Write([]byte{mode}); err != nil {
		return 0, err
	}
	var conn io.ReadWriter = c
	closeWrite := func() error { return c.(*net.TCPConn).CloseWrite() }
	if overTLS {
		cfg := bn.ids.Client("b")
		cfg.DynamicRecordSizingDisabled = true
		tc := tls.Client(c, cfg)
		if err := tc.Handshake(); err != nil {
			return 0, err
		}
		conn, closeWrite = tc, tc.CloseWrite
	}
	buf := randomBuffer(benchBlock, 3)
	start := time.Now()
	for sent := int64(0); sent < n; sent += benchBlock {
		if _, err := conn.Write(buf); err != nil {
			return 0, err
		}
	}
	if err := closeWrite(); err != nil {
		return 0, err
	}
	var ans [8]byte
	if _, err := io.ReadFull(conn, ans[:]); err != nil {
		return 0, err
	}
	d := time.Since(start)
	if got := int64(binary.BigEndian.Uint64(ans[:])); got != n {
		return 0, fmt.Errorf("the sink counted %d bytes of %d", got, n)
	}
	return d, nil
}

// rtt times n round trips of 8 bytes on one connection.
func (bn *benchNet) rtt(n int) ([]time.Duration, error) {
	c, err := bn.dial()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if _, err := c.Write([]byte{peerEcho}); err != nil {
		return nil, err
	}
	out := make([]time.Duration, 0, n)
	var m [8]byte
	for i := 0; i < n; i++ {
		start := time.Now()
		if _, err := c.Write(m[:]); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, m[:]); err != nil {
			return nil, err
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}

// dropCaches writes dirty pages back and drops the page cache, so a
// timed read comes from the disk.
func dropCaches() error {
	unix.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
}

// filesystemOf names dir's filesystem: "ext4 on /dev/vda".
func filesystemOf(dir string) string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "?"
	}
	best, desc := "", "?"
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 2 {
			continue
		}
		mp := f[4]
		under := mp == "/" || dir == mp || strings.HasPrefix(dir, mp+"/")
		if under && len(mp) >= len(best) {
			best, desc = mp, fmt.Sprintf("%s on %s (mounted at %s)", g[0], g[1], mp)
		}
	}
	return desc
}
