package manager

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"tandem/internal/events"
	"tandem/internal/resource"
	"tandem/internal/state"
)

// view is what the replicated state says of a group, as this node sees it.
type view struct {
	holder      string
	epoch       uint64
	maintenance bool
	takeover    *state.Takeover
}

type resState struct {
	running     bool
	nextMonitor time.Time
	lastErr     string
}

// worker runs one group. Only its goroutine starts, stops and monitors
// resources; fenceVIPs may run from another goroutine and takes vipMu.
type worker struct {
	m    *Manager
	g    Group
	log  *slog.Logger
	wake chan struct{}

	vipMu sync.Mutex // serializes VIP agent calls between worker and fence

	mu          sync.Mutex
	v           view
	mineSince   time.Time // when this node first saw itself holder at v.epoch
	res         []resState
	phase       string
	phaseSince  time.Time
	epoch       uint64 // epoch the resources run at
	failedEpoch uint64 // epoch at which this node gave up on the group
	restarts    []time.Time
	lastErr     string
	guardUntil  time.Time
	leaseAt     time.Time
	// takeoverAt is the epoch whose takeover was reported: a restart at the
	// same epoch (after a lost lease) is not another takeover.
	takeoverAt uint64
	// haveView: the replicated state has been seen once; probed: the
	// resources were probed at start, to find what a predecessor left.
	haveView, probed bool
}

func (w *worker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) setView(v view, now time.Time) {
	w.mu.Lock()
	if v.holder == w.m.cfg.Node && (w.v.holder != v.holder || w.v.epoch != v.epoch) {
		w.mineSince = now
	}
	w.v = v
	w.haveView = true
	w.mu.Unlock()
	w.poke()
}

func (w *worker) getView() (view, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.v, w.mineSince
}

func (w *worker) setPhase(p string) {
	w.mu.Lock()
	if w.phase != p {
		w.phase, w.phaseSince = p, w.m.cfg.Clock.Now()
	}
	w.mu.Unlock()
}

func (w *worker) anyRunning() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.res {
		if r.running {
			return true
		}
	}
	return false
}

func (w *worker) publish(e events.Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Node = w.m.cfg.Node
	e.Group = w.g.Name
	w.m.cfg.Events.Publish(e)
}

func (w *worker) run(ctx context.Context) {
	w.setPhase(PhaseStopped)
	clk := w.m.cfg.Clock
	timer := clk.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		w.reconcile(ctx)
		timer.Stop()
		timer.Reset(w.nextWake())
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		case <-timer.C():
		}
	}
}

// lease returns whether this node may run the group at epoch now, and the
// lease end.
func (w *worker) lease(epoch uint64) (bool, time.Time) {
	e, until, ok := w.m.cfg.Lease.Lease(w.g.Name)
	now := w.m.cfg.Clock.Now()
	return ok && e == epoch && now.Before(until.Add(-w.m.cfg.Margin)), until
}

func (w *worker) reconcile(ctx context.Context) {
	w.mu.Lock()
	probeNow := w.haveView && !w.probed
	w.probed = w.probed || probeNow
	w.mu.Unlock()
	if probeNow {
		// A predecessor agent (crashed, killed) may have left resources
		// running: the VIP on its interface, an OCF daemon. Probe once,
		// so what runs here without a lease is stopped, VIP first.
		w.probe(ctx)
	}
	v, mineSince := w.getView()
	w.mu.Lock()
	wasUnmanaged := w.phase == PhaseUnmanaged
	w.mu.Unlock()
	if v.maintenance {
		w.setPhase(PhaseUnmanaged)
		// Unmanaged resources stay up: keep the kernel guard open while
		// the lease holds, or the VIP goes silent one lease later.
		w.mu.Lock()
		runEpoch := w.epoch
		w.mu.Unlock()
		if ok, until := w.lease(runEpoch); ok && w.anyRunning() {
			w.refreshGuard(until)
		}
		return
	}
	if wasUnmanaged {
		w.probe(ctx)
	}
	mine := v.holder == w.m.cfg.Node
	w.mu.Lock()
	runEpoch, failed := w.epoch, w.failedEpoch == v.epoch && mine
	w.mu.Unlock()
	if w.anyRunning() {
		ok, until := w.lease(runEpoch)
		switch {
		case !mine || v.epoch != runEpoch:
			w.stopAll(ctx, false, "group moved to "+orNowhere(v.holder))
			w.m.cfg.Lease.Release(w.g.Name, runEpoch)
		case !ok:
			w.publish(events.Event{Kind: events.LeaseLost, Epoch: runEpoch, Message: "lease not renewed; stopping the group, VIP first"})
			w.stopAll(ctx, true, "lease lost")
		default:
			w.refreshGuard(until)
			w.monitor(ctx, runEpoch)
		}
		return
	}
	if !mine || failed {
		if !failed {
			w.setPhase(PhaseStopped)
		}
		return
	}
	if ok, _ := w.lease(v.epoch); ok {
		w.start(ctx, v, mineSince)
	}
}

