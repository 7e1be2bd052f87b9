package fence

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"tandem/internal/clock"
	"tandem/internal/events"
)

// Device is one fence device: it runs one action on one plug. *Agent is
// one (agent, ipmi and exec devices); Memory is the in-memory twin.
type Device interface {
	Run(ctx context.Context, action Action, plug string) (Reply, error)
}

// Fencer runs fences against the devices: the adapter of Machine. It runs
// locally, from this node's configuration; one Fence at a time per node is
// the caller's concern (internal/fencepolicy asks once per peer).
type Fencer struct {
	Devices    map[string]Device
	Topologies map[string]Topology // by node to fence
	Plugs      map[string]string   // by device: the plug Monitor checks ("" for none)
	Clock      clock.Clock
	Events     events.Sink // may be nil
	Self       string      // the node that fences, in events
	Log        *slog.Logger
}

// FenceResult is what a Fence did.
type FenceResult struct {
	Node      string
	Confirmed bool
	Level     int // the level that confirmed
	Reason    string
	Attempts  []Attempt
	Duration  time.Duration
}

// Fence fences node over its topology and returns once it is confirmed off
// or every level failed (err non-nil then) or ctx ended. reason and actor
// go to the events: who or what asked.
func (f *Fencer) Fence(ctx context.Context, node, reason string) (FenceResult, error) {
	return f.FenceBy(ctx, node, reason, "")
}

// FenceBy is Fence with the actor named (an operator, "fencepolicy").
func (f *Fencer) FenceBy(ctx context.Context, node, reason, actor string) (FenceResult, error) {
	res := FenceResult{Node: node}
	topo, ok := f.Topologies[node]
	if !ok {
		topo = Topology{Node: node}
	}
	begin := f.Clock.Now()
	f.publish(events.Event{Time: begin, Kind: events.FenceRequested, Subject: node, Actor: actor, Message: reason})
	m := NewMachine(topo)
	results := make(chan Result, 1)
	var cancelRun context.CancelFunc = func() {}
	defer func() { cancelRun() }()
	start := func(r *Run) {
		cancelRun()
		if r == nil {
			return
		}
		rctx, cancel := context.WithCancel(ctx)
		cancelRun = cancel
		dev, ok := f.Devices[r.Device]
		if !ok {
			go func() { results <- Result{ID: r.ID, Err: fmt.Errorf("fence: no device %q", r.Device)} }()
			return
		}
		id := r.ID
		go func() {
			rep, err := dev.Run(rctx, r.Action, r.Plug)
			select {
			case results <- Result{ID: id, Err: err, Power: rep.Power}:
			case <-rctx.Done(): // the machine moved on; nobody listens
			}
		}()
	}
	reported := 0
	report := func() {
		h := m.History()
		for _, a := range h[reported:] {
			attrs := map[string]any{"device": a.Device, "level": a.Level, "action": string(a.Action),
				"attempt": a.Attempt, "duration_ms": a.Duration.Milliseconds(), "result": "ok"}
			if !a.OK {
				attrs["result"], attrs["error"] = "failed", a.Err
			}
			f.publish(events.Event{Time: a.Started.Add(a.Duration), Kind: events.FenceAttempt, Subject: node, Actor: actor, Attrs: attrs})
			if f.Log != nil {
				f.Log.Info("fence attempt", "node", node, "device", a.Device, "level", a.Level, "action", a.Action, "ok", a.OK, "error", a.Err, "duration", a.Duration)
			}
		}
		reported = len(h)
	}
	start(m.Start(begin))
	for {
		report()
		if out, done := m.Done(); done {
			now := f.Clock.Now()
			res.Confirmed, res.Level, res.Reason = out.Confirmed, out.Level, out.Reason
			res.Attempts, res.Duration = m.History(), now.Sub(begin)
			attrs := map[string]any{"duration_ms": res.Duration.Milliseconds()}
			if out.Confirmed {
				attrs["level"] = out.Level
				f.publish(events.Event{Time: now, Kind: events.FenceSucceeded, Subject: node, Actor: actor, Message: reason, Attrs: attrs})
				return res, nil
			}
			f.publish(events.Event{Time: now, Kind: events.FenceFailed, Subject: node, Actor: actor, Message: out.Reason, Attrs: attrs})
			return res, fmt.Errorf("fence: %s not confirmed off: %s", node, out.Reason)
		}
		var timer clock.Timer
		var tick <-chan time.Time
		if d := m.NextDeadline(); !d.IsZero() {
			timer = f.Clock.NewTimer(d.Sub(f.Clock.Now()))
			tick = timer.C()
		}
		var next *Run
		select {
		case r := <-results:
			next = m.Step(f.Clock.Now(), r)
		case <-tick:
			next = m.Tick(f.Clock.Now())
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			report()
			now := f.Clock.Now()
			res.Attempts, res.Duration, res.Reason = m.History(), now.Sub(begin), ctx.Err().Error()
			f.publish(events.Event{Time: now, Kind: events.FenceFailed, Subject: node, Actor: actor,
				Message: "abandoned: " + ctx.Err().Error(), Attrs: map[string]any{"duration_ms": res.Duration.Milliseconds()}})
			return res, fmt.Errorf("fence: %s: %w", node, ctx.Err())
		}
		if timer != nil {
			timer.Stop()
		}
		if next != nil || m.Pending() == nil {
			start(next)
		}
	}
}

// Monitor checks that a device answers: its monitor action, then, when the
// device has a plug, its status (power is PowerUnknown without one).
func (f *Fencer) Monitor(ctx context.Context, device string) (Reply, error) {
	dev, ok := f.Devices[device]
	if !ok {
		return Reply{}, fmt.Errorf("fence: no device %q", device)
	}
	begin := f.Clock.Now()
	rep, err := dev.Run(ctx, Monitor, "")
	if err == nil && f.Plugs[device] != "" {
		rep, err = dev.Run(ctx, Status, f.Plugs[device])
	}
	rep.Duration = f.Clock.Since(begin)
	return rep, err
}

func (f *Fencer) publish(e events.Event) {
	if f.Events != nil {
		e.Node = f.Self
		f.Events.Publish(e)
	}
}

// OffConfirmer is f behind internal/fencepolicy's Fencer seam: true only on
// a confirmed off.
type OffConfirmer struct{ F *Fencer }

// Fence implements fencepolicy.Fencer.
func (c OffConfirmer) Fence(ctx context.Context, node, reason string) (bool, error) {
	r, err := c.F.FenceBy(ctx, node, reason, "fencepolicy")
	return r.Confirmed && err == nil, err
}
