package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"tandem/internal/events"
	"tandem/internal/probe"
)

// TwoNodeOptions configure the two-node failover benchmark: no witness,
// a BMC (ipmi_sim) per data node driven with fence_ipmilan.
type TwoNodeOptions struct {
	Binary string
	Runs   int // per fault (kill, cutoff), default 20
	Races  int // partitions of the pair, default 50
	// FenceDelay is two_node.fence_delay (0: tandem's default).
	FenceDelay time.Duration
	Seed       uint64 // partition timing (0: from the clock)
	Logf       func(string, ...any)
	Keep       bool
}

// TwoNodeFault is one fault's figures: the client-seen outage and the
// split of the takeover.
type TwoNodeFault struct {
	Fault string `json:"fault"`
	// Tandem is the client-seen outage (fault → first answer from the
	// survivor).
	Tandem Stats `json:"tandem"`
	// TandemMedianMs repeats Tandem.Med under the name the issue asks for.
	TandemMedianMs float64 `json:"tandem_median_ms"`
	// FenceMedianMs: the fault → the survivor's fence confirmed.
	FenceMedianMs float64 `json:"fence_median_ms"`
	// DetectMedianMs, StartMedianMs: from the survivor's takeover event.
	DetectMedianMs float64 `json:"detect_median_ms"`
	StartMedianMs  float64 `json:"start_median_ms"`
	SplitBrain     int     `json:"tandem_split_brain"`
}

// TwoNodeRaces is the fence race over partitions of a running pair.
type TwoNodeRaces struct {
	Partitions   int     `json:"partitions"`
	OneSurvivor  int     `json:"one_survivor"`
	BothOff      int     `json:"both_off"`
	NoneOff      int     `json:"none_off"`
	ActiveKept   int     `json:"active_kept"` // the survivor was the node running the group
	SplitBrain   int     `json:"tandem_split_brain"`
	LongestGapMs float64 `json:"longest_gap_ms"` // client-seen, while the survivor fenced the other
}

// TwoNodeResult is the benchmark's result.
type TwoNodeResult struct {
	FenceDelayMs float64        `json:"fence_delay_ms"`
	Faults       []TwoNodeFault `json:"faults"`
	Races        TwoNodeRaces   `json:"races"`
	Seed         uint64         `json:"seed"`
	Seconds      float64        `json:"seconds"`
	Notes        []string       `json:"notes"`
}