func orNowhere(h string) string {
	if h == "" {
		return "nowhere"
	}
	return h
}

// probe asks every resource whether it runs (after maintenance, the
// resources may have been changed by hand).
func (w *worker) probe(ctx context.Context) {
	for i, r := range w.g.Resources {
		err := w.call(ctx, r, r.MonitorTimeout, r.Agent.Monitor)
		w.mu.Lock()
		w.res[i].running = err == nil
		w.res[i].nextMonitor = w.m.cfg.Clock.Now().Add(r.MonitorInterval)
		w.mu.Unlock()
	}
	if w.anyRunning() {
		// A group that should run here but lost a resource while it was
		// unmanaged: count the missing ones as running, so the next
		// monitor finds them stopped and recovers them as any failure
		// (restart in place, recorded, up to max_restarts).
		v, _ := w.getView()
		if v.holder == w.m.cfg.Node {
			w.mu.Lock()
			for i := range w.res {
				if !w.res[i].running {
					w.res[i].running = true
					w.res[i].nextMonitor = time.Time{}
				}
			}
			w.mu.Unlock()
		}
		w.setPhase(PhaseRunning)
	} else {
		w.setPhase(PhaseStopped)
	}
}

// call runs one agent operation with its timeout; VIP operations hold vipMu.
func (w *worker) call(ctx context.Context, r Resource, timeout time.Duration, op func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if r.VIP.IsValid() {
		w.vipMu.Lock()
		defer w.vipMu.Unlock()
	}
	err := op(ctx)
	if err != nil && ctx.Err() == context.DeadlineExceeded {
		err = resource.Failf(resource.Soft, "%s: timed out after %v: %v", r.Name, timeout, err)
	}
	return err
}

func (w *worker) start(ctx context.Context, v view, mineSince time.Time) {
	clk := w.m.cfg.Clock
	leaseAt := clk.Now()
	w.mu.Lock()
	w.epoch = v.epoch
	w.leaseAt = leaseAt
	w.mu.Unlock()
	w.setPhase(PhaseStarting)
	for i, r := range w.g.Resources {
		ok, until := w.lease(v.epoch)
		if !ok {
			w.stopAll(ctx, true, "lease lost while starting")
			return
		}
		if r.VIP.IsValid() {
			w.refreshGuard(until)
		}
		t := clk.Now()
		err := w.call(ctx, r, r.StartTimeout, r.Agent.Start)
		if err != nil {
			w.resFailed(i, err)
			w.publish(events.Event{Kind: events.ResFailure, Subject: r.Name, Epoch: v.epoch, Message: "start failed: " + err.Error(),
				Attrs: map[string]any{"op": "start", "severity": resource.SeverityOf(err).String()}})
			w.stopAll(ctx, false, "start of "+r.Name+" failed")
			w.giveUp(ctx, v.epoch, r, err, true)
			return
		}
		w.mu.Lock()
		w.res[i] = resState{running: true, nextMonitor: clk.Now().Add(r.MonitorInterval)}
		w.mu.Unlock()
		w.publish(events.Event{Kind: events.ResStart, Subject: r.Name, Epoch: v.epoch,
			Attrs: map[string]any{"ms": clk.Since(t).Milliseconds()}})
	}
	w.setPhase(PhaseRunning)
	started := clk.Now()
	w.report(ctx, state.Command{Op: state.OpStarted, Group: w.g.Name, Node: w.m.cfg.Node, Epoch: v.epoch})
	attrs := map[string]any{"lease_wait_ms": leaseAt.Sub(mineSince).Milliseconds(), "start_ms": started.Sub(leaseAt).Milliseconds()}
	w.publish(events.Event{Kind: events.GroupStarted, Subject: w.g.Name, Epoch: v.epoch, Attrs: attrs})
	w.mu.Lock()
	first := w.takeoverAt != v.epoch
	w.takeoverAt = v.epoch
	w.mu.Unlock()
	if tk := v.takeover; tk != nil && tk.To == w.m.cfg.Node && first {
		// detect: last heard → declared down (leader's clock); decide:
		// declared down → this node applied the placement (wall clocks of
		// two machines); start: applied → lease → resources started.
		decide := int64(0)
		if !tk.DownAt.IsZero() {
			decide = time.Now().Add(-clk.Since(mineSince)).Sub(tk.DownAt).Milliseconds()
		}
		w.publish(events.Event{Kind: events.Takeover, Subject: w.g.Name, Epoch: v.epoch,
			Message: "took over from " + tk.From,
			Attrs: map[string]any{"from": tk.From, "detect_ms": tk.DetectMs, "decide_ms": decide,
				"lease_wait_ms": leaseAt.Sub(mineSince).Milliseconds(), "start_ms": started.Sub(mineSince).Milliseconds(),
				"total_ms": tk.DetectMs + decide + started.Sub(mineSince).Milliseconds()}})
	}
}

