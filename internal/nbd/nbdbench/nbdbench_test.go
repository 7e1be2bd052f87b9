package nbdbench

import (
	"context"
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