// RunTwoNodeBench measures two-node mode on a bed: for kill and cutoff
// (every link of the active node down, its BMC's path too) the client-seen
// outage with the fence that precedes the takeover, and the fence race
// over partitions of the pair at random moments.
func RunTwoNodeBench(ctx context.Context, opts TwoNodeOptions) (TwoNodeResult, error) {
	if opts.Runs <= 0 {
		opts.Runs = 20
	}
	if opts.Races <= 0 {
		opts.Races = 50
	}
	if opts.Seed == 0 {
		opts.Seed = uint64(time.Now().UnixNano())
	}
	logf := orDiscard(opts.Logf)
	begin := time.Now()
	bed, err := newBenchBed(ctx, opts.Binary, logf, opts.Keep)
	if err != nil {
		return TwoNodeResult{}, err
	}
	defer bed.Close()
	// Each node joins its peer once at start before anything is measured.
	tb := &twoNodeBench{bed: bed, bmcs: map[string]*BMC{}, logf: logf, joins: map[string]int{"node1": 1, "node2": 1}}
	spec := Spec{TwoNode: true, Groups: []GroupSpec{DefaultGroup()}, Extra: "fence_devices:\n"}
	for _, n := range DataNodes {
		m, err := bed.AddBMC(ctx, n)
		if err != nil {
			return TwoNodeResult{}, err
		}
		tb.bmcs[n] = m
		spec.Extra += m.FenceDeviceYAML()
	}
	res := TwoNodeResult{Seed: opts.Seed, FenceDelayMs: 2000}
	if opts.FenceDelay > 0 {
		spec.Extra += fmt.Sprintf("two_node: {fence_delay: %s}\n", opts.FenceDelay)
		res.FenceDelayMs = ms(opts.FenceDelay)
	}
	if tb.c, err = bed.NewCluster(spec); err != nil {
		return res, err
	}
	if err := tb.c.Start(); err != nil {
		return res, err
	}
	defer tb.stop(ctx)
	g := tb.c.Spec.Groups[0]
	if err := tb.c.WaitRunning(ctx, "web", "node1", 30*time.Second); err != nil {
		return res, err
	}
	if tb.chk, err = bed.StartChecker("tandem", VIPAddr(g.VIP), g.Port); err != nil {
		return res, err
	}
	fail := func(err error) (TwoNodeResult, error) {
		bed.Fail()
		return res, fmt.Errorf("%w (logs in %s)", err, bed.Dir)
	}
	var spans []runSpan
	for _, fault := range []string{"kill", "cutoff"} {
		fr := TwoNodeFault{Fault: fault}
		var outages, fences, detects, starts []float64
		unrecovered := 0
		for i := 0; i < opts.Runs; i++ {
			r, err := tb.failover(ctx, fault)
			if err != nil {
				return fail(fmt.Errorf("%s run %d: %w", fault, i+1, err))
			}
			spans = append(spans, runSpan{fault, r.at, time.Now()})
			if !r.ok {
				unrecovered++
				logf("two-node %s %d/%d: no takeover", fault, i+1, opts.Runs)
				continue
			}
			outages, fences = append(outages, r.outage), append(fences, r.fence)
			detects, starts = append(detects, r.detect), append(starts, r.start)
			logf("two-node %s %d/%d: outage %.0f ms (fence confirmed %.0f ms after the fault)", fault, i+1, opts.Runs, r.outage, r.fence)
		}
		fr.Tandem = summarize(outages, 0, unrecovered, nil)
		fr.TandemMedianMs = fr.Tandem.Med
		fr.FenceMedianMs, fr.DetectMedianMs, fr.StartMedianMs = median(fences), median(detects), median(starts)
		res.Faults = append(res.Faults, fr)
	}
	rng := rand.New(rand.NewPCG(opts.Seed, 0x2a))
	for i := 0; i < opts.Races; i++ {
		at, err := tb.race(ctx, rng, &res.Races)
		if err != nil {
			return fail(fmt.Errorf("race %d: %w", i+1, err))
		}
		spans = append(spans, runSpan{"partition", at, time.Now()})
		logf("two-node race %d/%d: %d of %d with one survivor", i+1, opts.Races, res.Races.OneSurvivor, res.Races.Partitions)
	}
	tb.chk.Stop()
	conflicts := tb.chk.Timeline().Conflicts(probe.Checks{Interval: ProbeInterval, MinTenure: benchMinTenure, NodeOfMAC: bed.NodeOfMAC})
	for _, sp := range spans {
		for _, c := range conflicts {
			if !c.At.Before(sp.from) && c.At.Before(sp.to) {
				if sp.fault == "partition" {
					res.Races.SplitBrain++
				} else {
					for i := range res.Faults {
						if res.Faults[i].Fault == sp.fault {
							res.Faults[i].SplitBrain++
							res.Faults[i].Tandem.SplitBrainRuns++
						}
					}
				}
				break
			}
		}
	}
	res.Notes = append(res.Notes,
		"two data nodes, no witness; each has a BMC (OpenIPMI's ipmi_sim) that the other drives with Debian's fence_ipmilan; its power off kills every process of its node",
		"kill: every process of the active node SIGKILLed; cutoff: every link of the active node down (it reaches neither its peer nor the peer's BMC); the survivor runs nothing, so it waits fence_delay before it fences",
		"fence: the fault → the survivor's fence_succeeded; detect and start from the survivor's takeover event",
		"races: the pair partitioned (every link between node1 and node2) at a random moment; exactly one node must be powered off, the other keep serving",
		"split brain: two MACs answered one ARP request for the VIP, or a node answered between two answers of the other less than 300 ms apart")
	res.Seconds = time.Since(begin).Seconds()
	return res, nil
}

