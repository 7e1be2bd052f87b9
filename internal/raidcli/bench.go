package raidcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"tandem/internal/blockdev"
	"tandem/internal/nbd/nbdbench"
	"tandem/internal/raid"
)

// `tandem raid bench` prints every figure as a ratio against a baseline
// measured in the same run: the raw sequential throughput of one file on
// the same disk (O_DIRECT, 1 MiB requests), measured right before each
// array so both see the same disk state.

type benchLevel struct {
	level   raid.Level
	members int
}

var benchLevels = map[string]benchLevel{
	"raid0": {raid.Raid0, 4}, "raid1": {raid.Raid1, 2}, "raid5": {raid.Raid5, 5},
	"raid6": {raid.Raid6, 6}, "raid10": {raid.Raid10, 4},
}

func benchCmd(g *globals) *cobra.Command {
	var dir, size, nbdSize, levels, rebuild, cpuProfile string
	var nbdRounds, rounds int
	var skipNBD bool
	cmd := &cobra.Command{
		Use:   "bench [--dir D] [--size S]",
		Short: "Measure sequential I/O, RAID 6 parity, rebuild and NBD against baselines from the same run",
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := parseSize(size)
			if err != nil {
				return err
			}
			n = n &^ (1<<20 - 1)
			nn, err := parseSize(nbdSize)
			if err != nil {
				return err
			}
			if dir == "" {
				dir, err = os.MkdirTemp("", "tandem-raid-bench-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
			}
			if cpuProfile != "" {
				pf, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer pf.Close()
				if err := pprof.StartCPUProfile(pf); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			b := &bench{g: g, dir: dir, size: n, out: g.out, rounds: max(1, rounds)}
			fmt.Fprintf(g.out, "tandem raid bench: %d MiB per run in %s; members are files on the same disk, O_DIRECT, 1 MiB requests\n", n>>20, dir)
			var errs []error
			for _, name := range strings.Split(levels, ",") {
				if name == "" {
					continue
				}
				bl, ok := benchLevels[name]
				if !ok {
					return fmt.Errorf("raid: bench: unknown level %q", name)
				}
				errs = append(errs, b.sequential(bl))
			}
			b.parity()
			for _, name := range strings.Split(rebuild, ",") {
				if bl, ok := benchLevels[name]; ok {
					errs = append(errs, b.rebuild(bl))
				}
			}
			if !skipNBD {
				errs = append(errs, b.nbd(cmd.Context(), nn&^(1<<20-1), nbdRounds))
			}
			return errors.Join(errs...)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "directory for the member files (default: a temporary directory)")
	f.StringVar(&size, "size", "512M", "bytes written and read per run")
	f.StringVar(&levels, "levels", "raid0,raid1,raid5,raid6,raid10", "levels for the sequential test")
	f.StringVar(&rebuild, "rebuild", "raid1,raid5", "levels for the rebuild test")
	f.StringVar(&nbdSize, "nbd-size", "1G", "bytes nbdcopy moves each way in the NBD comparison")
	f.IntVar(&nbdRounds, "nbd-rounds", 6, "rounds of the NBD comparison, rounded up to even: each pair has each server first once (median over pairs of the geometric mean of their ratios)")
	f.IntVar(&rounds, "rounds", 5, "rounds of the sequential and rebuild tests, raw and array in alternating order (median of the per-round ratios reported)")
	f.BoolVar(&skipNBD, "no-nbd", false, "skip the NBD comparison with nbdkit")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	f.MarkHidden("cpuprofile")
	return cmd
}

type bench struct {
	rounds int
	g      *globals
	dir    string
	size   int64
	out    io.Writer
}

type rates struct{ write, read float64 } // bytes per second

func (b *bench) buffer() []byte {
	buf := blockdev.AlignedBuffer(1 << 20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	return buf
}

// seqWrite writes n bytes sequentially in len(buf) requests at queue depth
// 1 and flushes; it returns bytes per second.
func seqWrite(d blockdev.Device, n int64, buf []byte) (float64, error) {
	start := time.Now()
	for off := int64(0); off < n; off += int64(len(buf)) {
		if _, err := d.WriteAt(buf, off); err != nil {
			return 0, err
		}
	}
	if err := d.Flush(); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// seqRead reads n bytes sequentially in len(buf) requests.
func seqRead(d blockdev.Device, n int64, buf []byte) (float64, error) {
	start := time.Now()
	for off := int64(0); off < n; off += int64(len(buf)) {
		if _, err := d.ReadAt(buf, off); err != nil {
			return 0, err
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// seq writes then reads n bytes.
func seq(d blockdev.Device, n int64, buf []byte) (rates, error) {
	w, err := seqWrite(d, n, buf)
	if err != nil {
		return rates{}, err
	}
	r, err := seqRead(d, n, buf)
	return rates{w, r}, err
}

// rawFile opens a baseline file of size bytes on the bench disk, written
// once before anything is timed. Every timed pass then overwrites it in
// place, as the array's members are overwritten (they get an untimed first
// pass too): on ext4 the first write into preallocated extents costs about
// a third more than an overwrite, and a fresh baseline file per round made
// the array look faster than it is.
func (b *bench) rawFile(name string, size int64, buf []byte) (blockdev.Device, func(), error) {
	p := filepath.Join(b.dir, name)
	if err := createPrealloc(p, size); err != nil {
		return nil, nil, err
	}
	m, err := openMember(p)
	if err != nil {
		os.Remove(p)
		return nil, nil, err
	}
	done := func() { m.Dev.Close(); os.Remove(p) }
	if _, err := seqWrite(m.Dev, size, buf); err != nil {
		done()
		return nil, nil, err
	}
	return m.Dev, done, nil
}

// array creates a fresh array of at least the bench size.
func (b *bench) array(bl benchLevel, extra int, o raid.Options) (*raid.Array, []string, error) {
	return b.arrayOpen(bl, extra, b.size, o)
}

func (b *bench) arrayOpen(bl benchLevel, extra int, size int64, o raid.Options) (*raid.Array, []string, error) {
	g := raid.Geometry{Level: bl.level, Members: bl.members, Chunk: 64 << 10}.Normalize()
	perMember := size/int64(g.DataChunks())*int64(g.Copies()) + 64<<20
	var paths []string
	var ms, ss []raid.Member
	for i := 0; i < bl.members+extra; i++ {
		p := filepath.Join(b.dir, fmt.Sprintf("%s-%d", bl.level, i))
		os.Remove(p)
		if err := createPrealloc(p, perMember); err != nil {
			return nil, nil, err
		}
		paths = append(paths, p)
		m, err := openMember(p)
		if err != nil {
			return nil, nil, err
		}
		if i < bl.members {
			ms = append(ms, m)
		} else {
			ss = append(ss, m)
		}
	}
	o.Logger = b.g.logger()
	o.NoBackground = true
	a, err := raid.Create(ms, ss, raid.CreateOptions{Name: "bench", Level: bl.level, AssumeClean: true, Force: true}, o)
	return a, paths, err
}

func removeAll(paths []string) {
	for _, p := range paths {
		os.Remove(p)
	}
}

func (b *bench) sequential(bl benchLevel) error {
	a, paths, err := b.array(bl, 0, raid.Options{})
	defer removeAll(paths)
	if err != nil {
		return fmt.Errorf("raid: bench %s: %w", bl.level, err)
	}
	defer a.Close()
	n := min(b.size, a.Size()&^(1<<20-1))
	frac := a.Geometry().DataFraction()
	buf := b.buffer()
	raw, done, err := b.rawFile("raw", n, buf)
	if err != nil {
		return fmt.Errorf("raid: bench raw: %w", err)
	}
	defer done()
	if _, err := seqWrite(a, n, buf); err != nil { // the members' first pass, untimed
		return fmt.Errorf("raid: bench %s: %w", bl.level, err)
	}
	// Rounds measure raw and array back to back, in alternating order, so
	// both see the same disk weather; the median of the per-round ratios is
	// reported.
	// A second baseline, for information: the same raw file written and
	// read from a buffer of 2 MiB pages, the memory the array does its own
	// member I/O from. On a virtual disk each 4 KiB page is a segment the
	// host walks, so this raw figure is higher; the target ratio stays
	// against the ordinary buffer, as any program writes.
	hbuf := raid.IOBuffer(len(buf))
	defer raid.FreeIOBuffer(hbuf)
	copy(hbuf, buf)
	var wrs, rrs, hwrs, hrrs, raws, hraws, arrs []float64
	for r := 0; r < b.rounds; r++ {
		var rw, hw, got rates
		err := b.pair(r, func() (err error) {
			if rw, err = seq(raw, n, buf); err != nil {
				return err
			}
			hw, err = seq(raw, n, hbuf)
			return err
		}, func() (err error) { got, err = seq(a, n, buf); return })
		if err != nil {
			return fmt.Errorf("raid: bench %s: %w", bl.level, err)
		}
		wrs = append(wrs, got.write/(rw.write*frac))
		rrs = append(rrs, got.read/rw.read)
		hwrs = append(hwrs, got.write/(hw.write*frac))
		hrrs = append(hrrs, got.read/hw.read)
		raws = append(raws, rw.write, rw.read)
		hraws = append(hraws, hw.write, hw.read)
		arrs = append(arrs, got.write, got.read)
	}
	wr, rr := median(wrs), median(rrs)
	fmt.Fprintf(b.out, "%-7s x%d: write %.2f of raw×%.2f  read %.2f of raw  (median of %d rounds; array %s MB/s, raw %s MB/s)  %s\n",
		bl.level, bl.members, wr, frac, rr, b.rounds, pairs(arrs), pairs(raws), verdict(wr >= 0.8 && rr >= 0.8, "≥0.80 each"))
	fmt.Fprintf(b.out, "        against raw from a 2 MiB-page buffer, as the array's own I/O: write %.2f, read %.2f  (raw %s MB/s)\n",
		median(hwrs), median(hrrs), pairs(hraws))
	return nil
}

// pair runs the baseline and the measured side of round r, the baseline
// first in even rounds and second in odd ones.
func (b *bench) pair(r int, base, measured func() error) error {
	first, second := base, measured
	if r%2 == 1 {
		first, second = measured, base
	}
	if err := first(); err != nil {
		return err
	}
	return second()
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	for i := 1; i < len(s); i++ {
		for k := i; k > 0 && s[k] < s[k-1]; k-- {
			s[k], s[k-1] = s[k-1], s[k]
		}
	}
	return s[len(s)/2]
}

// pairs prints write/read pairs: "685/689 702/700".
func pairs(v []float64) string {
	var out []string
	for i := 0; i+1 < len(v); i += 2 {
		out = append(out, fmt.Sprintf("%.0f/%.0f", v[i]/1e6, v[i+1]/1e6))
	}
	return strings.Join(out, " ")
}

func verdict(ok bool, target string) string {
	if ok {
		return "[target " + target + ": met]"
	}
	return "[target " + target + ": NOT met]"
}

// parity times RAID 6 P+Q generation on one goroutine against a memmove of
// the same bytes.
func (b *bench) parity() {
	const chunk = 64 << 10
	data := make([][]byte, 4)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range data {
		data[i] = make([]byte, chunk)
		for j := range data[i] {
			data[i][j] = byte(r.Uint32())
		}
	}
	p, q := make([]byte, chunk), make([]byte, chunk)
	dst := make([]byte, 4*chunk)
	src := make([]byte, 4*chunk)
	timeIt := func(fn func()) float64 {
		n, start := 0, time.Now()
		for time.Since(start) < time.Second {
			for i := 0; i < 64; i++ {
				fn()
			}
			n += 64
		}
		return float64(n) * 4 * chunk / time.Since(start).Seconds()
	}
	pq := timeIt(func() { raid.GenParity(data, p, q) })
	cp := timeIt(func() { copy(dst, src) })
	fmt.Fprintf(b.out, "raid6 parity (4 data + P + Q, 64 KiB chunks, 1 core): %.2f GB/s = %.2f× the 2 GB/s target, %.2f× memmove of the same bytes  %s\n",
		pq/1e9, pq/2e9, pq/cp, verdict(pq >= 2e9, "≥2 GB/s per core"))
}

// rebuild times rebuilds onto a spare against two baselines measured on
// the same disk in the same rounds: a raw sequential write of one member's
// worth (the target's yardstick), and a raw copy with the rebuild's I/O
// pattern: the same windows read at once from as many files as the rebuild
// reads members (one for RAID 1, n-1 for RAID 5), written to one more file,
// each window's write overlapping the next window's reads. The copy moves
// the same bytes the rebuild does, with no checksums or parity: it is the
// most a rebuild can reach on this disk.
func (b *bench) rebuild(bl benchLevel) error {
	a, paths, err := b.array(bl, 1, raid.Options{})
	defer removeAll(paths)
	if err != nil {
		return fmt.Errorf("raid: bench rebuild %s: %w", bl.level, err)
	}
	defer a.Close()
	buf := b.buffer()
	if _, err := seqWrite(a, a.Size()&^(1<<20-1), buf); err != nil {
		return fmt.Errorf("raid: bench rebuild %s: %w", bl.level, err)
	}
	n := a.Geometry().MemberData &^ (1<<20 - 1)
	reads := 1
	if bl.level != raid.Raid1 {
		reads = bl.members - 1
	}
	var srcs []blockdev.Device
	for i := 0; i < reads; i++ {
		src, done, err := b.rawFile(fmt.Sprintf("raw-src-%d", i), n, buf)
		if err != nil {
			return err
		}
		defer done()
		srcs = append(srcs, src)
	}
	dst, done, err := b.rawFile("raw-dst", n, buf)
	if err != nil {
		return err
	}
	defer done()
	var ofWrite, ofCopy, copyOfWrite, rebuilds, writes, copies []float64
	for r := 0; r < b.rounds; r++ {
		var w, c, rb float64
		err := b.pair(r, func() (err error) {
			if w, err = seqWrite(dst, n, buf); err != nil {
				return err
			}
			c, err = rawCopy(srcs, dst, n, copyWindow, 2)
			return err
		}, func() (err error) {
			rb, err = rebuildOnce(a)
			return err
		})
		if err != nil {
			return fmt.Errorf("raid: bench rebuild %s: %w", bl.level, err)
		}
		ofWrite, ofCopy, copyOfWrite = append(ofWrite, rb/w), append(ofCopy, rb/c), append(copyOfWrite, c/w)
		rebuilds, writes, copies = append(rebuilds, rb), append(writes, w), append(copies, c)
	}
	ratio := median(ofWrite)
	fmt.Fprintf(b.out, "rebuild %-7s x%d: %.2f of raw write, %.2f of raw copy  (median of %d rounds; rebuild %s, raw write %s, raw copy %s MB/s)  %s\n",
		bl.level, bl.members, ratio, median(ofCopy), b.rounds, mbs(rebuilds), mbs(writes), mbs(copies), verdict(ratio >= 0.7, "≥0.70"))
	fmt.Fprintf(b.out, "  baseline raw copy: read %d file(s) and write 1 on the same disk, %d MiB windows, each write overlapping the next reads = %.2f of raw write, the most a %s rebuild can reach here\n",
		reads, copyWindow>>20, median(copyOfWrite), bl.level)
	return nil
}

// copyWindow is the raw copy's request size: the rebuild's per-member window.
const copyWindow = raid.RebuildWindow

func mbs(v []float64) string {
	var out []string
	for _, x := range v {
		out = append(out, fmt.Sprintf("%.0f", x/1e6))
	}
	return strings.Join(out, " ")
}

// rebuildOnce fails the member in slot 0, times its rebuild onto the spare
// (member bytes written per second), then removes the failed member and
// adds it back as the next spare.
func rebuildOnce(a *raid.Array) (float64, error) {
	var name string
	for _, m := range a.Status().Members {
		if m.Slot == 0 {
			name = m.Name
		}
	}
	if err := a.Fail(name); err != nil {
		return 0, err
	}
	start := time.Now()
	a.RunJobs()
	d := time.Since(start)
	if st := a.Status(); st.State != "clean" {
		return 0, fmt.Errorf("array %s after rebuild", st.State)
	}
	if err := a.Remove(name); err != nil {
		return 0, err
	}
	m, err := openMember(name)
	if err != nil {
		return 0, err
	}
	if err := a.Add(m); err != nil {
		m.Dev.Close()
		return 0, err
	}
	return float64(a.Geometry().MemberData) / d.Seconds(), nil
}

// rawCopy reads n bytes from every src at the same offsets, window by
// window (the sources in parallel, as a rebuild reads the members of a
// stripe), and writes each window of the first source to dst, with depth
// windows in memory: one goroutine reads while the writes go out, as a
// rebuild overlaps the reads of one window with the write of the one
// before. It returns bytes written per second.
func rawCopy(srcs []blockdev.Device, dst blockdev.Device, n, window int64, depth int) (float64, error) {
	type block struct {
		off  int64
		bufs [][]byte
	}
	free := make(chan [][]byte, depth)
	for i := 0; i < depth; i++ {
		var bufs [][]byte
		for range srcs {
			// The memory the rebuild reads into (2 MiB pages).
			bufs = append(bufs, raid.IOBuffer(int(window)))
		}
		free <- bufs
	}
	full := make(chan block, depth)
	rerr := make(chan error, 1)
	start := time.Now()
	go func() {
		defer close(full)
		for off := int64(0); off < n; off += window {
			bufs := <-free
			l := min(window, n-off)
			errs := make(chan error, len(srcs))
			for i, src := range srcs {
				go func() {
					_, err := src.ReadAt(bufs[i][:l], off)
					errs <- err
				}()
			}
			var err error
			for range srcs {
				err = errors.Join(err, <-errs)
			}
			if err != nil {
				rerr <- err
				return
			}
			full <- block{off, bufs}
		}
		rerr <- nil
	}()
	var werr error
	for blk := range full {
		if werr == nil {
			_, werr = dst.WriteAt(blk.bufs[0][:min(window, n-blk.off)], blk.off)
		}
		free <- blk.bufs
	}
	rdErr := <-rerr
	for len(free) > 0 {
		for _, b := range <-free {
			raid.FreeIOBuffer(b)
		}
	}
	if err := errors.Join(rdErr, werr); err != nil {
		return 0, err
	}
	if err := dst.Flush(); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// nbd compares a single-member RAID 0 served as `serve` serves it (member
// opened by openMember, with O_DIRECT; servedOptions) with nbdkit's file
// plugin, nbdcopy each way. nbdkit serves its own file of the same size on
// the same disk, not the member itself: its writes would land over the
// array's metadata and under its checksums.
//
// The target's figure is the first line: uploads with --flush, so both end
// durable (qemu-img flushes at the end of a copy too), and the page cache
// dropped before every read, so both servers read the disk. Without
// --flush, nbdkit's upload ends in the page cache and writes nothing to the
// disk while it is timed (the line shows the bytes written to the disk
// during each upload), where an O_DIRECT member has written all of it: the
// second line shows that, the third compares with nbdkit told to write
// through as well (cache=none). The last line is the same NBD server on a
// plain file with the page cache, what the server itself costs.
func (b *bench) nbd(ctx context.Context, size int64, rounds int) error {
	if missing := nbdbench.Missing(); len(missing) > 0 {
		fmt.Fprintf(b.out, "nbd: skipped: %v not installed (Debian: nbdkit, libnbd-bin)\n", missing)
		return nil
	}
	plain := filepath.Join(b.dir, "nbdkit-file")
	figures := func(r nbdbench.Result) string {
		return fmt.Sprintf("write %.2f, read %.2f of nbdkit  (median over %d pairs of rounds, each pair's geometric mean; write %s, read %s; %s%s)",
			r.WriteRatio, r.ReadRatio, r.Rounds/2, roundRatios(r, true), roundRatios(r, false), serverCPU(r), r.DiskFigures())
	}
	a, paths, err := b.arrayOpen(benchLevel{raid.Raid0, 1}, 0, size, servedOptions(raid.Options{}))
	defer removeAll(paths)
	if err != nil {
		return err
	}
	defer a.Close()
	n := min(size, a.Size()&^(1<<20-1))
	if err := createFile(plain, n); err != nil {
		return err
	}
	defer os.Remove(plain)
	runs := []struct {
		o    nbdbench.Options
		what string
		goal bool
	}{
		{nbdbench.Options{Flush: true, DropCaches: true}, "as served (O_DIRECT) vs nbdkit file, nbdcopy --flush, page cache dropped before reads", true},
		{nbdbench.Options{DropCaches: true}, "as served vs nbdkit file, no --flush (nbdkit's upload ends in the page cache)", false},
		{nbdbench.Options{DropCaches: true, NbdkitParams: []string{"cache=none"}}, "as served vs nbdkit file cache=none, no --flush (both write through)", false},
	}
	for _, r := range runs {
		o := r.o
		o.Device, o.File, o.Size, o.Rounds, o.TempDir = a, plain, n, rounds, b.dir
		res, err := nbdbench.Compare(ctx, o)
		if err != nil {
			return fmt.Errorf("raid: bench nbd: %w", err)
		}
		if r.goal {
			fmt.Fprintf(b.out, "nbd single-member raid0, nbdcopy %d MiB each way, %s: %s  %s\n",
				n>>20, r.what, figures(res), verdict(res.WriteRatio >= 0.9 && res.ReadRatio >= 0.9, "≥0.90"))
			continue
		}
		fmt.Fprintf(b.out, "  %s: %s\n", r.what, figures(res))
	}
	// The same server on a plain file, no RAID: what the NBD server itself
	// costs against nbdkit, apart from the array.
	ours := filepath.Join(b.dir, "nbd-plain")
	if err := createFile(ours, n); err != nil {
		return err
	}
	defer os.Remove(ours)
	dev, err := blockdev.OpenFile(ours, false)
	if err != nil {
		return err
	}
	defer dev.Close()
	res, err := nbdbench.Compare(ctx, nbdbench.Options{Device: dev, File: plain, Size: n, Rounds: rounds, TempDir: b.dir})
	if err != nil {
		return fmt.Errorf("raid: bench nbd: %w", err)
	}
	fmt.Fprintf(b.out, "  baseline: the same NBD server on a plain file with the page cache (no RAID, no --flush, warm reads): %s\n", figures(res))
	return nil
}

// serverCPU says how much CPU each server used per GiB: on a machine whose
// cores nbdcopy and the server fill, it is what decides the throughput.
func serverCPU(r nbdbench.Result) string {
	return fmt.Sprintf("server CPU s/GiB: write %.2f vs nbdkit %.2f, read %.2f vs %.2f", r.OursCPU.Write, r.NbdkitCPU.Write, r.OursCPU.Read, r.NbdkitCPU.Read)
}

// roundRatios lists a comparison's per-round ratios: "0.91 0.88 …".
func roundRatios(r nbdbench.Result, write bool) string {
	var out []string
	for i := range r.OursSamples {
		o, k := r.OursSamples[i].Read, r.NbdkitSamples[i].Read
		if write {
			o, k = r.OursSamples[i].Write, r.NbdkitSamples[i].Write
		}
		out = append(out, fmt.Sprintf("%.2f", o/k))
	}
	return strings.Join(out, " ")
}

// createPrealloc creates a file with its blocks allocated, for the raw
// baseline and the members alike.
func createPrealloc(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("raid: %w", err)
	}
	defer f.Close()
	if err := preallocate(f, size); err != nil {
		return f.Truncate(size)
	}
	return nil
}