// stopAll stops every running resource: in reverse order, or VIPs first
// when fencing after a lost lease.
func (w *worker) stopAll(ctx context.Context, vipFirst bool, why string) {
	w.setPhase(PhaseStopping)
	order := make([]int, 0, len(w.g.Resources))
	if vipFirst {
		for i := len(w.g.Resources) - 1; i >= 0; i-- {
			if w.g.Resources[i].VIP.IsValid() {
				order = append(order, i)
			}
		}
	}
	for i := len(w.g.Resources) - 1; i >= 0; i-- {
		if !vipFirst || !w.g.Resources[i].VIP.IsValid() {
			order = append(order, i)
		}
	}
	for _, i := range order {
		w.stopOne(ctx, i, why)
	}
	if w.anyRunning() {
		return // a stop failed: stay in stopping, retried on the next pass
	}
	w.mu.Lock()
	failed := w.failedEpoch == w.epoch && w.phase != PhaseUnmanaged
	w.mu.Unlock()
	if failed {
		w.setPhase(PhaseFailed)
	} else {
		w.setPhase(PhaseStopped)
	}
	w.publish(events.Event{Kind: events.GroupStopped, Subject: w.g.Name, Epoch: w.epoch, Message: why})
}

func (w *worker) stopOne(ctx context.Context, i int, why string) {
	r := w.g.Resources[i]
	w.mu.Lock()
	running := w.res[i].running
	w.mu.Unlock()
	if !running {
		return
	}
	if r.VIP.IsValid() && w.m.cfg.Guard != nil {
		if err := w.m.cfg.Guard.Revoke(r.VIP); err != nil {
			w.log.Error("cannot revoke VIP in the kernel guard", "vip", r.VIP, "err", err)
		}
	}
	// A stop that runs into ctx's end (agent shutting down) still gets its
	// own timeout: resources must not be left half-stopped.
	err := w.call(context.WithoutCancel(ctx), r, r.StopTimeout, r.Agent.Stop)
	w.mu.Lock()
	// A failed stop leaves the resource counted as running, so the next
	// pass tries again: we cannot fence a node, so we keep stopping.
	w.res[i].running = err != nil
	w.res[i].lastErr = errText(err)
	if err != nil {
		w.lastErr = r.Name + ": stop failed: " + err.Error()
	}
	w.mu.Unlock()
	if err != nil {
		w.log.Error("stop failed; will retry", "resource", r.Name, "err", err)
		w.publish(events.Event{Kind: events.ResFailure, Subject: r.Name, Epoch: w.epoch, Message: "stop failed: " + err.Error(),
			Attrs: map[string]any{"op": "stop"}})
		return
	}
	w.publish(events.Event{Kind: events.ResStop, Subject: r.Name, Epoch: w.epoch, Message: why})
}

