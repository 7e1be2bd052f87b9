package testbed

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"tandem/internal/config"
	"tandem/internal/events"
	"tandem/internal/probe"
)

// soakTail is how long after the stress ends the run keeps counting: a
// node declared down just after the last stall was caused by it.
const soakTail = 3 * time.Second

// RunSoak runs each profile on a fresh bed under stress-ng for
// opts.Duration, with no fault injected, and reports what the client saw
// and what the systems logged. Profiles run one after the other, each under
// the same stress.
func RunSoak(ctx context.Context, opts SoakOptions) (SoakResult, error) {
	if opts.Duration <= 0 {
		opts.Duration = 10 * time.Minute
	}
	if len(opts.Profiles) == 0 {
		for _, s := range DefaultSoakProfiles {
			p, _ := ParseSoakProfile(s)
			opts.Profiles = append(opts.Profiles, p)
		}
	}
	if len(opts.Stress) == 0 {
		opts.Stress = DefaultStressArgs()
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	begin := time.Now()
	res := SoakResult{Stress: "stress-ng " + strings.Join(opts.Stress, " "), StressPriority: "normal",
		DurationS: opts.Duration.Seconds(), ProbeIntervalMs: ms(ProbeInterval)}
	if opts.StressRealtime {
		res.StressPriority = "SCHED_RR " + rtPriority + " (the daemons' own)"
	}
	if opts.NoStress {
		res.Stress, res.StressPriority = "none", "-"
	}
	res.Notes = append(res.Notes,
		"no fault is injected: every move of the node answering the client is a false failover",
		"daemons (tandem, keepalived) and the prober run under SCHED_RR "+rtPriority+" as on every bed; stress-ng runs at "+res.StressPriority+" priority",
		"stress-ng writes its files next to the agents' state (the same disk); the window ends "+soakTail.String()+" after the stress")
	for _, p := range opts.Profiles {
		opts.Logf("soak: %s: %v under stress", p.Name(), opts.Duration)
		r, err := soakOne(ctx, opts, p)
		if err != nil {
			res.Seconds = time.Since(begin).Seconds()
			return res, fmt.Errorf("%s: %w", p.Name(), err)
		}
		opts.Logf("soak: %s: %d false failovers, %d lease lost, %d failed probes, longest gap %.0f ms; load %.1f, SCHED_RR wake-up max %.0f ms",
			p.Name(), r.FalseMoves, r.LeaseLost, r.FailedProbes, r.LongestGapMs, r.Load.LoadMean, r.Load.RealtimeWake.Max)
		res.Profiles = append(res.Profiles, r)
	}
	res.Seconds = time.Since(begin).Seconds()
	return res, nil
}

func soakOne(ctx context.Context, opts SoakOptions, p SoakProfile) (SoakProfileResult, error) {
	r := SoakProfileResult{Profile: p.Name(), System: p.System}
	bed, err := New(ctx, Options{Binary: opts.Binary, Keep: opts.Keep, Logf: func(format string, args ...any) {
		if !strings.HasPrefix(format, "fault:") {
			opts.Logf(format, args...)
		}
	}})
	if err != nil {
		return r, err
	}
	defer bed.Close()
	var sys benchSystem
	var tb *tandemBench
	var kb *keepalivedBench
	if p.System == "tandem" {
		tb = &tandemBench{bed: bed, timing: p.Timing()}
		sys = tb
	} else {
		kb = &keepalivedBench{bed: bed, label: p.Name(), advert: p.Advert, vip: 10, port: 8090}
		sys = kb
	}
	chk, err := sys.start(ctx)
	if err != nil {
		bed.Fail()
		return r, fmt.Errorf("%w (logs in %s)", err, bed.Dir)
	}
	if _, err := sys.ready(ctx); err != nil {
		bed.Fail()
		return r, fmt.Errorf("%w (logs in %s)", err, bed.Dir)
	}
	watch, err := watchHost(bed)
	if err != nil {
		return r, err
	}
	var st *stress
	if !opts.NoStress {
		if st, err = startStress(ctx, opts.Logf, filepath.Join(bed.Dir, "stress"), opts.Stress, opts.Duration, opts.StressRealtime); err != nil {
			watch.Stop()
			return r, err
		}
	}
	from := time.Now()
	sleepCtx(ctx, opts.Duration)
	if st != nil {
		st.Stop()
	}
	r.Load = watch.Stop()
	sleepCtx(ctx, soakTail)
	to := time.Now()
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	r.Seconds = to.Sub(from).Seconds()
	chk.Stop()
	tl := chk.Timeline()
	var window probe.Timeline
	for _, s := range tl.Samples {
		if !s.Sent.Before(from) && s.Sent.Before(to) {
			window.Samples = append(window.Samples, s)
			r.Probes++
			if !s.OK() {
				r.FailedProbes++
			}
		}
	}
	for _, a := range tl.ARPs {
		if !a.At.Before(from) && a.At.Before(to) {
			window.ARPs = append(window.ARPs, a)
		}
	}
	r.LongestGapMs = tl.Outage(from, to).Ms
	r.Moves = window.Moves()
	r.FalseMoves = len(r.Moves)
	conflicts := window.Conflicts(probe.Checks{Interval: ProbeInterval, MinTenure: benchMinTenure, NodeOfMAC: bed.NodeOfMAC})
	if tb != nil {
		logs, err := tb.c.Logs()
		if err != nil {
			return r, err
		}
		lease := config.DefaultLease
		if p.Lease > 0 {
			lease = p.Lease
		}
		in := AuditInput{Logs: logs, Faults: bed.Faults(), Lease: lease, End: to,
			Answers: map[string]probe.Timeline{"web": tl}, Slack: 5 * time.Millisecond}
		spans := LeaseSpans(in)
		var kept []probe.Conflict
		for _, c := range conflicts {
			if !Explained(c, spans, "web", 20*time.Millisecond) {
				kept = append(kept, c)
			}
		}
		conflicts = kept
		r.AuditProblems = CheckAudit(in)
		r.Events = map[string]int{}
		for _, evs := range logs {
			for _, e := range evs {
				if e.Time.Before(from) || !e.Time.Before(to) {
					continue
				}
				r.Events[string(e.Kind)]++
				switch e.Kind {
				case events.LeaseLost:
					r.LeaseLost++
				case events.Takeover:
					r.Takeovers++
				case events.NodeDown:
					r.NodeDown++
				}
			}
		}
	} else {
		for _, t := range kb.k.Transitions(from) {
			if t.At.Before(to) {
				r.VRRPTransitions = append(r.VRRPTransitions, t.String())
			}
		}
	}
	r.SplitBrain = len(conflicts)
	for i, c := range conflicts {
		if i == 3 {
			break
		}
		r.SplitWhy = append(r.SplitWhy, c.String())
	}
	r.Crashes = bed.Crashes()
	if !r.Survived() || len(r.Crashes) > 0 {
		bed.Fail() // keep the logs for a look at the cause
	}
	if !r.Survived() || len(r.Crashes) > 0 || opts.Keep {
		r.KeptIn = bed.Dir
	}
	return r, nil
}
