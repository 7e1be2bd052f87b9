// Package nbdbench measures tandem's NBD server against nbdkit's file
// plugin on the same machine in the same run, with nbdcopy moving data each
// way, and reports throughputs and ratios (our / nbdkit). It runs external
// programs (nbdkit, nbdcopy), so it belongs in benchmarks and in
// `tandem raid bench`, never in the I/O path. It imports blockdev and nbd;
// cmd/ and benchmark tests may import it.
package nbdbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"tandem/internal/blockdev"
	"tandem/internal/nbd"
)

// Options configures Compare. Zero values take the defaults noted.
type Options struct {
	// Device is served by our server; File by `nbdkit file`. They may be
	// the same storage (a single-member array and its member file).
	Device blockdev.Device
	File   string
	// Size is how many bytes each nbdcopy moves (1 GiB in the target).
	// Both Device and File must hold at least Size bytes; larger ones are
	// served truncated to Size (nbdkit through its truncate filter).
	Size int64
	// Rounds times both servers this many times, back to back in
	// alternating order, and reports medians (default 6; an odd count is
	// rounded up, so each server goes first equally often).
	Rounds int
	// Flush passes --flush to nbdcopy so uploads end durable; without it
	// the write figure is the servers' speed into the page cache.
	Flush bool
	// TempDir holds the sockets and the upload source (default os.TempDir).
	TempDir string
	// DropCaches drops the page cache (sync; echo 3 >
	// /proc/sys/vm/drop_caches) before every timed read, for both servers,
	// so neither reads what the writes just left in memory. It needs root;
	// where it cannot be done the reads run warm and Result.Caches says so.
	DropCaches bool
	// NbdkitParams are extra file-plugin parameters, e.g. "cache=none".
	NbdkitParams []string
}

// Throughput is one server's nbdcopy rates in bytes per second.
type Throughput struct {
	Write float64 // nbdcopy local file → NBD
	Read  float64 // nbdcopy NBD → null:
}

// CPUPerGiB is CPU seconds per GiB moved, each way.
type CPUPerGiB struct{ Write, Read float64 }

// Result is the outcome of Compare.
type Result struct {
	Size       int64
	Rounds     int
	Ours       Throughput
	Nbdkit     Throughput
	WriteRatio float64 // our write / nbdkit's: median over pairs of rounds (pairedMedian)
	ReadRatio  float64 // our read / nbdkit's, likewise
	Commands   []string
	// The samples hold every round's figures, in run order.
	OursSamples, NbdkitSamples []Throughput
	// CPU time each server used per GiB moved (user + system, from
	// /proc; zero where the system does not publish it), medians of the
	// rounds. Our process does nothing else meanwhile.
	OursCPU, NbdkitCPU CPUPerGiB
	// Context for reading the figures: our process's GOMAXPROCS, the
	// CPUs, and the load average before and after (Linux only).
	GOMAXPROCS, NumCPU    int
	LoadBefore, LoadAfter string
	// DiskWritten is how many bytes reached the disk that holds File
	// while each server's upload was timed (medians of the rounds; -1
	// where /sys does not say). It tells an upload that ended in the page
	// cache (nothing written yet) from one that wrote through.
	OursDiskWritten, NbdkitDiskWritten int64
	// Caches says how the reads started: "" when DropCaches was not
	// asked, "page cache dropped before every read", or why it could not
	// be dropped.
	Caches string
}

func (r Result) String() string {
	mb := func(v float64) float64 { return v / 1e6 }
	return fmt.Sprintf("nbdcopy %d MiB, %d rounds (MB/s: medians; ratios: median over pairs of rounds): write tandem %.0f MB/s nbdkit %.0f MB/s ratio %.2f; read tandem %.0f MB/s nbdkit %.0f MB/s ratio %.2f; server CPU s/GiB write %.2f vs %.2f, read %.2f vs %.2f (GOMAXPROCS %d, %d CPUs, load %s → %s)",
		r.Size>>20, r.Rounds, mb(r.Ours.Write), mb(r.Nbdkit.Write), r.WriteRatio, mb(r.Ours.Read), mb(r.Nbdkit.Read), r.ReadRatio,
		r.OursCPU.Write, r.NbdkitCPU.Write, r.OursCPU.Read, r.NbdkitCPU.Read, r.GOMAXPROCS, r.NumCPU, r.LoadBefore, r.LoadAfter) + r.DiskFigures() + caches(r)
}

