package volumecli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// The keys issue 11 asks `tandem volume bench --json` for.
func TestBenchJSONHasTheIssueKeys(t *testing.T) {
	var out bytes.Buffer
	if err := printJSON(&out, BenchResult{}); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"write_ratio", "latency_p50_us", "latency_bound_us", "resync_transfer_ratio", "resync_rate_ratio", "verify_ratio"} {
		if _, ok := m[k]; !ok {
			t.Errorf("--json lacks %q", k)
		}
	}
}

func TestBenchPrintsEveryTarget(t *testing.T) {
	r := BenchResult{Filesystem: "ext4 on /dev/x", Mode: "sync", Rounds: 3, LatencyBoundus: 100}
	b := &benchRun{res: r}
	b.finish()
	var out bytes.Buffer
	printBench(&out, b.res)
	for _, want := range []string{"sequential 1 MiB writes", "4 KiB write + flush", "resync bytes moved", "resync rate", "verify rate", "ext4 on /dev/x"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestScatteredOffsetsAreDistinctWholeBlocks(t *testing.T) {
	offs := scatteredOffsets(64<<20, 16<<20, 3)
	if len(offs) != 16 {
		t.Fatalf("%d offsets, want 16", len(offs))
	}
	seen := map[int64]bool{}
	for _, o := range offs {
		if o%benchBlock != 0 || o < 0 || o+benchBlock > 64<<20 || seen[o] {
			t.Fatalf("offset %d: not a distinct whole block of the volume", o)
		}
		seen[o] = true
	}
}

func TestQuantiles(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Microsecond)
	}
	if p50, p99 := quantileUS(d, 0.5), quantileUS(d, 0.99); p50 != 51 || p99 != 100 {
		t.Fatalf("p50 %v p99 %v", p50, p99)
	}
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Fatalf("median %v", m)
	}
}