type runSpan struct {
	fault    string
	from, to time.Time
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return percentile(s, 50)
}

type twoNodeBench struct {
	bed  *Bed
	c    *Cluster
	chk  *Checker
	bmcs map[string]*BMC
	logf func(string, ...any)
	// joins: "joined the peer" and "re-added" lines seen in each node's
	// log, to wait for the pair to be whole again after a restart.
	joins map[string]int
}

type twoNodeRun struct {
	at                           time.Time
	ok                           bool
	outage, fence, detect, start float64
}

// whole waits until the pair has joined again: node (restarted) joined its
// peer, and the client is served steadily.
func (t *twoNodeBench) whole(ctx context.Context) (string, error) {
	for _, h := range DataNodes {
		want := t.joins[h]
		err := waitFor(ctx, 60*time.Second, 50*time.Millisecond, func() (bool, error) {
			n := t.joinLines(h)
			if n >= want {
				t.joins[h] = n
				return true, nil
			}
			return false, nil
		}, h+" to join its peer")
		if err != nil {
			return "", err
		}
	}
	return t.chk.WaitSteady(ctx, benchSettle, 30*time.Second)
}

func (t *twoNodeBench) joinLines(h string) int {
	b, _ := os.ReadFile(filepath.Join(t.bed.Dir, h+".log"))
	return strings.Count(string(b), "joined the peer")
}

// restart powers a fenced node on again and starts its agent; it counts
// as whole once it has joined its peer.
func (t *twoNodeBench) restart(h string) error {
	t.bmcs[h].PowerOn()
	t.joins[h] = t.joinLines(h) + 1
	return t.c.Start(h)
}

func other(h string) string {
	if h == "node1" {
		return "node2"
	}
	return "node1"
}

func (t *twoNodeBench) failover(ctx context.Context, fault string) (twoNodeRun, error) {
	active, err := t.whole(ctx)
	if err != nil {
		return twoNodeRun{}, err
	}
	if ts := t.chk.Timeline().Tenures(); len(ts) > 0 {
		sleepCtx(ctx, time.Until(ts[len(ts)-1].First.Add(clientLocktime)))
	}
	survivor := other(active)
	var f Fault
	switch fault {
	case "kill":
		f = t.bed.Kill(active)
	case "cutoff":
		if f, err = t.bed.Isolate(active); err != nil {
			return twoNodeRun{}, err
		}
	}
	r := twoNodeRun{at: f.At}
	s, werr := t.chk.WaitAnswer(ctx, survivor, f.At, 30*time.Second)
	if werr == nil {
		r.ok = true
		r.outage = t.chk.Timeline().Outage(f.At, s.Done.Add(time.Millisecond)).Ms
		sleepCtx(ctx, linger)
		evs, err := t.c.Events(survivor)
		if err != nil {
			return r, err
		}
		for _, e := range evs {
			if e.Time.Before(f.At) {
				continue
			}
			switch {
			case e.Kind == events.FenceSucceeded && e.Subject == active && r.fence == 0:
				r.fence = ms(e.Time.Sub(f.At))
			case e.Kind == events.Takeover && r.detect == 0:
				r.detect, r.start = attrMs(e, "detect_ms"), attrMs(e, "start_ms")
			}
		}
		if r.fence == 0 {
			return r, fmt.Errorf("%s took over after %s with no confirmed fence of %s", survivor, fault, active)
		}
	}
	if fault == "cutoff" {
		if _, err := t.bed.Heal(); err != nil {
			return r, err
		}
	}
	// The survivor's fence powered the active off (a cut-off node is
	// killed by its BMC too); bring it back.
	if err := waitFor(ctx, 30*time.Second, 20*time.Millisecond, func() (bool, error) { return t.bmcs[active].PoweredOff(), nil },
		active+" powered off by its BMC"); err != nil {
		return r, err
	}
	return r, t.restart(active)
}

