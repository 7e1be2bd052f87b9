package testbed

import (
	"strings"
	"testing"
	"time"
)

func TestParseSoakProfile(t *testing.T) {
	for _, tc := range []struct {
		in, name      string
		hb, nt, lease time.Duration
		advert        time.Duration
	}{
		{in: "tandem", name: "tandem"},
		{in: "tandem:60ms/180ms", name: "tandem:60ms/180ms", hb: 60 * time.Millisecond, nt: 180 * time.Millisecond, lease: 180 * time.Millisecond},
		{in: "tandem:100/500/400", name: "tandem:100ms/500ms/400ms", hb: 100 * time.Millisecond, nt: 500 * time.Millisecond, lease: 400 * time.Millisecond},
		{in: "keepalived", name: "keepalived:1s", advert: time.Second},
		{in: "keepalived:60ms", name: "keepalived:60ms", advert: 60 * time.Millisecond},
	} {
		p, err := ParseSoakProfile(tc.in)
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if p.Name() != tc.name || p.Heartbeat != tc.hb || p.NodeTimeout != tc.nt || p.Lease != tc.lease || p.Advert != tc.advert {
			t.Errorf("%s: got %+v (%s)", tc.in, p, p.Name())
		}
		if again, err := ParseSoakProfile(p.Name()); err != nil || again != p {
			t.Errorf("%s: its name %s reads back as %+v, %v", tc.in, p.Name(), again, err)
		}
	}
	for _, bad := range []string{"", "pacemaker", "tandem:60ms", "tandem:a/b", "keepalived:15ms", "keepalived:-1s"} {
		if _, err := ParseSoakProfile(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if p, _ := ParseSoakProfile("tandem:60ms/180ms"); p.Timing()["lease"] != "180ms" {
		t.Errorf("timing %v", p.Timing())
	}
}

func TestParseCyclictest(t *testing.T) {
	var b strings.Builder
	b.WriteString("# /dev/cpu_dma_latency set to 0us\n# Histogram\n")
	// 1000 samples: 980 at 0.1 ms, 15 at 20 ms, 3 at 60 ms; 2 overflows.
	b.WriteString("000100 000980\n020000 000015\n060000 000003\n099999 000000\n")
	b.WriteString("# Total: 000000998\n# Min Latencies: 00100\n# Avg Latencies: 00500\n# Max Latencies: 150123\n# Histogram Overflows: 00002\n")
	b.WriteString("# Histogram Overflow at cycle number:\n# Thread 0: 00012 00500\n")
	l := parseCyclictest(b.String())
	want := Latency{Samples: 1000, P99: 20, P999: 150.123, Max: 150.123, Over50: 5, Over100: 2}
	if l != want {
		t.Errorf("got %+v, want %+v", l, want)
	}
}

func TestMedianCI(t *testing.T) {
	// The textbook pairs (1-based order statistics) of a 95 % interval
	// for the median.
	for n, want := range map[int][2]int{5: {1, 5}, 6: {1, 6}, 10: {2, 9}, 20: {6, 15}, 30: {10, 21}} {
		lo, hi := medianCI(n)
		if lo+1 != want[0] || hi+1 != want[1] {
			t.Errorf("n=%d: got x(%d)..x(%d), want x(%d)..x(%d)", n, lo+1, hi+1, want[0], want[1])
		}
	}
}
