package volumecli

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// `tandem volume bench` measures a replicated volume against baselines
// taken in the same run on the same two hosts (network namespaces joined
// by a veth bridge, their backing files on one local filesystem), and
// prints each of issue 11's targets as a ratio:
//
//   - sequential 1 MiB writes in sync mode through the primary's NBD
//     export, against min(local buffered write + fdatasync, raw TCP
//     between the hosts);
//   - 4 KiB write + flush at queue depth 1, p50 against local 4 KiB
//     write + fdatasync p50 + TCP round trip p50 + 10 %, and against
//     its floor, what the two requests must do at the least on these
//     hosts, done by two small programs (benchfloor_linux.go);
//   - a resync after a disconnect during which D bytes were written:
//     bytes moved against D, rate against min(disk, link);
//   - verify against the local sequential read rate.
//
// bench_linux.go runs it (namespaces, processes); benchio_linux.go holds
// the timed loops; benchpeer.go the far end of the network baselines.

type benchOptions struct {
	dir        string
	size       int64 // the volume's size and the bytes of each sequential run
	resync     int64 // D
	rounds     int
	samples    int // 4 KiB write + flush samples, over all rounds
	qd         int
	keep       bool
	dropCaches bool
	profileDir string
	skip       []string // steps left out (hidden --skip, while working on one target)
	logf       func(format string, args ...any)
}

// BenchResult is what --json prints.
type BenchResult struct {
	Filesystem string `json:"filesystem"`
	Dir        string `json:"dir"`
	SizeBytes  int64  `json:"size_bytes"`
	Rounds     int    `json:"rounds"`
	QueueDepth int    `json:"queue_depth"`
	Mode       string `json:"mode"`

	// The targets' figures (issue 11).
	WriteRatio     float64 `json:"write_ratio"`
	LatencyP50us   float64 `json:"latency_p50_us"`
	LatencyP99us   float64 `json:"latency_p99_us"`
	LatencyBoundus float64 `json:"latency_bound_us"`
	// LatencyFloorus is the p50 of what a sync WRITE + FLUSH must do at
	// the least on these hosts, done without the engine
	// (benchfloor_linux.go): the NBD hop, a TLS round trip carrying the
	// 4 KiB with the peer's pwrite, then the NBD hop and a TLS round trip
	// with both sides' fdatasync at once on the same disk.
	LatencyFloorus float64 `json:"latency_floor_us"`
	// LatencyFloorRatio is latency_p50_us / latency_floor_us: the
	// engine's share; FloorBoundRatio is latency_floor_us /
	// latency_bound_us: this bed's (above 1, the bound cannot be met
	// here by any engine).
	LatencyFloorRatio   float64 `json:"latency_p50_floor_ratio"`
	FloorBoundRatio     float64 `json:"latency_floor_bound_ratio"`
	ResyncTransferRatio float64 `json:"resync_transfer_ratio"`
	ResyncRateRatio     float64 `json:"resync_rate_ratio"`
	VerifyRatio         float64 `json:"verify_ratio"`

	// Ceilings of this bed beside two targets: the resync rate against
	// min(disk, TLS between the hosts), as every byte of the link is
	// encrypted; verify against what each of two readers gets from the
	// disk at once, as both replicas read the same disk here.
	ResyncRateTLSRatio float64 `json:"resync_rate_tls_ratio"`
	VerifySharedRatio  float64 `json:"verify_shared_read_ratio"`

	Targets  []BenchTarget  `json:"targets"`
	Baseline BenchBaselines `json:"baseline"`
	Volume   BenchVolume    `json:"volume"`
	Notes    []string       `json:"notes"`
	Seconds  float64        `json:"seconds"`
}

// BenchTarget is one target with its verdict.
type BenchTarget struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Target string  `json:"target"`
	Met    bool    `json:"met"`
}

