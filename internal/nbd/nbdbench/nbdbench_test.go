package nbdbench

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"tandem/internal/blockdev"
)

// TestCompareWithNbdkit runs a small comparison by default, to prove the
// machinery; TANDEM_NBD_BENCH=1 runs the full 1 GiB target
// (TANDEM_NBD_BENCH_MIB and TANDEM_NBD_BENCH_ROUNDS adjust it) and fails
// below 0.9 of nbdkit.
func TestCompareWithNbdkit(t *testing.T) {
	if m := Missing(); len(m) > 0 {
		t.Skipf("skipping: %v not installed (Debian packages nbdkit, libnbd-bin)", m)
	}
	full := os.Getenv("TANDEM_NBD_BENCH") != ""
	size, rounds := int64(32<<20), 1
	if full {
		size, rounds = 1<<30, 5
		if v, err := strconv.Atoi(os.Getenv("TANDEM_NBD_BENCH_MIB")); err == nil {
			size = int64(v) << 20
		}
		if v, err := strconv.Atoi(os.Getenv("TANDEM_NBD_BENCH_ROUNDS")); err == nil {
			rounds = v
		}
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(file, size); err != nil {
		t.Fatal(err)
	}
	dev, err := blockdev.OpenFile(file, false)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	res, err := Compare(context.Background(), Options{Device: dev, File: file, Size: size, Rounds: rounds, TempDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	for i := range res.OursSamples {
		o, k := res.OursSamples[i], res.NbdkitSamples[i]
		t.Logf("round %d: write tandem %.0f nbdkit %.0f MB/s (%.2f), read tandem %.0f nbdkit %.0f MB/s (%.2f)",
			i+1, o.Write/1e6, k.Write/1e6, o.Write/k.Write, o.Read/1e6, k.Read/1e6, o.Read/k.Read)
	}
	for _, c := range res.Commands {
		t.Log(c)
	}
	if full && (res.WriteRatio < 0.9 || res.ReadRatio < 0.9) {
		t.Errorf("below target 0.9 of nbdkit: %v", res)
	}
}

func TestSectorsWrittenReadsTheSeventhField(t *testing.T) {
	p := filepath.Join(t.TempDir(), "stat")
	// The layout of /sys/block/vda/stat: reads, merges, sectors, ticks,
	// then writes, merges, sectors written, ...
	if err := os.WriteFile(p, []byte("   12050     3370  1630468    6217   155430   172049 38745920  1047700        0   542832  1080000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := sectorsWritten(p); got != 38745920 {
		t.Fatalf("sectorsWritten = %d, want 38745920", got)
	}
	if got := sectorsWritten(""); got != 0 {
		t.Fatalf("sectorsWritten(\"\") = %d, want 0", got)
	}
}

func TestDiskFiguresOnlyWhenKnown(t *testing.T) {
	r := Result{OursDiskWritten: 1 << 30, NbdkitDiskWritten: 0}
	if got, want := r.DiskFigures(), "; written to disk during the timed upload: tandem 1024 MiB, nbdkit 0 MiB"; got != want {
		t.Fatalf("DiskFigures = %q, want %q", got, want)
	}
	r.NbdkitDiskWritten = -1
	if got := r.DiskFigures(); got != "" {
		t.Fatalf("DiskFigures with an unknown disk = %q, want empty", got)
	}
}

func TestDiskStatPathFindsTheDeviceOfAFile(t *testing.T) {
	p := diskStatPath("/")
	if p == "" {
		t.Skip("the root file system is not on a block device here")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	if diskStatPath("/nonexistent/file") != "" {
		t.Fatal("a missing file has a disk")
	}
}

func TestPairedMedianCancelsWhoGoesFirst(t *testing.T) {
	// Whoever reads first is twice as fast: per-round ratios alternate.
	if got := pairedMedian([]float64{2, 0.5, 2, 0.5, 2, 0.5}); math.Abs(got-1) > 1e-9 {
		t.Fatalf("pairedMedian of alternating 2 and 0.5 = %v, want 1", got)
	}
	// Pairs (0.81, 1) → 0.9; (0.64, 0.64) → 0.64; (1.21, 1.44) → 1.32: median 0.9.
	if got := pairedMedian([]float64{0.81, 1, 0.64, 0.64, 1.21, 1.44}); math.Abs(got-0.9) > 1e-9 {
		t.Fatalf("pairedMedian = %v, want 0.9", got)
	}
	if got := pairedMedian([]float64{0.8}); got != 0.8 {
		t.Fatalf("pairedMedian of one round = %v, want 0.8", got)
	}
}
