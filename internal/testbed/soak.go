package testbed

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// A SoakProfile is one system at one timing: tandem with a heartbeat
// interval, node timeout and lease, or keepalived with an advert interval.
// Written as "tandem:60ms/180ms" (the lease defaults to the node timeout;
// "tandem:60ms/180ms/240ms" sets it), "tandem" (tandem's defaults),
// "keepalived:100ms" or "keepalived" (its default, 1 s). Bare numbers are
// milliseconds.
type SoakProfile struct {
	System      string        `json:"system"` // tandem or keepalived
	Heartbeat   time.Duration `json:"-"`
	NodeTimeout time.Duration `json:"-"`
	Lease       time.Duration `json:"-"`
	Advert      time.Duration `json:"-"`
}

// Name is the profile as written on the command line.
func (p SoakProfile) Name() string {
	if p.System == "keepalived" {
		return "keepalived:" + fmtDur(p.Advert)
	}
	if p.Heartbeat == 0 {
		return "tandem"
	}
	s := "tandem:" + fmtDur(p.Heartbeat) + "/" + fmtDur(p.NodeTimeout)
	if p.Lease != p.NodeTimeout {
		s += "/" + fmtDur(p.Lease)
	}
	return s
}

// Timing is the config's timing section for a tandem profile (nil keeps
// tandem's defaults).
func (p SoakProfile) Timing() map[string]string {
	if p.System != "tandem" || p.Heartbeat == 0 {
		return nil
	}
	return map[string]string{
		"heartbeat_interval": p.Heartbeat.String(),
		"node_timeout":       p.NodeTimeout.String(),
		"lease":              p.Lease.String(),
	}
}

func fmtDur(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.Itoa(int(d/time.Second)) + "s"
	}
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}

// ParseSoakProfile reads one profile (see SoakProfile).
func ParseSoakProfile(s string) (SoakProfile, error) {
	sys, rest, _ := strings.Cut(strings.TrimSpace(s), ":")
	dur := func(v string) (time.Duration, error) {
		if n, err := strconv.Atoi(v); err == nil {
			return time.Duration(n) * time.Millisecond, nil
		}
		d, err := time.ParseDuration(v)
		if err == nil && d <= 0 {
			err = fmt.Errorf("not positive")
		}
		return d, err
	}
	bad := func(err error) (SoakProfile, error) {
		return SoakProfile{}, fmt.Errorf("testbed: profile %q: %v (want tandem[:HEARTBEAT/NODE_TIMEOUT[/LEASE]] or keepalived[:ADVERT])", s, err)
	}
	switch sys {
	case "tandem":
		p := SoakProfile{System: sys}
		if rest == "" {
			return p, nil
		}
		parts := strings.Split(rest, "/")
		if len(parts) < 2 || len(parts) > 3 {
			return bad(fmt.Errorf("two or three durations"))
		}
		var ds []time.Duration
		for _, v := range parts {
			d, err := dur(v)
			if err != nil {
				return bad(err)
			}
			ds = append(ds, d)
		}
		p.Heartbeat, p.NodeTimeout, p.Lease = ds[0], ds[1], ds[1]
		if len(ds) == 3 {
			p.Lease = ds[2]
		}
		return p, nil
	case "keepalived":
		p := SoakProfile{System: sys, Advert: time.Second}
		if rest == "" {
			return p, nil
		}
		d, err := dur(rest)
		if err != nil {
			return bad(err)
		}
		if d < 10*time.Millisecond || d%(10*time.Millisecond) != 0 {
			return bad(fmt.Errorf("VRRPv3 adverts are whole centiseconds"))
		}
		p.Advert = d
		return p, nil
	}
	return bad(fmt.Errorf("unknown system %q", sys))
}

// DefaultSoakProfiles are tandem's default and three slower profiles, and
// keepalived from an advert equal to tandem's heartbeat to its default.
var DefaultSoakProfiles = []string{
	"tandem", "tandem:100ms/300ms", "tandem:100ms/500ms", "tandem:200ms/600ms",
	"keepalived:60ms", "keepalived:100ms", "keepalived:200ms", "keepalived:1s",
}

// DefaultStressArgs is the load of the soak: on every core a CPU hog, a
// memory hog (1 GiB each, written and verified), a worker calling sync(),
// and one writer that fsyncs after every 64 KiB write. Fixed counts and
// sizes (per core, not "as much as possible") make the load the same from
// run to run; one fsync writer saturates a single disk, more would only
// share it.
func DefaultStressArgs() []string {
	n := strconv.Itoa(runtime.NumCPU())
	return []string{"--cpu", n, "--vm", n, "--vm-bytes", "1G", "--io", n, "--hdd", "1", "--hdd-opts", "fsync"}
}