// BenchBaselines are the raw figures the ratios divide by (medians over
// rounds; MB/s are 10^6 bytes per second).
type BenchBaselines struct {
	LocalWriteMBps float64 `json:"local_write_mbps"`
	// LocalWriteSharedMBps: two writers at once on the same filesystem,
	// each its own file, as both replicas write here (per writer).
	LocalWriteSharedMBps float64 `json:"local_write_shared_mbps"`
	TCPMBps              float64 `json:"tcp_mbps"`
	TLSMBps              float64 `json:"tls_mbps"`
	Local4KP50us         float64 `json:"local_4k_sync_p50_us"`
	Local4KP99us         float64 `json:"local_4k_sync_p99_us"`
	// Local4KSharedP50us: the same with a second writer doing the same on
	// another file at once (both replicas flush together here).
	Local4KSharedP50us float64 `json:"local_4k_sync_shared_p50_us"`
	// The floor's p99 and its two parts' p50 (LatencyFloorus is its p50).
	FloorP99us      float64 `json:"latency_floor_p99_us"`
	FloorWriteP50us float64 `json:"floor_write_p50_us"`
	FloorFlushP50us float64 `json:"floor_flush_p50_us"`
	RTTP50us        float64 `json:"rtt_p50_us"`
	RTTP99us        float64 `json:"rtt_p99_us"`
	LocalReadMBps   float64 `json:"local_read_mbps"`
	// LocalReadSharedMBps: two readers at once, each its own file (verify
	// reads both replicas).
	LocalReadSharedMBps float64 `json:"local_read_shared_mbps"`
	// DigestMBps: one core digesting 1 MiB reads region by region, as
	// verify does on each replica (replication.RegionDigests).
	DigestMBps float64 `json:"digest_mbps"`
}

// BenchVolume are the volume's raw figures.
type BenchVolume struct {
	WriteMBps        float64   `json:"write_mbps"`
	WriteRounds      []float64 `json:"write_round_ratios"`
	StandaloneMBps   float64   `json:"standalone_write_mbps"` // while disconnected (the resync's D)
	FlushP50us       float64   `json:"write_flush_p50_us"`
	WriteOnlyP50us   float64   `json:"write_4k_p50_us"` // the WriteAt alone
	FUAP50us         float64   `json:"write_4k_fua_p50_us"`
	FUAP99us         float64   `json:"write_4k_fua_p99_us"`
	LinkRTTus        float64   `json:"link_rtt_us"` // as the link's pings see it
	ResyncWritten    int64     `json:"resync_written_bytes"`
	ResyncMoved      int64     `json:"resync_moved_bytes"`
	ResyncWireBytes  int64     `json:"resync_wire_bytes"`
	ResyncSeconds    float64   `json:"resync_seconds"`
	ResyncMBps       float64   `json:"resync_mbps"`
	ResyncConnectSec float64   `json:"resync_from_connect_seconds"`
	VerifyBytes      int64     `json:"verify_bytes"`
	VerifySeconds    float64   `json:"verify_seconds"`
	VerifyMBps       float64   `json:"verify_mbps"`
}

