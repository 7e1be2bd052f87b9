package testbed

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"tandem/internal/config"
	"time"

	"tandem/internal/probe"
)

// benchSystem is a failover system under test on the bed.
type benchSystem interface {
	name() string
	// start runs it on the bed and returns the client's checker.
	start(ctx context.Context) (*Checker, error)
	// ready waits until it is fully up and one node has served the client
	// steadily; it returns that node.
	ready(ctx context.Context) (string, error)
	// restart brings a killed node's daemons back.
	restart(h string) error
	// term stops host h's daemon cleanly (SIGTERM) without waiting;
	// restartTermed waits until it has exited and starts it again.
	term(h string) (Fault, error)
	restartTermed(ctx context.Context, h string) error
	// takeoverWait bounds how long a takeover may take.
	takeoverWait() time.Duration
	// partitionHold is how long a partition lasts: long enough for a
	// backup to declare the master dead.
	partitionHold() time.Duration
	stop(ctx context.Context)
}

// RunBench measures the client-seen unavailable window of unplanned
// failovers, for tandem and, in the same run on the same bed, for
// keepalived (VRRPv3) with advert_int equal to tandem's heartbeat interval
// and, unless NoDefaultProfile, with its default advert_int of 1 s.
func RunBench(ctx context.Context, opts BenchOptions) (BenchResult, error) {
	faults, err := parseFaults(opts.Faults, BenchFaults)
	if err != nil {
		return BenchResult{}, err
	}
	if opts.Runs <= 0 {
		opts.Runs = 20
	}
	logf := orDiscard(opts.Logf)
	begin := time.Now()
	bed, err := newBenchBed(ctx, opts.Binary, logf, opts.Keep)
	if err != nil {
		return BenchResult{}, err
	}
	defer bed.Close()
	if opts.Tandem.System == "" {
		opts.Tandem.System = "tandem"
	}
	heartbeat := config.DefaultHeartbeatInterval
	if opts.Tandem.Heartbeat > 0 {
		heartbeat = opts.Tandem.Heartbeat
	}
	adverts := opts.KeepalivedAdverts
	if len(adverts) == 0 {
		adverts = []time.Duration{heartbeat} // equal to tandem's heartbeat
	}
	profile := opts.Tandem.Name()
	if opts.TandemVIPOnly {
		profile += " (group: the VIP only; the service runs on both nodes)"
	}
	res := BenchResult{Runs: opts.Runs, TandemProfile: profile, HeartbeatMs: ms(heartbeat), KeepalivedAdvertMs: ms(adverts[0]), ProbeIntervalMs: ms(ProbeInterval)}
	systems := []benchSystem{
		&tandemBench{bed: bed, timing: opts.Tandem.Timing(), vipOnly: opts.TandemVIPOnly},
		&keepalivedBench{bed: bed, label: "keepalived", advert: adverts[0], vip: 10, port: 8090},
	}
	for i, a := range adverts[1:] {
		res.KeepalivedOthersMs = append(res.KeepalivedOthersMs, ms(a))
		systems = append(systems, &keepalivedBench{bed: bed, label: fmt.Sprintf("keepalived-%d", i), advert: a, vip: 12 + i, port: 8092 + i})
	}
	if !opts.NoDefaultProfile {
		res.KeepalivedDefaultMs = 1000
		systems = append(systems, &keepalivedBench{bed: bed, label: "keepalived-default", advert: time.Second, vip: 11, port: 8091})
	}
	stopStress, err := benchStress(ctx, bed, opts.Stress, &res.Stress, logf)
	if err != nil {
		return res, err
	}
	defer stopStress()
	all := map[string]map[string]Stats{}
	for _, sys := range systems {
		st, err := benchSystemRuns(ctx, bed, sys, faults, opts.Runs, logf)
		if err != nil {
			bed.Fail()
			return res, fmt.Errorf("%s: %w (logs in %s)", sys.name(), err, bed.Dir)
		}
		all[sys.name()] = st
	}
	for _, f := range faults {
		fr := FaultResult{Fault: f, Tandem: all["tandem"][f], Keepalived: all["keepalived"][f]}
		if d, ok := all["keepalived-default"][f]; ok {
			fr.KeepalivedDefault = &d
		}
		for i, a := range adverts[1:] {
			fr.KeepalivedOthers = append(fr.KeepalivedOthers, OtherStats{AdvertMs: ms(a), Stats: all[fmt.Sprintf("keepalived-%d", i)][f]})
		}
		fr.finish()
		res.Faults = append(res.Faults, fr)
	}
	res.Notes = append(res.Notes,
		"kill: SIGKILL of every process on the active node (its kernel keeps the VIP configured); freeze: SIGSTOP of them, thawed after the takeover; "+
			"cutoff: every link of the active node down; partition: node1 and node2 cannot hear each other but both reach the witness and the client (figures: longest gap while partitioned)",
		"split brain: two MACs answered one ARP request for the VIP, or a node answered between two answers of the other less than 300 ms apart",
		"daemons (tandem, keepalived) and the prober run under SCHED_RR on this shared machine, as corosync runs itself",
		"each run starts at least 1.5 s after the client last saw the VIP move: Linux ignores ARP updates for 1 s after a neighbour entry changed (locktime)")
	res.Seconds = time.Since(begin).Seconds()
	return res, nil
}