// fenceVIPs silences and removes the group's VIPs now (lease lost).
func (w *worker) fenceVIPs(why string) {
	for i, r := range w.g.Resources {
		if !r.VIP.IsValid() {
			continue
		}
		w.mu.Lock()
		running := w.res[i].running
		w.mu.Unlock()
		if !running {
			continue
		}
		if w.m.cfg.Guard != nil {
			w.m.cfg.Guard.Revoke(r.VIP)
		}
		ctx, cancel := context.WithTimeout(context.Background(), r.StopTimeout)
		w.vipMu.Lock()
		err := r.Agent.Stop(ctx)
		w.vipMu.Unlock()
		cancel()
		w.mu.Lock()
		w.res[i].running = err != nil
		w.mu.Unlock()
		w.publish(events.Event{Kind: events.ResStop, Subject: r.Name, Epoch: w.epoch, Message: "fenced: " + why})
	}
}

func (w *worker) refreshGuard(until time.Time) {
	if w.m.cfg.Guard == nil {
		return
	}
	w.mu.Lock()
	same := until.Equal(w.guardUntil)
	w.guardUntil = until
	w.mu.Unlock()
	if same {
		return
	}
	// The kernel counts the element's timeout from when the netlink batch
	// lands, a little after `now` (more on a loaded machine), so the
	// allowance ends GuardMargin before the lease to stay inside it.
	left := until.Sub(w.m.cfg.Clock.Now()) - GuardMargin
	for _, r := range w.g.Resources {
		if r.VIP.IsValid() {
			if err := w.m.cfg.Guard.Allow(r.VIP, left); err != nil {
				w.log.Error("cannot refresh VIP in the kernel guard", "vip", r.VIP, "err", err)
			}
		}
	}
}

func (w *worker) monitor(ctx context.Context, epoch uint64) {
	clk := w.m.cfg.Clock
	for i, r := range w.g.Resources {
		w.mu.Lock()
		due := w.res[i].running && !clk.Now().Before(w.res[i].nextMonitor)
		w.mu.Unlock()
		if !due {
			continue
		}
		if ok, _ := w.lease(epoch); !ok {
			return // reconcile fences on the next pass
		}
		err := w.call(ctx, r, r.MonitorTimeout, r.Agent.Monitor)
		w.mu.Lock()
		w.res[i].nextMonitor = clk.Now().Add(r.MonitorInterval)
		w.mu.Unlock()
		if err == nil {
			continue
		}
		if resource.IsNotRunning(err) {
			err = resource.Failf(resource.Soft, "%s is not running", r.Name)
		}
		w.resFailed(i, err)
		sev := resource.SeverityOf(err)
		w.publish(events.Event{Kind: events.ResFailure, Subject: r.Name, Epoch: epoch, Message: "monitor: " + err.Error(),
			Attrs: map[string]any{"op": "monitor", "severity": sev.String()}})
		if sev == resource.Soft && w.restartBudget() {
			w.restartFrom(ctx, epoch, i, err)
			return
		}
		w.stopAll(ctx, false, r.Name+" failed")
		w.giveUp(ctx, epoch, r, err, sev == resource.Soft)
		return
	}
}

func (w *worker) resFailed(i int, err error) {
	w.mu.Lock()
	w.res[i].lastErr = err.Error()
	w.lastErr = w.g.Resources[i].Name + ": " + err.Error()
	w.mu.Unlock()
}

// restartBudget records a restart and reports whether it is within
// max_restarts for the failure_timeout window.
func (w *worker) restartBudget() bool {
	now := w.m.cfg.Clock.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	kept := w.restarts[:0]
	for _, t := range w.restarts {
		if w.g.FailureTimeout <= 0 || now.Sub(t) < w.g.FailureTimeout {
			kept = append(kept, t)
		}
	}
	w.restarts = kept
	if len(w.restarts) >= w.g.MaxRestarts {
		return false
	}
	w.restarts = append(w.restarts, now)
	return true
}

