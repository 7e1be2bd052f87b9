package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"tandem/internal/clock"
	"tandem/internal/events"
	"tandem/internal/lifecycle"
	"tandem/internal/resource"
	"tandem/internal/state"
	"tandem/internal/vipguard"
)

// groupInfo is what the worker keeps of the replicated state besides the
// view: how the group got here, for the takeover figures.
type groupInfo struct {
	takeover *state.Takeover
	reason   string
}

// worker drives one group's machine. Its loop goroutine owns the machine
// and the operations map; other goroutines hand it events through the
// inbox (mu) and wake it.
type worker struct {
	m    *Manager
	g    Group
	log  *slog.Logger
	wake chan struct{}
	mach *lifecycle.Machine

	mu sync.Mutex
	// inbox
	view      lifecycle.View
	info      groupInfo
	viewNew   bool
	results   []lifecycle.Result
	exited    []int
	drain     bool
	shutdown  bool
	drained   bool // handed to the machine
	shut      bool
	viewAt    map[uint64]time.Time // wall time this node first saw itself holder at an epoch
	snapshot  lifecycle.Status
	leaseLeft time.Duration
	quiet     bool
	probed    bool
	// the kernel guard's drop counter (pollGuard) and late refreshes
	guardSeen, guardWasOpen bool
	guardCount              uint64
	guardDropped            uint64
	guardPending            uint64
	guardEvent              time.Time
	guardLate               uint64

	// loop goroutine only
	ops       map[uint64]context.CancelFunc
	lastLease lifecycle.Lease
	tookOver  uint64 // epoch whose takeover was published
	// startMs: how long each kind of resource took to start, summed, at
	// the epoch being started (for the takeover's promote / mount /
	// service split).
	startMs    map[string]int64
	startEpoch uint64
	reports    *reporter
	// gated: the epoch Config.MayStart said yes to; released: the old
	// holding a "released" report was sent for.
	gated, released uint64

	resMu []sync.Mutex // one operation at a time per resource
}

func newWorker(m *Manager, g Group) *worker {
	w := &worker{m: m, g: g, log: m.cfg.Logger.With("group", g.Name), wake: make(chan struct{}, 1),
		ops: map[uint64]context.CancelFunc{}, resMu: make([]sync.Mutex, len(g.Resources)), viewAt: map[uint64]time.Time{}}
	cfg := lifecycle.Config{Node: m.cfg.Node, Group: g.Name, MaxRestarts: g.MaxRestarts,
		FailureTimeout: g.FailureTimeout, Margin: m.cfg.Margin}
	for _, r := range g.Resources {
		cfg.Resources = append(cfg.Resources, lifecycle.Resource{Name: r.Name, VIP: r.VIP.IsValid(),
			MonitorInterval: r.MonitorInterval, StartTimeout: r.StartTimeout, StopTimeout: r.StopTimeout,
			MonitorTimeout: r.MonitorTimeout})
	}
	w.mach = lifecycle.New(cfg, m.cfg.Clock.Now())
	w.reports = &reporter{w: w, wake: make(chan struct{}, 1)}
	w.snapshot = w.mach.Status()
	return w
}

func (w *worker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) setView(v lifecycle.View, info groupInfo) {
	w.mu.Lock()
	if v != w.view || !w.viewNew && info != w.info {
		w.viewNew = true
	}
	if v.Holder == w.m.cfg.Node {
		if _, ok := w.viewAt[v.Epoch]; !ok {
			w.viewAt[v.Epoch] = time.Now()
		}
	}
	w.view, w.info = v, info
	w.mu.Unlock()
	w.poke()
}

// request changes the inbox under the lock and wakes the loop.
func (w *worker) request(f func(*worker)) {
	w.mu.Lock()
	f(w)
	w.mu.Unlock()
	w.poke()
}

func (w *worker) isQuiet() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.quiet
}

func (w *worker) probedOnce() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.probed
}

func (w *worker) run(ctx context.Context) {
	go w.reports.run(ctx)
	for i, r := range w.g.Resources {
		if wa, ok := r.Agent.(resource.Watcher); ok {
			go w.watch(ctx, i, wa.Watch())
		}
	}
	clk := w.m.cfg.Clock
	// An Alarm, not a Go timer: the lease's margin moves back with every
	// renewal, and a Go timer moved back wakes the runtime's monitor
	// thread at each deadline it no longer has (clock.NewAlarm).
	alarm := clock.NewAlarm(clk)
	defer alarm.Close()
	for {
		w.turn()
		now := clk.Now()
		next := w.mach.NextDeadline(now)
		if next.IsZero() {
			next = now.Add(time.Hour)
		}
		alarm.Set(now, next)
		select {
		case <-ctx.Done():
			for _, cancel := range w.ops {
				cancel()
			}
			return
		case <-w.wake:
		case <-alarm.C():
		}
	}
}