// DiskFigures says how much each server's upload wrote to the disk while
// it was timed ("" where unknown).
func (r Result) DiskFigures() string {
	if r.OursDiskWritten < 0 || r.NbdkitDiskWritten < 0 {
		return ""
	}
	return fmt.Sprintf("; written to disk during the timed upload: tandem %d MiB, nbdkit %d MiB", r.OursDiskWritten>>20, r.NbdkitDiskWritten>>20)
}

func caches(r Result) string {
	if r.Caches == "" {
		return ""
	}
	return "; " + r.Caches
}

// CompareWithNbdkit serves dev with our server and file with `nbdkit file`,
// runs nbdcopy each way against both (size bytes, 6 rounds, no --flush) and
// returns the throughputs and ratios.
func CompareWithNbdkit(ctx context.Context, dev blockdev.Device, file string, size int64) (Result, error) {
	return Compare(ctx, Options{Device: dev, File: file, Size: size})
}

// Missing returns the programs Compare needs that are not installed.
func Missing() []string {
	var out []string
	for _, p := range []string{"nbdkit", "nbdcopy"} {
		if _, err := exec.LookPath(p); err != nil {
			out = append(out, p)
		}
	}
	return out
}

// Compare runs the comparison described by o.
func Compare(ctx context.Context, o Options) (Result, error) {
	if m := Missing(); len(m) > 0 {
		return Result{}, fmt.Errorf("nbdbench: missing programs %v (Debian packages nbdkit, libnbd-bin)", m)
	}
	if o.Rounds <= 0 {
		o.Rounds = 6
	}
	// Rounds alternate which server goes first, and on a virtual disk the
	// first reader of a round can be the faster one by half: an odd count
	// would favour whoever starts. Every order runs equally often.
	o.Rounds += o.Rounds % 2
	if o.Size <= 0 || o.Device == nil || o.File == "" {
		return Result{}, errors.New("nbdbench: need a device, a file and a positive size")
	}
	if o.Device.Size() < o.Size {
		return Result{}, fmt.Errorf("nbdbench: device holds %d bytes, less than %d", o.Device.Size(), o.Size)
	}
	st, err := os.Stat(o.File)
	if err != nil {
		return Result{}, fmt.Errorf("nbdbench: %w", err)
	}
	if st.Size() < o.Size {
		return Result{}, fmt.Errorf("nbdbench: %s holds %d bytes, less than %d", o.File, st.Size(), o.Size)
	}
	dir, err := os.MkdirTemp(o.TempDir, "nbdbench")
	if err != nil {
		return Result{}, fmt.Errorf("nbdbench: %w", err)
	}
	defer os.RemoveAll(dir)

	src := filepath.Join(dir, "src")
	if err := writeRandomFile(src, o.Size); err != nil {
		return Result{}, err
	}

	ourURI, stopOurs, err := serveOurs(dir, o.Device, o.Size)
	if err != nil {
		return Result{}, err
	}
	defer stopOurs()
	kitURI, kitCmd, kitPID, stopKit, err := serveNbdkit(ctx, dir, o.File, st.Size(), o.Size, o.NbdkitParams)
	if err != nil {
		return Result{}, err
	}
	defer stopKit()

	copyArgs := []string{}
	if o.Flush {
		copyArgs = append(copyArgs, "--flush")
	}
	res := Result{Size: o.Size, Rounds: o.Rounds, GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(), LoadBefore: loadAverage()}
	res.Commands = []string{
		kitCmd,
		"nbdcopy " + join(copyArgs) + src + " <uri>   (write)",
		"nbdcopy " + join(copyArgs) + "<uri> null:   (read)",
	}
	type server struct {
		uri   string
		flush func() error
		pid   int
	}
	servers := [2]server{
		{ourURI, o.Device.Flush, os.Getpid()},
		{kitURI, func() error { return fsync(o.File) }, kitPID},
	}
	// timed runs one nbdcopy against server who and returns its rate and
	// the server's CPU seconds per GiB.
	timed := func(who int, args ...string) (float64, float64, error) {
		c0 := processCPU(servers[who].pid)
		rate, err := timedCopy(ctx, o.Size, args...)
		return rate, (processCPU(servers[who].pid) - c0) / (float64(o.Size) / (1 << 30)), err
	}
	// One untimed upload through each server first: block allocation in a
	// fresh file and a cold page cache would otherwise count against
	// whoever goes first.
	for _, sv := range servers {
		if _, err := timedCopy(ctx, o.Size, append(slices.Clone(copyArgs), src, sv.uri)...); err != nil {
			return res, err
		}
		if err := sv.flush(); err != nil {
			return res, fmt.Errorf("nbdbench: flush after warm-up: %w", err)
		}
	}
	// Each round times both servers back to back, in alternating order, so
	// the two figures of a round share the machine's load of the moment;
	// the ratios reported pair each round with the next (pairedMedian).
	var writeRatios, readRatios []float64
	var cpu [2][2][]float64 // server, direction (write, read), rounds
	var disk [2][]float64   // bytes written to File's disk per timed upload
	var cacheErr error      // the first page-cache drop that failed
	diskStat := diskStatPath(o.File)
	for round := range o.Rounds {
		order := [2]int{round % 2, 1 - round%2}
		var w, r, wc, rc [2]float64
		for _, who := range order {
			d0 := sectorsWritten(diskStat)
			if w[who], wc[who], err = timed(who, append(slices.Clone(copyArgs), src, servers[who].uri)...); err != nil {
				return res, err
			}
			disk[who] = append(disk[who], float64(sectorsWritten(diskStat)-d0)*512)
			// Write back outside the clock so it does not land on the next run.
			if err := servers[who].flush(); err != nil {
				return res, fmt.Errorf("nbdbench: flush after write: %w", err)
			}
		}
		for _, who := range order {
			if o.DropCaches {
				if err := dropCaches(src); err != nil && cacheErr == nil {
					cacheErr = err
				}
			}
			if r[who], rc[who], err = timed(who, append(slices.Clone(copyArgs), servers[who].uri, "null:")...); err != nil {
				return res, err
			}
		}
		for who := range 2 {
			cpu[who][0] = append(cpu[who][0], wc[who])
			cpu[who][1] = append(cpu[who][1], rc[who])
		}
		res.OursSamples = append(res.OursSamples, Throughput{Write: w[0], Read: r[0]})
		res.NbdkitSamples = append(res.NbdkitSamples, Throughput{Write: w[1], Read: r[1]})
		writeRatios = append(writeRatios, w[0]/w[1])
		readRatios = append(readRatios, r[0]/r[1])
	}
	pick := func(s []Throughput, f func(Throughput) float64) float64 {
		v := make([]float64, len(s))
		for i, t := range s {
			v[i] = f(t)
		}
		return median(v)
	}
	write := func(t Throughput) float64 { return t.Write }
	read := func(t Throughput) float64 { return t.Read }
	res.Ours = Throughput{Write: pick(res.OursSamples, write), Read: pick(res.OursSamples, read)}
	res.Nbdkit = Throughput{Write: pick(res.NbdkitSamples, write), Read: pick(res.NbdkitSamples, read)}
	res.WriteRatio, res.ReadRatio = pairedMedian(writeRatios), pairedMedian(readRatios)
	res.OursCPU = CPUPerGiB{median(cpu[0][0]), median(cpu[0][1])}
	res.NbdkitCPU = CPUPerGiB{median(cpu[1][0]), median(cpu[1][1])}
	res.OursDiskWritten, res.NbdkitDiskWritten = -1, -1
	if diskStat != "" {
		res.OursDiskWritten, res.NbdkitDiskWritten = int64(median(disk[0])), int64(median(disk[1]))
	}
	if o.DropCaches {
		res.Caches = "page cache dropped before every timed read"
		if cacheErr != nil {
			res.Caches = fmt.Sprintf("page cache NOT dropped before reads (%v): reads may come from memory", cacheErr)
		}
	}
	res.LoadAfter = loadAverage()
	return res, nil
}

