package testbed

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"
)

// BenchOptions configure the failover benchmark.
type BenchOptions struct {
	Binary string
	// Runs per fault and per system (default 20).
	Runs int
	// Faults to measure (default all of BenchFaults).
	Faults []string
	// NoDefaultProfile skips keepalived's default profile (advert_int
	// 1 s), which takes about three quarters of the benchmark's time.
	NoDefaultProfile bool
	// Tandem is tandem's timing (the zero value: its defaults).
	Tandem SoakProfile
	// TandemVIPOnly gives tandem's group only the VIP and runs the service
	// on both nodes all the time, as the keepalived runs do: a like-for-like
	// comparison, where the default group also stops the service on the old
	// node and starts it on the new one.
	TandemVIPOnly bool
	// KeepalivedAdverts are keepalived's advert intervals besides its
	// default profile (default: one, equal to tandem's heartbeat
	// interval). The first is the ratio's baseline; the others are
	// reported with their own ratios.
	KeepalivedAdverts []time.Duration
	// Stress runs stress-ng with these arguments for the whole benchmark
	// (nil: no stress).
	Stress []string
	Logf   func(format string, args ...any)
	Keep   bool
}

// The benchmark's faults: the active node SIGKILLed, frozen (SIGSTOP),
// cut off (every link down), a partition between the two data nodes (both
// still reaching the witness and the client), and its daemon stopped
// cleanly (SIGTERM of the tandem agent, which stops its services and hands
// over; of keepalived alone, which gives up its VIP while the service runs
// on).
var BenchFaults = []string{"kill", "freeze", "cutoff", "partition", "stop"}

// Stats summarise the client-seen unavailable windows of one fault on one
// system.
type Stats struct {
	Runs int     `json:"runs"`
	Min  float64 `json:"min_ms"`
	Med  float64 `json:"median_ms"`
	P95  float64 `json:"p95_ms"`
	Max  float64 `json:"max_ms"`
	// The spread: quartiles, and the order statistics that bracket the
	// median with at least 95 % confidence (distribution-free).
	P25      float64    `json:"p25_ms"`
	P75      float64    `json:"p75_ms"`
	MedianCI [2]float64 `json:"median_ci95_ms"`
	// SplitBrainRuns: runs in which the VIP answered from two nodes (two
	// MACs for one ARP request, or answers from both).
	SplitBrainRuns int `json:"split_brain_runs"`
	// Unrecovered: runs in which the service did not come back within the
	// wait (counted, left out of the figures).
	Unrecovered int       `json:"unrecovered_runs,omitempty"`
	Samples     []float64 `json:"samples_ms"`
	Why         []string  `json:"split_brain_why,omitempty"`
}

// FaultResult compares the systems on one fault. For "partition" nothing
// should move: its figures are the longest gap the client saw while the
// nodes could not hear each other.
type FaultResult struct {
	Fault                       string  `json:"fault"`
	TandemMedianMs              float64 `json:"tandem_median_ms"`
	KeepalivedMedianMs          float64 `json:"keepalived_median_ms"`
	KeepalivedDefaultMedianMs   float64 `json:"keepalived_default_median_ms,omitempty"`
	Ratio                       float64 `json:"ratio"` // tandem / keepalived at equal interval
	RatioDefault                float64 `json:"ratio_default,omitempty"`
	TandemSplitBrain            bool    `json:"tandem_split_brain"`
	KeepalivedSplitBrain        bool    `json:"keepalived_split_brain"`
	KeepalivedDefaultSplitBrain bool    `json:"keepalived_default_split_brain,omitempty"`
	Tandem                      Stats   `json:"tandem"`
	Keepalived                  Stats   `json:"keepalived"`
	KeepalivedDefault           *Stats  `json:"keepalived_default,omitempty"`
	// KeepalivedOthers: keepalived at the further advert intervals.
	KeepalivedOthers []OtherStats `json:"keepalived_others,omitempty"`
}

// OtherStats are keepalived's figures at one more advert interval.
type OtherStats struct {
	AdvertMs float64 `json:"advert_int_ms"`
	Ratio    float64 `json:"ratio"` // tandem / this
	Stats    Stats   `json:"stats"`
}

// BenchResult is what `tandem bench failover --json` prints.
type BenchResult struct {
	Runs                int           `json:"runs"`
	TandemProfile       string        `json:"tandem_profile"`
	HeartbeatMs         float64       `json:"heartbeat_interval_ms"`
	KeepalivedOthersMs  []float64     `json:"keepalived_other_advert_int_ms,omitempty"`
	Stress              string        `json:"stress,omitempty"`
	KeepalivedAdvertMs  float64       `json:"keepalived_advert_int_ms"`
	KeepalivedDefaultMs float64       `json:"keepalived_default_advert_int_ms,omitempty"`
	ProbeIntervalMs     float64       `json:"probe_interval_ms"`
	Faults              []FaultResult `json:"faults"`
	Seconds             float64       `json:"seconds"`
	Notes               []string      `json:"notes,omitempty"`
}

// summarize computes the figures of samples (ms).
func summarize(samples []float64, splitRuns, unrecovered int, why []string) Stats {
	s := Stats{Runs: len(samples) + unrecovered, SplitBrainRuns: splitRuns, Unrecovered: unrecovered, Samples: samples, Why: why}
	if len(samples) == 0 {
		return s
	}
	sorted := append([]float64(nil), samples...)
	sort.Float64s(sorted)
	s.Min, s.Max = sorted[0], sorted[len(sorted)-1]
	s.Med = percentile(sorted, 50)
	s.P95 = percentile(sorted, 95)
	s.P25, s.P75 = percentile(sorted, 25), percentile(sorted, 75)
	lo, hi := medianCI(len(sorted))
	s.MedianCI = [2]float64{sorted[lo], sorted[hi]}
	return s
}

