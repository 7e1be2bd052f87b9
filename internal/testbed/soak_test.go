package testbed

import (
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

func TestWakeupRecorder(t *testing.T) {
	w := WakeupRecorder{StallAt: 50 * time.Millisecond}
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	// 1000 wake-ups: 980 at 0.1 ms, 15 at 20 ms, 3 at 60 ms, 2 at 1.5 s.
	for i := 0; i < 1000; i++ {
		late := 100 * time.Microsecond
		switch {
		case i >= 998:
			late = 1500 * time.Millisecond
		case i >= 995:
			late = 60 * time.Millisecond
		case i >= 980:
			late = 20 * time.Millisecond
		}
		w.Observe(t0.Add(time.Duration(i)*10*time.Millisecond), late)
	}
	want := Latency{Samples: 1000, P99: 20.1, P999: 1500, Max: 1500, Over50: 5, Over100: 2}
	if l := w.Summary(); l != want {
		t.Errorf("got %+v, want %+v", l, want)
	}
	if len(w.Stalls) != 5 || w.Stalls[0].Late != 60 || w.Stalls[4].String() != "12:00:09.990 +1500 ms" {
		t.Errorf("stalls %v", w.Stalls)
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