// diskStatPath returns the sysfs stat file of the block device (or
// partition) that holds path, or "" where there is none.
func diskStatPath(path string) string {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return ""
	}
	p := fmt.Sprintf("/sys/dev/block/%d:%d/stat", unix.Major(st.Dev), unix.Minor(st.Dev))
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// sectorsWritten reads the "sectors written" field (the 7th) of a sysfs
// block stat file; 0 when path is "" or unreadable.
func sectorsWritten(path string) int64 {
	if path == "" {
		return 0
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 7 {
		return 0
	}
	n, _ := strconv.ParseInt(f[6], 10, 64)
	return n
}

// dropCaches writes dirty pages back and drops the page cache (root
// only), then reads the upload source src back in (untimed) so the next
// round's uploads do not read it from disk while the first server of the
// round is timed.
func dropCaches(src string) error {
	if os.Geteuid() != 0 {
		return errors.New("not root")
	}
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		return err
	}
	if f, err := os.Open(src); err == nil {
		io.CopyBuffer(io.Discard, f, make([]byte, 1<<20))
		f.Close()
	}
	return nil
}

// processCPU returns the user + system CPU seconds process pid has used,
// from /proc/PID/stat (0 where there is no such file).
func processCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: fields count from
	// after it. utime and stime are fields 14 and 15, in clock ticks.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return (u + k) / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// loadAverage returns the 1, 5 and 15 minute load averages, or "" where