// watch forwards an agent's "ended on its own" notices.
func (w *worker) watch(ctx context.Context, i int, ch <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			w.request(func(w *worker) { w.exited = append(w.exited, i) })
		}
	}
}

// turn feeds the machine everything that happened and runs what it asks.
func (w *worker) turn() {
	clk := w.m.cfg.Clock
	w.mu.Lock()
	v, viewNew, info := w.view, w.viewNew, w.info
	w.viewNew = false
	results, exited := w.results, w.exited
	w.results, w.exited = nil, nil
	drain := w.drain && !w.drained
	shutdown := w.shutdown && !w.shut
	w.drained, w.shut = w.drained || drain, w.shut || shutdown
	w.mu.Unlock()

	now := clk.Now()
	if viewNew {
		w.mach.SetView(now, v)
	}
	var l lifecycle.Lease
	if e, until, _ := w.m.cfg.Lease.Lease(w.g.Name); e != 0 && w.mayStart(e) {
		l = lifecycle.Lease{Epoch: e, Until: until}
	}
	if l != w.lastLease {
		w.lastLease = l
		w.mach.SetLease(now, l)
	}
	for _, r := range results {
		delete(w.ops, r.ID)
		w.mach.Done(now, r)
	}
	for _, i := range exited {
		w.mach.Exited(now, i)
	}
	if drain {
		w.mach.Drain(now)
	}
	if shutdown {
		w.mach.Shutdown(now)
	}
	w.mach.Tick(now)
	w.execute(w.mach.Actions())

	st := w.mach.Status()
	if e, ok := releasedAt(w.m.cfg.Node, v, info.takeover, st.Phase); ok && e != w.released {
		w.released = e
		w.reports.add(state.Command{Op: state.OpReleased, Time: time.Now(), Group: w.g.Name, Node: w.m.cfg.Node, Epoch: e})
	}
	w.mu.Lock()
	w.snapshot = st
	w.quiet = w.mach.Quiet()
	w.probed = w.probed || st.Phase != lifecycle.PhaseProbing
	w.leaseLeft = 0
	if l.Epoch != 0 {
		w.leaseLeft = l.Until.Sub(now)
	}
	w.mu.Unlock()
}

// mayStart asks the fencing gate about a lease at epoch e, once yes at e.
func (w *worker) mayStart(e uint64) bool {
	if w.m.cfg.MayStart == nil || w.gated == e {
		return true
	}
	if !w.m.cfg.MayStart(w.g.Name, e) {
		return false
	}
	w.gated = e
	return true
}

// releasedAt reports the old holding node may say is over: the group was
// taken over from node (at epoch e), is held elsewhere now, and nothing of
// it runs here (stopped at the lease's end, or found stopped by a
// restart's probe).
func releasedAt(node string, v lifecycle.View, t *state.Takeover, phase lifecycle.Phase) (uint64, bool) {
	if t == nil || t.From != node || t.FromStopped || t.Epoch != v.Epoch || v.Holder == node || phase != lifecycle.PhaseStopped {
		return 0, false
	}
	return t.FromEpoch, true
}

func (w *worker) execute(acts []lifecycle.Action) {
	for _, a := range acts {
		switch a := a.(type) {
		case lifecycle.Run:
			w.runOp(a)
		case lifecycle.Cancel:
			if cancel := w.ops[a.ID]; cancel != nil {
				cancel()
			}
		case lifecycle.OpenGuard:
			w.openGuard(a.Until)
		case lifecycle.CloseGuard:
			w.closeGuard()
		case lifecycle.Release:
			w.m.cfg.Lease.Release(w.g.Name, a.Epoch)
		case lifecycle.Report:
			w.reports.add(w.command(a))
			if a.Kind == lifecycle.ReportHandedOver {
				w.mu.Lock()
				to := w.view.Handover
				w.mu.Unlock()
				w.publish(events.Event{Kind: events.Handover, Subject: w.g.Name, Epoch: a.Epoch,
					Message: "stopped here and released the lease; handing over to " + to, Attrs: map[string]any{"to": to}})
			}
		case lifecycle.Note:
			w.publishNote(a)
		}
	}
}