// medianCI returns the indices of the order statistics that bracket the
// median of n samples with at least 95 % confidence: the widest symmetric
// pair whose binomial(n, ½) tails are each below 2.5 % (for n < 6 no
// pair is that sure, and the whole range is returned).
func medianCI(n int) (int, int) {
	if n == 0 {
		return 0, 0
	}
	// P(X <= k) for X ~ Binomial(n, 1/2), in logs to stay finite.
	cdf := 0.0
	k := -1
	for j := 0; j < n; j++ {
		lc, _ := math.Lgamma(float64(n + 1))
		a, _ := math.Lgamma(float64(j + 1))
		b, _ := math.Lgamma(float64(n - j + 1))
		cdf += math.Exp(lc - a - b - float64(n)*math.Ln2)
		if cdf > 0.025 {
			break
		}
		k = j
	}
	// With X below k+1 samples under the median at most 2.5 % of the
	// time, sample k (0-based) is a lower bound; symmetric above.
	if k < 0 {
		return 0, n - 1
	}
	return k, n - 1 - k
}

// percentile of sorted values, nearest rank.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	rank = max(0, min(rank, len(sorted)-1))
	return sorted[rank]
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return math.Round(a/b*100) / 100
}

// finish fills the comparison fields from the stats.
func (f *FaultResult) finish() {
	f.TandemMedianMs, f.KeepalivedMedianMs = f.Tandem.Med, f.Keepalived.Med
	f.Ratio = ratio(f.Tandem.Med, f.Keepalived.Med)
	f.TandemSplitBrain, f.KeepalivedSplitBrain = f.Tandem.SplitBrainRuns > 0, f.Keepalived.SplitBrainRuns > 0
	if d := f.KeepalivedDefault; d != nil {
		f.KeepalivedDefaultMedianMs = d.Med
		f.RatioDefault = ratio(f.Tandem.Med, d.Med)
		f.KeepalivedDefaultSplitBrain = d.SplitBrainRuns > 0
	}
	for i := range f.KeepalivedOthers {
		f.KeepalivedOthers[i].Ratio = ratio(f.Tandem.Med, f.KeepalivedOthers[i].Stats.Med)
	}
}

// PrintBench writes the human report.
func PrintBench(w io.Writer, r BenchResult) {
	fmt.Fprintf(w, "\ntandem bench failover: %d runs per fault and system; client probes every %.0f ms\n", r.Runs, r.ProbeIntervalMs)
	fmt.Fprintf(w, "tandem: %s (heartbeat %.0f ms); keepalived VRRPv3: advert_int %.0f ms", r.TandemProfile, r.HeartbeatMs, r.KeepalivedAdvertMs)
	for _, a := range r.KeepalivedOthersMs {
		fmt.Fprintf(w, ", %.0f ms", a)
	}
	if r.KeepalivedDefaultMs > 0 {
		fmt.Fprintf(w, " and its default %.0f ms", r.KeepalivedDefaultMs)
	}
	fmt.Fprintln(w)
	if r.Stress != "" {
		fmt.Fprintf(w, "under %s all through\n", r.Stress)
	}
	fmt.Fprintln(w, "client-seen unavailable window (ms): min / median / p95 / max  (quartiles; median 95% CI)  [runs with the VIP answered from two nodes]")
	for _, f := range r.Faults {
		fmt.Fprintf(w, "\n%s\n", f.Fault)
		row := func(name string, s Stats) {
			fmt.Fprintf(w, "  %-22s %6.0f / %6.0f / %6.0f / %6.0f  (%.0f–%.0f; %.0f–%.0f)  [split brain %d/%d]", name, s.Min, s.Med, s.P95, s.Max,
				s.P25, s.P75, s.MedianCI[0], s.MedianCI[1], s.SplitBrainRuns, s.Runs)
			if s.Unrecovered > 0 {
				fmt.Fprintf(w, " (%d runs never recovered)", s.Unrecovered)
			}
			fmt.Fprintln(w)
		}
		row("tandem", f.Tandem)
		row(fmt.Sprintf("keepalived %.0f ms", r.KeepalivedAdvertMs), f.Keepalived)
		for _, o := range f.KeepalivedOthers {
			row(fmt.Sprintf("keepalived %.0f ms", o.AdvertMs), o.Stats)
		}
		if f.KeepalivedDefault != nil {
			row("keepalived (default)", *f.KeepalivedDefault)
		}
		fmt.Fprintf(w, "  ratio tandem/keepalived: %.2f", f.Ratio)
		for _, o := range f.KeepalivedOthers {
			fmt.Fprintf(w, " (vs %.0f ms: %.2f)", o.AdvertMs, o.Ratio)
		}
		if f.KeepalivedDefault != nil {
			fmt.Fprintf(w, " (vs default profile: %.2f)", f.RatioDefault)
		}
		fmt.Fprintln(w)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintf(w, "\n%.0f s\n", r.Seconds)
}

// parseFaults checks a fault list against a benchmark's faults (none
// given: all of them).
func parseFaults(faults, known []string) ([]string, error) {
	if len(faults) == 0 {
		return known, nil
	}
	for _, f := range faults {
		ok := false
		for _, k := range known {
			ok = ok || f == k
		}
		if !ok {
			return nil, fmt.Errorf("testbed: unknown fault %q (faults: %s)", f, strings.Join(known, ", "))
		}
	}
	return faults, nil
}

// benchSettle is how long a system must be steady before a run.
const benchSettle = 300 * time.Millisecond