// the system does not publish them.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func join(args []string) string {
	s := ""
	for _, a := range args {
		s += a + " "
	}
	return s
}

// timedCopy runs nbdcopy and returns bytes per second.
func timedCopy(ctx context.Context, size int64, args ...string) (float64, error) {
	start := time.Now()
	out, err := exec.CommandContext(ctx, "nbdcopy", args...).CombinedOutput()
	el := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("nbdbench: nbdcopy %v: %w: %s", args, err, out)
	}
	return float64(size) / el.Seconds(), nil
}

// pairedMedian is the median, over consecutive pairs of rounds (one with
// each server first), of the geometric mean of the pair's two ratios. On
// the development VM the first reader of a round ran up to twice as fast
// as the second whichever server it was, so single rounds swung between
// about 0.5 and 2; a pair holds both orders and cancels that. A lone last
// round counts on its own.
func pairedMedian(ratios []float64) float64 {
	var v []float64
	for i := 0; i < len(ratios); i += 2 {
		if i+1 == len(ratios) {
			v = append(v, ratios[i])
			break
		}
		v = append(v, math.Sqrt(ratios[i]*ratios[i+1]))
	}
	return median(v)
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// writeRandomFile writes size incompressible, non-zero bytes so neither
// nbdcopy's zero detection nor sparse files can shortcut the copy.
func writeRandomFile(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("nbdbench: %w", err)
	}
	r := rand.NewChaCha8([32]byte{'t', 'a', 'n', 'd', 'e', 'm'})
	if _, err := io.CopyBuffer(f, io.LimitReader(r, size), make([]byte, 1<<20)); err != nil {
		f.Close()
		return fmt.Errorf("nbdbench: write %s: %w", path, err)
	}
	return f.Close()
}

func fsync(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// serveOurs serves the first size bytes of dev on a unix socket.
func serveOurs(dir string, dev blockdev.Device, size int64) (uri string, stop func(), err error) {
	sock := filepath.Join(dir, "tandem.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return "", nil, fmt.Errorf("nbdbench: %w", err)
	}
	if dev.Size() != size {
		dev = &window{Device: dev, size: size}
	}
	srv := nbd.NewServer(nil, nbd.Export{Name: "bench", Device: dev, MultiConn: true})
	done := make(chan struct{})
	go func() {
		srv.Serve(ln)
		close(done)
	}()
	return "nbd+unix:///bench?socket=" + sock, func() { srv.Close(); <-done }, nil
}

// serveNbdkit starts `nbdkit file` on a unix socket and waits until it
// listens (nbdkit writes its PID file only then).
func serveNbdkit(ctx context.Context, dir, file string, fileSize, size int64, params []string) (uri, cmdline string, pid int, stop func(), err error) {
	sock := filepath.Join(dir, "nbdkit.sock")
	pidfile := filepath.Join(dir, "nbdkit.pid")
	args := []string{"--foreground", "--exit-with-parent", "-U", sock, "-P", pidfile}
	if fileSize != size {
		args = append(args, "--filter=truncate")
	}
	args = append(args, "file", "file="+file)
	args = append(args, params...)
	if fileSize != size {
		args = append(args, "truncate="+strconv.FormatInt(size, 10))
	}
	cmd := exec.Command("nbdkit", args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", "", 0, nil, fmt.Errorf("nbdbench: start nbdkit: %w", err)
	}
	stop = func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(pidfile); err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			stop()
			return "", "", 0, nil, errors.New("nbdbench: nbdkit did not start listening within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return "nbd+unix:///?socket=" + sock, "nbdkit " + join(args), cmd.Process.Pid, stop, nil
}

// window shows the first size bytes of a larger device.
type window struct {
	blockdev.Device
	size int64
}

func (w *window) Size() int64 { return w.size }

func (w *window) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > w.size {
		return 0, blockdev.ErrOutOfRange
	}
	return w.Device.ReadAt(p, off)
}

func (w *window) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > w.size {
		return 0, blockdev.ErrOutOfRange
	}
	return w.Device.WriteAt(p, off)
}

// Close leaves the caller's device open.
func (w *window) Close() error { return nil }