func benchCmd(g *globals) *cobra.Command {
	var o benchOptions
	var size, resync string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "bench [--dir D] [--size S]",
		Short: "Measure a replicated volume on two network-namespace hosts against baselines from the same run (root)",
		Long: `bench builds two hosts (network namespaces on one veth bridge), runs 'tandem volume up'
on each over backing files in --dir, makes one primary in sync mode and measures, in the
same run and on the same hosts, the volume and its baselines:
  sequential 1 MiB writes through NBD  vs  min(local write + fdatasync, raw TCP between the hosts)
  4 KiB write + flush at queue depth 1  vs  local 4 KiB write + fdatasync p50 + TCP RTT p50 + 10 %,
                                        and vs its floor: the same hops and disk work without the engine
  resync after a disconnect with D bytes written  vs  D, and min(disk, link) for the rate
  verify                                vs  local sequential read (page cache dropped before both)
Both backing files and the baseline files share one filesystem: that is printed beside the
figures, with what two writers (or readers) at once get from it. Needs root.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.size, err = parseSize(size); err != nil {
				return err
			}
			if o.resync, err = parseSize(resync); err != nil {
				return err
			}
			o.size &^= 1<<20 - 1
			o.resync &^= 1<<20 - 1
			if o.size < 64<<20 || o.resync <= 0 || o.resync > o.size/2 {
				return fmt.Errorf("volume: bench: --size at least 64M, --resync-size between 1M and half of --size")
			}
			o.rounds, o.qd, o.samples = max(1, o.rounds), max(1, o.qd), max(10, o.samples)
			o.logf = func(format string, args ...any) { fmt.Fprintf(g.errOut, format+"\n", args...) }
			res, err := runBench(cmd.Context(), g, o)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(g.out, res)
			}
			printBench(g.out, res)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dir, "dir", "", "directory for the backing and baseline files (default: a temporary directory); its filesystem is the one measured")
	f.StringVar(&size, "size", "1G", "the volume's size, and the bytes written by each sequential run")
	f.StringVar(&resync, "resync-size", "256M", "bytes written while disconnected before each resync (D)")
	f.IntVar(&o.rounds, "rounds", 3, "rounds, baseline and volume in alternating order (medians reported)")
	f.IntVar(&o.samples, "samples", 3000, "4 KiB write + flush samples, spread over the rounds")
	f.IntVar(&o.qd, "qd", 8, "requests in flight for the sequential writes (one NBD connection)")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	f.BoolVar(&o.keep, "keep", false, "keep the directory (logs of both nodes)")
	f.BoolVar(&o.dropCaches, "drop-caches", true, "drop the page cache before each timed read (verify and its baseline)")
	f.StringVar(&o.profileDir, "profile", "", "write CPU profiles of both nodes' 'up' to this directory")
	f.StringSliceVar(&o.skip, "skip", nil, "steps to leave out: sequential writes, 4 KiB write + flush, resync, verify (their ratios then lack a baseline)")
	f.MarkHidden("skip")
	return cmd
}

func printBench(w io.Writer, r BenchResult) {
	fmt.Fprintf(w, "tandem volume bench: 2 hosts (network namespaces on one veth bridge), %s mode, backing and baseline files on %s in %s;\n", r.Mode, r.Filesystem, r.Dir)
	fmt.Fprintf(w, "  %d MiB volume, %d rounds with baseline and volume in alternating order, medians\n", r.SizeBytes>>20, r.Rounds)
	b, v := r.Baseline, r.Volume
	fmt.Fprintf(w, "baselines: local write (1 MiB, fdatasync at the end) %.0f MB/s, %.0f MB/s each with two writers at once; TCP between the hosts %.0f MB/s (TLS 1.3 as the link %.0f MB/s)\n",
		b.LocalWriteMBps, b.LocalWriteSharedMBps, b.TCPMBps, b.TLSMBps)
	fmt.Fprintf(w, "           local 4 KiB write + fdatasync p50 %.0f µs p99 %.0f µs (p50 %.0f µs beside a second writer); TCP RTT p50 %.0f µs p99 %.0f µs; local sequential read %.0f MB/s (%.0f MB/s each, two at once)\n",
		b.Local4KP50us, b.Local4KP99us, b.Local4KSharedP50us, b.RTTP50us, b.RTTP99us, b.LocalReadMBps, b.LocalReadSharedMBps)
	for _, t := range r.Targets {
		fmt.Fprintf(w, "%-44s %7.2f  [target %s: %s]\n", t.Name, t.Value, t.Target, metWord(t.Met))
		switch {
		case strings.HasPrefix(t.Name, "sequential"):
			fmt.Fprintf(w, "  volume %.0f MB/s through NBD at queue depth %d, flush at the end; per round %s\n", v.WriteMBps, r.QueueDepth, ratios(v.WriteRounds))
			fmt.Fprintf(w, "  ceilings here: the volume disconnected from its peer %.0f MB/s (no replication; the resync's D writes); TLS between the hosts %.0f MB/s = %.2f of min(local, TCP)\n",
				v.StandaloneMBps, b.TLSMBps, b.TLSMBps/min(b.LocalWriteMBps, b.TCPMBps))
		case strings.HasPrefix(t.Name, "4 KiB"):
			fmt.Fprintf(w, "  volume p50 %.0f µs p99 %.0f µs (the write %.0f µs, the flush %.0f µs); bound (%.0f + %.0f) × 1.1 = %.0f µs; the link's own RTT %.0f µs\n",
				r.LatencyP50us, r.LatencyP99us, v.WriteOnlyP50us, v.FlushP50us, b.Local4KP50us, b.RTTP50us, r.LatencyBoundus, v.LinkRTTus)
			fmt.Fprintf(w, "  one 4 KiB write with FUA instead (one request): p50 %.0f µs p99 %.0f µs = %.2f of the bound\n",
				v.FUAP50us, v.FUAP99us, v.FUAP50us/r.LatencyBoundus)
			fmt.Fprintf(w, "  floor (the same WRITE + FLUSH hops and disk work without the engine): p50 %.0f µs p99 %.0f µs (the write %.0f µs, the flush %.0f µs) = %.2f of the bound; latency_p50 / floor %.2f\n",
				r.LatencyFloorus, b.FloorP99us, b.FloorWriteP50us, b.FloorFlushP50us, r.FloorBoundRatio, r.LatencyFloorRatio)
		case strings.HasPrefix(t.Name, "resync bytes"):
			fmt.Fprintf(w, "  D %d MiB, moved %d MiB (%d MiB on the wire with framing and the bitmap)\n", v.ResyncWritten>>20, v.ResyncMoved>>20, v.ResyncWireBytes>>20)
		case strings.HasPrefix(t.Name, "resync rate"):
			fmt.Fprintf(w, "  %.0f MB/s over %.2f s (%.2f s from connect) against min(local write %.0f, TCP %.0f) MB/s\n",
				v.ResyncMBps, v.ResyncSeconds, v.ResyncConnectSec, b.LocalWriteMBps, b.TCPMBps)
			fmt.Fprintf(w, "  ceiling here: the link is TLS, %.0f MB/s between the hosts: %.2f of min(local write, TLS)\n", b.TLSMBps, r.ResyncRateTLSRatio)
		case strings.HasPrefix(t.Name, "verify"):
			fmt.Fprintf(w, "  %d MiB in %.2f s = %.0f MB/s against local sequential read %.0f MB/s; CRC-32C (each replica digests every region) %.0f MB/s on one core\n",
				v.VerifyBytes>>20, v.VerifySeconds, v.VerifyMBps, b.LocalReadMBps, b.DigestMBps)
			fmt.Fprintf(w, "  ceiling here: both replicas read one disk, %.0f MB/s each with two readers at once: %.2f of that\n", b.LocalReadSharedMBps, r.VerifySharedRatio)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintf(w, "(%.0f s)\n", r.Seconds)
}

func metWord(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func ratios(v []float64) string {
	var s []string
	for _, x := range v {
		s = append(s, fmt.Sprintf("%.2f", x))
	}
	return strings.Join(s, " ")
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// quantileUS is the q-quantile of d in microseconds.
func quantileUS(d []time.Duration, q float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[min(int(q*float64(len(s))), len(s)-1)]) / 1e3
}

// mbps is n bytes over d in MB/s.
func mbps(n int64, d time.Duration) float64 { return float64(n) / d.Seconds() / 1e6 }

// pair runs base and measured, base first in even rounds.
func pair(round int, base, measured func() error) error {
	first, second := base, measured
	if round%2 == 1 {
		first, second = measured, base
	}
	if err := first(); err != nil {
		return err
	}
	return second()
}