// SoakOptions configure the soak benchmark.
type SoakOptions struct {
	Binary   string
	Duration time.Duration // of the stress, per profile (default 10 minutes)
	Profiles []SoakProfile // default DefaultSoakProfiles
	// Stress are stress-ng's stressor arguments (default
	// DefaultStressArgs); NoStress measures the same window without it.
	Stress   []string
	NoStress bool
	// StressRealtime runs stress-ng under SCHED_RR at the daemons' own
	// priority instead of normal priority.
	StressRealtime bool
	Keep           bool
	Logf           func(format string, args ...any)
}

// Latency is how late a timer woke a thread (sleeps of 10 ms), all
// through the stress window.
type Latency struct {
	Samples int     `json:"samples"`
	P99     float64 `json:"p99_ms"`
	P999    float64 `json:"p999_ms"`
	Max     float64 `json:"max_ms"`
	Over50  int     `json:"over_50ms"`
	Over100 int     `json:"over_100ms"`
}

// WakeupRecorder keeps the wake-up lateness of a sleeping loop: a
// histogram of 0.1 ms buckets up to a second, and every wake-up later than
// StallAt with its time.
type WakeupRecorder struct {
	StallAt time.Duration
	Stalls  []Stall
	buckets [10_000]int
	over    int // a second late or more
	n       int
	max     time.Duration
}

// Stall is one late wake-up.
type Stall struct {
	At   time.Time `json:"at"` // when the sleep should have ended
	Late float64   `json:"late_ms"`
}

func (s Stall) String() string {
	return fmt.Sprintf("%s +%.0f ms", s.At.Format("15:04:05.000"), s.Late)
}

// Observe records one wake-up that came late after due.
func (w *WakeupRecorder) Observe(due time.Time, late time.Duration) {
	late = max(late, 0)
	w.n++
	w.max = max(w.max, late)
	if i := int(late / (100 * time.Microsecond)); i < len(w.buckets) {
		w.buckets[i]++
	} else {
		w.over++
	}
	if w.StallAt > 0 && late >= w.StallAt {
		w.Stalls = append(w.Stalls, Stall{At: due, Late: ms(late)})
	}
}

// Summary is the histogram's figures (percentiles to the bucket's upper
// edge).
func (w *WakeupRecorder) Summary() Latency {
	l := Latency{Samples: w.n, Max: ms(w.max)}
	at := func(p float64) float64 {
		want, seen := int(math.Ceil(float64(w.n)*p/100)), 0
		for i, c := range w.buckets {
			if seen += c; seen >= want {
				return float64(i+1) / 10
			}
		}
		return l.Max
	}
	if w.n > 0 {
		l.P99, l.P999 = min(at(99), l.Max), min(at(99.9), l.Max)
	}
	for i, c := range w.buckets {
		if i >= 500 {
			l.Over50 += c
		}
		if i >= 1000 {
			l.Over100 += c
		}
	}
	l.Over50 += w.over
	l.Over100 += w.over
	return l
}

// HostLoad is what the machine went through in a window.
type HostLoad struct {
	LoadBefore float64 `json:"loadavg1_before"` // before the stress started
	LoadMean   float64 `json:"loadavg1_mean"`
	LoadMax    float64 `json:"loadavg1_max"`
	// Shares of all CPU time in the window, in percent.
	BusyPct   float64 `json:"busy_pct"`
	IOWaitPct float64 `json:"iowait_pct"`
	StealPct  float64 `json:"steal_pct"`
	// Other sessions' processes seen on the machine (e2e, go test).
	Neighbours []string `json:"neighbours,omitempty"`
	// Wake-up lateness of a Go program's 10 ms sleeps (`tandem bench
	// wakeups`, one processor like the agent) under SCHED_RR at the
	// daemons' priority and at normal priority, and the SCHED_RR one's
	// wake-ups later than 50 ms with their times.
	RealtimeWake Latency `json:"realtime_wakeup"`
	NormalWake   Latency `json:"normal_wakeup"`
	Stalls       []Stall `json:"realtime_stalls,omitempty"`
}