func attrMs(e events.Event, k string) float64 {
	switch v := e.Attrs[k].(type) {
	case float64:
		return v
	case int64:
		return float64(v)
	case int:
		return float64(v)
	}
	return 0
}

// race partitions the pair at a random moment and checks that exactly one
// node is powered off.
func (t *twoNodeBench) race(ctx context.Context, rng *rand.Rand, rs *TwoNodeRaces) (time.Time, error) {
	active, err := t.whole(ctx)
	if err != nil {
		return time.Time{}, err
	}
	// A random moment within two heartbeat rounds and a lease renewal.
	sleepCtx(ctx, time.Duration(rng.IntN(200))*time.Millisecond)
	f, err := t.bed.Partition("node1", "node2")
	if err != nil {
		return f.At, err
	}
	rs.Partitions++
	var off []string
	err = waitFor(ctx, 30*time.Second, 20*time.Millisecond, func() (bool, error) {
		off = off[:0]
		for _, h := range DataNodes {
			if t.bmcs[h].PoweredOff() {
				off = append(off, h)
			}
		}
		return len(off) > 0, nil
	}, "a node powered off after the partition")
	// The loser's delayed fence would land within fence_delay + a fence:
	// wait that out before counting.
	sleepCtx(ctx, 3*time.Second)
	off = off[:0]
	for _, h := range DataNodes {
		if t.bmcs[h].PoweredOff() {
			off = append(off, h)
		}
	}
	gap := t.chk.Timeline().Outage(f.At, time.Now()).Ms
	if gap > rs.LongestGapMs {
		rs.LongestGapMs = gap
	}
	if _, herr := t.bed.Heal(); herr != nil {
		return f.At, herr
	}
	switch len(off) {
	case 0:
		rs.NoneOff++
		return f.At, errors.Join(err, errors.New("nobody was fenced after a partition"))
	case 2:
		rs.BothOff++
	case 1:
		rs.OneSurvivor++
		if off[0] != active {
			rs.ActiveKept++
		}
	}
	for _, h := range off {
		if err := t.restart(h); err != nil {
			return f.At, err
		}
	}
	return f.At, nil
}

func (t *twoNodeBench) stop(ctx context.Context) {
	for _, h := range DataNodes {
		if err := t.c.Stop(ctx, h); err != nil {
			t.logf("two-node bench: stop %s: %v", h, err)
		}
	}
}

// PrintTwoNodeBench writes the result as a table.
func PrintTwoNodeBench(w io.Writer, r TwoNodeResult) {
	fmt.Fprintf(w, "two-node mode (no witness), fence_ipmilan against ipmi_sim, fence_delay %.0f ms\n", r.FenceDelayMs)
	fmt.Fprintf(w, "%-8s %5s %10s %10s %10s %10s %10s %6s\n", "fault", "runs", "median ms", "p95 ms", "fence ms", "detect ms", "start ms", "split")
	for _, f := range r.Faults {
		fmt.Fprintf(w, "%-8s %5d %10.0f %10.0f %10.0f %10.0f %10.0f %6d\n", f.Fault, f.Tandem.Runs, f.Tandem.Med, f.Tandem.P95, f.FenceMedianMs, f.DetectMedianMs, f.StartMedianMs, f.SplitBrain)
	}
	rs := r.Races
	fmt.Fprintf(w, "races: %d partitions, %d with exactly one survivor (%d kept the active), %d both off, %d none off, %d split brain; longest client gap %.0f ms\n",
		rs.Partitions, rs.OneSurvivor, rs.ActiveKept, rs.BothOff, rs.NoneOff, rs.SplitBrain, rs.LongestGapMs)
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  %s\n", n)
	}
	fmt.Fprintf(w, "seed %d, %.0f s\n", r.Seed, r.Seconds)
}