// restartFrom restarts resource i and every resource after it (they depend
// on it), in place.
func (w *worker) restartFrom(ctx context.Context, epoch uint64, i int, cause error) {
	w.log.Warn("restarting in place", "resource", w.g.Resources[i].Name, "err", cause)
	for j := len(w.g.Resources) - 1; j >= i; j-- {
		w.stopOne(ctx, j, "restart after failure")
	}
	w.report(ctx, state.Command{Op: state.OpFailure, Group: w.g.Name, Node: w.m.cfg.Node, Epoch: epoch,
		Severity: "soft", Reason: cause.Error()})
	clk := w.m.cfg.Clock
	for j := i; j < len(w.g.Resources); j++ {
		r := w.g.Resources[j]
		ok, until := w.lease(epoch)
		if !ok {
			w.stopAll(ctx, true, "lease lost while restarting")
			return
		}
		if r.VIP.IsValid() {
			w.mu.Lock()
			w.guardUntil = time.Time{}
			w.mu.Unlock()
			w.refreshGuard(until)
		}
		if err := w.call(ctx, r, r.StartTimeout, r.Agent.Start); err != nil {
			w.resFailed(j, err)
			w.stopAll(ctx, false, "restart of "+r.Name+" failed")
			w.giveUp(ctx, epoch, r, err, true)
			return
		}
		w.mu.Lock()
		w.res[j] = resState{running: true, nextMonitor: clk.Now().Add(r.MonitorInterval)}
		w.mu.Unlock()
		w.publish(events.Event{Kind: events.ResStart, Subject: r.Name, Epoch: epoch, Message: "restarted in place"})
	}
	w.setPhase(PhaseRunning)
}

// giveUp marks the group failed here at epoch and asks the cluster to move
// it (the report bans this node for the group).
func (w *worker) giveUp(ctx context.Context, epoch uint64, r Resource, err error, gaveUp bool) {
	w.mu.Lock()
	w.failedEpoch = epoch
	w.mu.Unlock()
	w.setPhase(PhaseFailed)
	sev := resource.SeverityOf(err)
	w.report(ctx, state.Command{Op: state.OpFailure, Group: w.g.Name, Node: w.m.cfg.Node, Epoch: epoch,
		Severity: sev.String(), GaveUp: gaveUp, Reason: r.Name + ": " + err.Error()})
}

// report proposes a failure in the background, retrying while there is no
// leader, until it commits or the epoch has moved on.
func (w *worker) report(ctx context.Context, c state.Command) {
	if w.m.cfg.Reporter == nil {
		return
	}
	c.Time = time.Now()
	go func() {
		for attempt := 0; attempt < 100; attempt++ {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := w.m.cfg.Reporter.Propose(rctx, c)
			cancel()
			if err == nil || state.IsStaleEpoch(err) || ctx.Err() != nil {
				return
			}
			w.log.Warn("failure report not committed yet", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
}

func (w *worker) nextWake() time.Duration {
	clk := w.m.cfg.Clock
	now := clk.Now()
	next := now.Add(time.Second)
	w.mu.Lock()
	if w.phase == PhaseUnmanaged {
		// Nothing is monitored or fenced by time in maintenance (their
		// monitor times stay in the past); lease changes and the state
		// wake the worker.
		w.mu.Unlock()
		return next.Sub(now)
	}
	for _, r := range w.res {
		if r.running && r.nextMonitor.Before(next) {
			next = r.nextMonitor
		}
	}
	epoch := w.epoch
	running := false
	for _, r := range w.res {
		running = running || r.running
	}
	w.mu.Unlock()
	if running {
		if e, until, _ := w.m.cfg.Lease.Lease(w.g.Name); e == epoch && !until.IsZero() {
			if fence := until.Add(-w.m.cfg.Margin); fence.Before(next) {
				next = fence
			}
		}
	}
	d := next.Sub(now)
	if d < 0 {
		d = 0
	}
	return d
}

func (w *worker) status() GroupStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := GroupStatus{Name: w.g.Name, Phase: w.phase, Since: w.phaseSince, Restarts: len(w.restarts), LastError: w.lastErr}
	if w.phase != PhaseStopped {
		s.Epoch = w.epoch
	}
	if _, until, ok := w.m.cfg.Lease.Lease(w.g.Name); ok {
		s.LeaseLeft = float64(until.Sub(w.m.cfg.Clock.Now()).Microseconds()) / 1000
	}
	for i, r := range w.g.Resources {
		s.Resources = append(s.Resources, ResourceStatus{Name: r.Name, Kind: r.Kind, Running: w.res[i].running, LastError: w.res[i].lastErr})
	}
	return s
}