// runOp runs one operation in its own goroutine, bounded by its timeout;
// operations on one resource run one at a time (a cancelled monitor ends
// before the stop that follows it begins).
func (w *worker) runOp(a lifecycle.Run) {
	r := w.g.Resources[a.Res]
	ctx, cancel := context.WithTimeout(resource.WithEpoch(context.Background(), a.Epoch), a.Timeout)
	w.ops[a.ID] = cancel
	var op func(context.Context) error
	switch a.Op {
	case lifecycle.OpStart:
		op = r.Agent.Start
	case lifecycle.OpStop:
		op = r.Agent.Stop
	default:
		op = r.Agent.Monitor
	}
	if a.Op == lifecycle.OpProbe {
		ctx = resource.WithProbe(ctx)
	}
	go func() {
		defer cancel()
		w.resMu[a.Res].Lock()
		err := ctx.Err()
		var began time.Time
		if w.m.cfg.OnOp != nil {
			began = w.m.cfg.Clock.Now()
		}
		if err == nil {
			err = op(ctx)
		}
		var took time.Duration
		if w.m.cfg.OnOp != nil {
			took = w.m.cfg.Clock.Since(began)
		}
		w.resMu[a.Res].Unlock()
		res := lifecycle.Result{ID: a.ID}
		outcome := "ok"
		switch {
		case err == nil:
		case resource.IsNotRunning(err):
			res.Outcome = lifecycle.NotRunning
			outcome = "not_running"
		default:
			res.Outcome = lifecycle.Failed
			res.Severity = lifecycle.Severity(resource.SeverityOf(err))
			outcome = "failed"
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				err = fmt.Errorf("timed out after %v: %w", a.Timeout, err)
				outcome = "timeout"
			}
			res.Err = err.Error()
		}
		if f := w.m.cfg.OnOp; f != nil {
			f(OpResult{Group: w.g.Name, Resource: r.Name, Kind: r.Kind, Op: a.Op.String(), Outcome: outcome, Took: took})
		}
		w.request(func(w *worker) { w.results = append(w.results, res) })
	}()
}

// openGuard lets the group's VIPs speak until GuardMargin before the lease
// ends.
func (w *worker) openGuard(until time.Time) {
	g := w.m.cfg.Guard
	if g == nil {
		return
	}
	for _, r := range w.g.Resources {
		if !r.VIP.IsValid() {
			continue
		}
		err := g.AllowUntil(r.VIP, until.Add(-GuardMargin))
		switch {
		case vipguard.IsLate(err):
			// The kernel took too long to apply the refresh: the VIP was
			// silenced rather than risk outliving the lease; the next
			// renewal opens it again.
			w.mu.Lock()
			w.guardLate++
			w.mu.Unlock()
			w.log.Warn("the kernel guard's refresh came too late; the VIP is silent until the next renewal", "vip", r.VIP)
		case err != nil:
			w.log.Error("cannot refresh VIP in the kernel guard", "vip", r.VIP, "err", err)
		}
	}
}

func (w *worker) closeGuard() {
	g := w.m.cfg.Guard
	if g == nil {
		return
	}
	for _, r := range w.g.Resources {
		if r.VIP.IsValid() {
			if err := g.Revoke(r.VIP); err != nil {
				w.log.Error("cannot revoke VIP in the kernel guard", "vip", r.VIP, "err", err)
			}
		}
	}
}

// command turns a report into the command that tells the cluster.
func (w *worker) command(r lifecycle.Report) state.Command {
	c := state.Command{Group: w.g.Name, Node: w.m.cfg.Node, Epoch: r.Epoch, Time: time.Now()}
	switch r.Kind {
	case lifecycle.ReportFailure:
		c.Op, c.Severity, c.GaveUp, c.Reason = state.OpFailure, r.Severity.String(), r.GaveUp, r.Reason
	case lifecycle.ReportPhase:
		c.Op, c.Phase, c.Reason = state.OpPhase, string(r.Phase), r.Reason
	case lifecycle.ReportHandedOver:
		c.Op = state.OpHandedOver
	}
	return c
}

func (w *worker) publish(e events.Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Node = w.m.cfg.Node
	e.Group = w.g.Name
	w.m.cfg.Events.Publish(e)
}