// newBenchBed builds a benchmark's bed, its progress to logf without the
// fault lines.
func newBenchBed(ctx context.Context, binary string, logf func(string, ...any), keep bool) (*Bed, error) {
	return New(ctx, Options{Binary: binary, Logf: func(format string, args ...any) {
		if !strings.HasPrefix(format, "fault:") {
			logf(format, args...)
		}
	}, Keep: keep})
}

// benchStress runs stress-ng with args for the rest of a benchmark (none
// when args is empty) and writes what it runs to label; the returned
// function stops it.
func benchStress(ctx context.Context, bed *Bed, args []string, label *string, logf func(string, ...any)) (func(), error) {
	if len(args) == 0 {
		return func() {}, nil
	}
	*label = "stress-ng " + strings.Join(args, " ")
	st, err := startStress(ctx, logf, filepath.Join(bed.Dir, "stress"), args, 24*time.Hour, false)
	if err != nil {
		return nil, err
	}
	return st.Stop, nil
}

// orDiscard is logf, or a logger that discards.
func orDiscard(logf func(string, ...any)) func(string, ...any) {
	if logf == nil {
		return func(string, ...any) {}
	}
	return logf
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// benchRun is one measured fault.
type benchRun struct {
	fault   string
	at      time.Time
	outage  float64
	ok      bool
	healed  time.Time
	victims string
}

// benchSystemRuns runs every fault runs times on one system.
func benchSystemRuns(ctx context.Context, bed *Bed, sys benchSystem, faults []string, runs int, logf func(string, ...any)) (map[string]Stats, error) {
	chk, err := sys.start(ctx)
	if err != nil {
		return nil, err
	}
	defer sys.stop(ctx)
	var done []benchRun
	for _, fault := range faults {
		for i := 0; i < runs; i++ {
			r, err := benchOnce(ctx, bed, sys, chk, fault)
			if err != nil {
				return nil, fmt.Errorf("%s run %d: %w", fault, i+1, err)
			}
			done = append(done, r)
			state := fmt.Sprintf("%.0f ms", r.outage)
			if !r.ok {
				state = "no takeover"
			}
			logf("%s %s %d/%d on %s: %s", sys.name(), fault, i+1, runs, r.victims, state)
		}
	}
	chk.Stop()
	// Split brain anywhere in a run's window (fault, recovery) counts for it.
	conflicts := chk.Timeline().Conflicts(probe.Checks{Interval: ProbeInterval, MinTenure: benchMinTenure, NodeOfMAC: bed.NodeOfMAC})
	out := map[string]Stats{}
	for _, fault := range faults {
		var samples []float64
		var why []string
		split, unrecovered := 0, 0
		for i, r := range done {
			if r.fault != fault {
				continue
			}
			end := time.Now()
			if i+1 < len(done) {
				end = done[i+1].at
			}
			hit := false
			for _, c := range conflicts {
				if !c.At.Before(r.at) && c.At.Before(end) {
					if !hit && len(why) < 3 {
						why = append(why, c.String())
					}
					hit = true
				}
			}
			if hit {
				split++
			}
			if r.ok {
				samples = append(samples, r.outage)
			} else {
				unrecovered++
			}
		}
		out[fault] = summarize(samples, split, unrecovered, why)
	}
	return out, nil
}

// benchMinTenure: in the benchmark a node holds the VIP at least this long
// between two legitimate moves (the faults last longer).
const benchMinTenure = 300 * time.Millisecond

// clientLocktime exceeds the client kernel's neighbour locktime.
const clientLocktime = 1500 * time.Millisecond

// linger keeps a fault in place after the takeover, so a VIP still
// configured on the old node has time to show (two MACs answering ARP).
const linger = 600 * time.Millisecond

func benchOnce(ctx context.Context, bed *Bed, sys benchSystem, chk *Checker, fault string) (benchRun, error) {
	active, err := sys.ready(ctx)
	if err != nil {
		return benchRun{}, err
	}
	// The client's kernel ignores ARP updates for a second after its
	// neighbour entry last changed (neigh locktime, 1 s by default): a
	// fault right after the previous move would measure that, not the
	// failover. Clients rarely see two moves within a second.
	if ts := chk.Timeline().Tenures(); len(ts) > 0 {
		sleepCtx(ctx, time.Until(ts[len(ts)-1].First.Add(clientLocktime)))
	}
	other := "node1"
	if active == "node1" {
		other = "node2"
	}
	r := benchRun{fault: fault, victims: active}
	var f Fault
	switch fault {
	case "kill":
		f = bed.Kill(active)
	case "freeze":
		f = bed.Freeze(active)
	case "cutoff":
		f, err = bed.Isolate(active)
	case "partition":
		r.victims = "node1↔node2"
		f, err = bed.Partition("node1", "node2")
	case "stop":
		f, err = sys.term(active)
	}
	if err != nil {
		return r, err
	}
	r.at = f.At
	if fault == "partition" {
		sleepCtx(ctx, sys.partitionHold())
		r.healed = time.Now()
		r.outage, r.ok = chk.Timeline().Outage(f.At, r.healed).Ms, true
		_, err := bed.Heal()
		return r, err
	}
	s, werr := chk.WaitAnswer(ctx, other, f.At, sys.takeoverWait())
	if werr == nil {
		r.ok = true
		r.outage = chk.Timeline().Outage(f.At, s.Done.Add(time.Millisecond)).Ms
		sleepCtx(ctx, linger)
	}
	switch fault {
	case "kill":
		err = sys.restart(active)
	case "freeze":
		bed.Thaw(active)
	case "cutoff":
		_, err = bed.Heal()
	case "stop":
		err = sys.restartTermed(ctx, active)
	}
	r.healed = time.Now()
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	return r, err
}

// tandemBench is tandem with one timing profile (nil: its defaults).
type tandemBench struct {
	bed     *Bed
	timing  map[string]string
	vipOnly bool // the group is the VIP; the service runs on both nodes
	c       *Cluster
	chk     *Checker
}

func (t *tandemBench) name() string { return "tandem" }

func (t *tandemBench) start(ctx context.Context) (*Checker, error) {
	g := DefaultGroup()
	g.VIPOnly = t.vipOnly
	c, err := t.bed.NewCluster(Spec{Timing: t.timing, Groups: []GroupSpec{g}})
	if err != nil {
		return nil, err
	}
	t.c = c
	if err := c.Start(); err != nil {
		return nil, err
	}
	for _, h := range DataNodes {
		if err := t.startService(h); err != nil {
			return nil, err
		}
	}
	if err := c.WaitRunning(ctx, "web", "node1", 20*time.Second); err != nil {
		return nil, err
	}
	g = c.Spec.Groups[0]
	t.chk, err = t.bed.StartChecker("tandem", VIPAddr(g.VIP), g.Port)
	return t.chk, err
}

// startService runs the group's service on host h outside tandem, when the
// group is the VIP only.
func (t *tandemBench) startService(h string) error {
	if !t.vipOnly {
		return nil
	}
	return t.bed.startDemoService(h, t.c.Spec.Groups[0].Port)
}

// ready: a leader sees every voter up, every agent has run for a second
// (a restarted voter refuses lease grants for one lease), and one node has
// answered the client steadily.
func (t *tandemBench) ready(ctx context.Context) (string, error) {
	if err := t.c.WaitUp(ctx, 20*time.Second, Voters...); err != nil {
		return "", err
	}
	err := waitFor(ctx, 20*time.Second, 50*time.Millisecond, func() (bool, error) {
		for _, h := range Voters {
			s, err := t.c.Status(ctx, h)
			if err != nil || s.Uptime < 1 {
				return false, nil
			}
		}
		return true, nil
	}, "every agent to have run for a second")
	if err != nil {
		return "", err
	}
	return t.chk.WaitSteady(ctx, benchSettle, 20*time.Second)
}

func (t *tandemBench) restart(h string) error {
	if err := t.c.Start(h); err != nil {
		return err
	}
	return t.startService(h)
}
func (t *tandemBench) term(h string) (Fault, error) { return t.c.Term(h) }
func (t *tandemBench) restartTermed(ctx context.Context, h string) error {
	if err := t.c.WaitExited(ctx, h); err != nil {
		return err
	}
	return t.c.Start(h)
}
func (t *tandemBench) takeoverWait() time.Duration  { return 10 * time.Second }
func (t *tandemBench) partitionHold() time.Duration { return time.Second }

func (t *tandemBench) stop(ctx context.Context) {
	var errs []error
	for _, h := range Voters {
		// Stop waits until the host runs nothing: a VIP-only run's service
		// is no child of the agent and would outlive it.
		if t.vipOnly && slices.Contains(DataNodes, h) {
			if _, err := t.bed.KillService(h, "demo-service"); err != nil {
				errs = append(errs, err)
			}
		}
		errs = append(errs, t.c.Stop(ctx, h))
	}
	if err := errors.Join(errs...); err != nil {
		t.bed.logf("tandem bench: stop: %v", err)
	}
}

// keepalivedBench is keepalived with one advert interval.
type keepalivedBench struct {
	bed       *Bed
	label     string
	advert    time.Duration
	vip, port int
	k         *Keepalived
	chk       *Checker
}

func (k *keepalivedBench) name() string { return k.label }

func (k *keepalivedBench) start(ctx context.Context) (*Checker, error) {
	var err error
	if k.k, err = k.bed.NewKeepalived(ctx, k.vip, k.port, k.advert); err != nil {
		return nil, err
	}
	if err := k.k.Start(); err != nil {
		return nil, err
	}
	k.chk, err = k.bed.StartChecker(k.label, VIPAddr(k.vip), k.port)
	return k.chk, err
}

// ready: one MASTER and one BACKUP, and the client steadily served by the
// master (after a thaw or a reconnection the VIP may still be moving back
// to the higher-priority node).
func (k *keepalivedBench) ready(ctx context.Context) (string, error) {
	wait := 20*time.Second + 10*k.advert
	deadline := time.Now().Add(wait)
	for {
		master, err := k.k.WaitSettled(ctx, wait)
		if err != nil {
			return "", err
		}
		who, err := k.chk.WaitSteady(ctx, benchSettle, wait)
		if err != nil || who == master {
			return who, err
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("keepalived says %s is MASTER but the client is served by %s", master, who)
		}
		sleepCtx(ctx, 50*time.Millisecond)
	}
}

func (k *keepalivedBench) restart(h string) error       { return k.k.Start(h) }
func (k *keepalivedBench) term(h string) (Fault, error) { return k.k.Term(h) }
func (k *keepalivedBench) restartTermed(ctx context.Context, h string) error {
	return k.k.RestartDaemon(ctx, h)
}

func (k *keepalivedBench) takeoverWait() time.Duration { return 5*k.advert + 5*time.Second }

func (k *keepalivedBench) partitionHold() time.Duration {
	return max(time.Second, 5*k.advert) // past the master-down interval (3 adverts + skew)
}

func (k *keepalivedBench) stop(context.Context) { k.k.Stop() }