// SoakProfileResult is what one profile did under the stress. No fault is
// injected, so every move of the serving node is a false failover.
type SoakProfileResult struct {
	Profile string  `json:"profile"`
	System  string  `json:"system"`
	Seconds float64 `json:"seconds"`
	// Client: probes sent in the window, those that got no answer, the
	// longest time without an answer, and every change of answering node.
	Probes       int      `json:"probes"`
	FailedProbes int      `json:"failed_probes"`
	LongestGapMs float64  `json:"longest_gap_ms"`
	Moves        []string `json:"moves"`
	FalseMoves   int      `json:"false_failovers"`
	SplitBrain   int      `json:"split_brain"`
	SplitWhy     []string `json:"split_brain_why,omitempty"`
	// tandem's audit logs (every voter), counted in the window.
	LeaseLost     int            `json:"lease_lost"`
	Takeovers     int            `json:"takeovers"`
	NodeDown      int            `json:"node_down"`
	Events        map[string]int `json:"events,omitempty"` // every kind seen
	AuditProblems []string       `json:"audit_problems,omitempty"`
	// keepalived: VRRP state changes of either node in the window.
	VRRPTransitions []string `json:"vrrp_transitions,omitempty"`
	Crashes         []string `json:"crashes,omitempty"`
	Load            HostLoad `json:"load"`
	// KeptIn is the work directory, kept when anything moved or a lease
	// was lost (or with --keep).
	KeptIn string `json:"kept_in,omitempty"`
}

// Survived: no false failover, no lease lost, no split brain.
func (r SoakProfileResult) Survived() bool {
	return r.FalseMoves == 0 && r.LeaseLost == 0 && r.SplitBrain == 0 && len(r.AuditProblems) == 0
}

// SoakResult is what `tandem bench soak --json` prints.
type SoakResult struct {
	Stress          string              `json:"stress"`
	StressPriority  string              `json:"stress_priority"`
	DurationS       float64             `json:"duration_s"`
	ProbeIntervalMs float64             `json:"probe_interval_ms"`
	Profiles        []SoakProfileResult `json:"profiles"`
	Seconds         float64             `json:"seconds"`
	Notes           []string            `json:"notes,omitempty"`
}

// PrintSoak writes the human report.
func PrintSoak(w io.Writer, r SoakResult) {
	fmt.Fprintf(w, "\ntandem bench soak: %.0f s per profile under `%s` (%s priority); client probes every %.0f ms; no fault injected\n",
		r.DurationS, r.Stress, r.StressPriority, r.ProbeIntervalMs)
	fmt.Fprintf(w, "%-22s %6s %7s %7s %5s %5s %5s %5s %5s %6s %6s %5s  %s\n",
		"profile", "moves", "failed", "gap ms", "split", "lost", "tkovr", "down", "vrrp", "load", "rr max", "steal", "")
	for _, p := range r.Profiles {
		lost, tk, down, vrrp := "-", "-", "-", "-"
		if p.System == "tandem" {
			lost, tk, down = strconv.Itoa(p.LeaseLost), strconv.Itoa(p.Takeovers), strconv.Itoa(p.NodeDown)
		} else {
			vrrp = strconv.Itoa(len(p.VRRPTransitions))
		}
		verdict := "survived"
		if !p.Survived() {
			verdict = "FALSE FAILOVERS / LEASE LOSS"
		}
		fmt.Fprintf(w, "%-22s %6d %7d %7.0f %5d %5s %5s %5s %5s %6.1f %6.1f %5.1f  %s\n",
			p.Profile, p.FalseMoves, p.FailedProbes, p.LongestGapMs, p.SplitBrain, lost, tk, down, vrrp,
			p.Load.LoadMean, p.Load.RealtimeWake.Max, p.Load.StealPct, verdict)
	}
	fmt.Fprintln(w, "\nmoves: changes of the node answering the client; failed: probes without an answer; gap: longest time without one;")
	fmt.Fprintln(w, "lost/tkovr/down: tandem's lease_lost, takeover and node_down events (all voters); vrrp: keepalived state changes;")
	fmt.Fprintln(w, "load: mean 1-min load average; rr max: worst wake-up lateness (ms) of a SCHED_RR thread; steal: % CPU stolen by the hypervisor")
	for _, p := range r.Profiles {
		var extra []string
		if len(p.Moves) > 0 {
			extra = append(extra, "moves "+strings.Join(p.Moves, " "))
		}
		for _, s := range p.SplitWhy {
			extra = append(extra, "split brain: "+s)
		}
		for _, a := range p.AuditProblems {
			extra = append(extra, "audit: "+a)
		}
		for _, c := range p.Crashes {
			extra = append(extra, "crash: "+c)
		}
		if len(p.Load.Neighbours) > 0 {
			extra = append(extra, "other sessions running: "+strings.Join(p.Load.Neighbours, ", "))
		}
		if p.KeptIn != "" {
			extra = append(extra, "logs kept in "+p.KeptIn)
		}
		if len(extra) > 0 {
			fmt.Fprintf(w, "%s:\n  %s\n", p.Profile, strings.Join(extra, "\n  "))
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintf(w, "\n%.0f s\n", r.Seconds)
}