func (w *worker) publishNote(n lifecycle.Note) {
	name := w.g.Name
	if n.Res >= 0 {
		name = w.g.Resources[n.Res].Name
	}
	ms := n.Took.Milliseconds()
	switch n.Kind {
	case lifecycle.NoteResStarted:
		w.publish(events.Event{Kind: events.ResStart, Subject: name, Epoch: n.Epoch, Attrs: map[string]any{"ms": ms}})
		if w.startEpoch != n.Epoch || w.startMs == nil {
			w.startMs, w.startEpoch = map[string]int64{}, n.Epoch
		}
		w.startMs[startPart(w.g.Resources[n.Res].Kind)] += ms
	case lifecycle.NoteResStopped:
		w.publish(events.Event{Kind: events.ResStop, Subject: name, Epoch: n.Epoch, Message: n.Message, Attrs: map[string]any{"ms": ms}})
	case lifecycle.NoteResFailed:
		w.log.Warn("resource failed", "resource", name, "op", n.Op.String(), "err", n.Message)
		w.publish(events.Event{Kind: events.ResFailure, Subject: name, Epoch: n.Epoch, Message: n.Message,
			Attrs: map[string]any{"op": n.Op.String(), "severity": n.Severity.String()}})
	case lifecycle.NoteRestart:
		w.log.Warn("restarting in place", "resource", name, "why", n.Message)
		w.publish(events.Event{Kind: events.ResRestart, Subject: name, Epoch: n.Epoch, Message: n.Message})
	case lifecycle.NoteAdopted:
		w.publish(events.Event{Kind: events.ResFound, Subject: name, Epoch: n.Epoch, Message: n.Message})
	case lifecycle.NoteLeaseLost:
		w.publish(events.Event{Kind: events.LeaseLost, Subject: name, Epoch: n.Epoch, Message: n.Message})
	case lifecycle.NoteGroupStopped:
		w.publish(events.Event{Kind: events.GroupStopped, Subject: name, Epoch: n.Epoch, Message: n.Message})
	case lifecycle.NoteGroupStarted:
		w.groupStarted(n)
	}
}

// groupStarted publishes group_started, and takeover when this start ends
// an unplanned move to this node at that epoch: detect (last heard →
// declared down, on the leader's clock), decide (declared down → this node
// applied the placement; wall clocks of two machines), lease wait and
// start (this node's monotonic clock).
func (w *worker) groupStarted(n lifecycle.Note) {
	w.mu.Lock()
	info, viewAt := w.info, w.viewAt[n.Epoch]
	for e := range w.viewAt {
		if e < n.Epoch {
			delete(w.viewAt, e)
		}
	}
	w.mu.Unlock()
	lw, st := n.LeaseWait.Milliseconds(), n.Start.Milliseconds()
	attrs := map[string]any{"lease_wait_ms": lw, "start_ms": st}
	if info.reason != "" {
		attrs["reason"] = info.reason
	}
	w.publish(events.Event{Kind: events.GroupStarted, Subject: w.g.Name, Epoch: n.Epoch, Attrs: attrs})
	tk := info.takeover
	if tk == nil || tk.To != w.m.cfg.Node || tk.Epoch != n.Epoch || w.tookOver == n.Epoch {
		return
	}
	w.tookOver = n.Epoch
	decide := int64(0)
	if !tk.DownAt.IsZero() && !viewAt.IsZero() {
		decide = max(viewAt.Sub(tk.DownAt).Milliseconds(), 0)
	}
	attrs = map[string]any{"from": tk.From, "detect_ms": tk.DetectMs, "decide_ms": decide, "lease_wait_ms": lw,
		"start_ms": lw + st, "total_ms": tk.DetectMs + decide + lw + st}
	if w.startEpoch == n.Epoch {
		for part, ms := range w.startMs {
			attrs[part+"_ms"] = ms
		}
	}
	w.publish(events.Event{Kind: events.Takeover, Subject: w.g.Name, Epoch: n.Epoch, Message: "took over from " + tk.From, Attrs: attrs})
}

// startPart names the part of a takeover's start a resource kind is:
// promote (volume), mount (filesystem), vip, service (exec, ocf), export
// (nbd_export).
func startPart(kind string) string {
	switch kind {
	case "volume":
		return "promote"
	case "filesystem":
		return "mount"
	case "vip":
		return "vip"
	case "nbd_export":
		return "export"
	}
	return "service"
}

func (w *worker) status() GroupStatus {
	w.mu.Lock()
	st, left := w.snapshot, w.leaseLeft
	dropped, late := w.guardDropped, w.guardLate
	w.mu.Unlock()
	s := GroupStatus{Name: w.g.Name, Phase: string(st.Phase), Epoch: st.Epoch, Since: st.Since, Handover: st.Handover,
		Restarts: st.Restarts, LastError: st.LastError, GuardDropped: dropped, GuardLate: late}
	if left > 0 {
		s.LeaseLeft = float64(left.Microseconds()) / 1000
	}
	for i, r := range st.Resources {
		s.Resources = append(s.Resources, ResourceStatus{Name: r.Name, Kind: w.g.Resources[i].Kind, State: r.State.String(),
			Running: r.State == lifecycle.Running, Op: r.Op, LastSeen: r.LastSeen, LastCheck: r.LastCheck,
			LastResult: r.LastResult, LastError: r.LastError})
	}
	return s
}
