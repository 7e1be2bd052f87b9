package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"tandem/internal/clock"
	"tandem/internal/events"
	"tandem/internal/heartbeat"
	"tandem/internal/manager"
	"tandem/internal/state"
	"tandem/internal/watchdog"
)

// nodeWatchdog runs watchdog.Feeder's decisions on this data node's
// watchdog (docs/fencing.md, "Watchdog"): opened when the agent starts
// (the agent refuses to start without it), fed every quarter of its
// timeout by a loop that reads each lease from the heartbeat engine that
// renews them, so a wedged lease engine or a frozen or dead agent stops
// the feeding; given up for good once a lease this node still claimed ran
// out or its group was taken over from it; closed only by a planned stop
// that released everything. Its held marker keeps an agent restarted in
// the same boot from feeding a watchdog a crash left to reset the machine
// (watchdog_marker.go).
type nodeWatchdog struct {
	wd      watchdog.Watchdog
	device  string
	timeout time.Duration // what the device runs with
	self    string
	clk     clock.Clock
	log     *slog.Logger
	publish func(events.Event)
	leases  manager.LeaseSource

	mu       sync.Mutex
	f        *watchdog.Feeder
	reported bool // watchdog_expiring published
	stopped  bool // stop ran
	feedErr  bool // the last feed failed (logged once a run of failures)

	cancel context.CancelFunc
	done   chan struct{}

	// The held marker (watchdog_marker.go). markerMu is held across its
	// file I/O (not mu: lease reports must not wait on a sync).
	markerMu sync.Mutex
	marker   string // heldMarkerFile
	marked   bool   // the marker is on disk, durably
	mayBe    bool   // it may be on disk (a write was tried, or it is marked)
	closed   bool   // stop decided: the marker stays as stop left it
}

// openWatchdog opens this data node's watchdog when the configuration has
// one (nil otherwise); start begins feeding it.
func (n *Node) openWatchdog() (*nodeWatchdog, error) {
	c := n.cfg.Watchdog
	if c == nil || n.cfg.IsWitness(n.self) {
		return nil, nil
	}
	w := &nodeWatchdog{wd: n.opts.Watchdog, device: n.cfg.WatchdogDevice(n.self), self: n.self, clk: n.clk,
		log: n.log, publish: n.publish, f: watchdog.NewFeeder(), done: make(chan struct{}),
		marker: heldMarkerFile(n.cfg.StateDir)}
	if err := checkHeldMarker(w.marker, c.Timeout.D()); err != nil {
		return nil, err
	}
	if w.wd == nil {
		w.wd = &watchdog.Device{Path: w.device, FixedTimeout: c.FixedTimeout}
	}
	if w.f.Start() != watchdog.Open {
		return nil, fmt.Errorf("node: watchdog: the feeder did not open it")
	}
	got, err := w.wd.Open(c.Timeout.D())
	if err != nil {
		return nil, fmt.Errorf("node: %w (docs/fencing.md, \"Watchdog\")", err)
	}
	w.timeout = got
	n.log.Info("watchdog armed", "device", w.device, "timeout", got)
	n.publish(events.Event{Kind: events.WatchdogArmed, Subject: w.device,
		Message: fmt.Sprintf("watchdog %s armed with a %v timeout: it is fed while this agent runs and renews its leases", w.device, got),
		Attrs:   map[string]any{"device": w.device, "timeout_ms": got.Milliseconds()}})
	return w, nil
}

// start feeds the watchdog from now on; leases is the heartbeat runner.
func (w *nodeWatchdog) start(leases manager.LeaseSource) {
	if w == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.leases, w.cancel = leases, cancel
	go w.loop(ctx)
}

// feedInterval: a quarter of the timeout (sbd's rule), so three feeds in a
// row may come late on a loaded machine before it resets.
func (w *nodeWatchdog) feedInterval() time.Duration {
	return max(w.timeout/4, 10*time.Millisecond)
}

func (w *nodeWatchdog) loop(ctx context.Context) {
	defer close(w.done)
	t := w.clk.NewTicker(w.feedInterval())
	defer t.Stop()
	for {
		w.tick()
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

// tick reads every watched lease from the lease engine (under its lock:
// a wedged engine stops the feeding here) and feeds unless the feeder
// gave up.
func (w *nodeWatchdog) tick() {
	w.mu.Lock()
	watched := w.f.Watched()
	w.mu.Unlock()
	type seen struct {
		epoch uint64
		until time.Time
	}
	var held = map[string]seen{}
	for g := range watched {
		if epoch, until, ok := w.leases.Lease(g); ok {
			held[g] = seen{epoch, until}
		}
	}
	w.mu.Lock()
	now := w.clk.Now()
	for g, s := range held {
		w.f.Held(now, g, s.epoch, s.until)
	}
	a := w.f.Tick(now)
	w.mu.Unlock()
	w.run(a)
	w.reportGiveUp()
}

func (w *nodeWatchdog) run(a watchdog.Action) {
	switch a {
	case watchdog.Feed:
		err := w.wd.Feed()
		w.mu.Lock()
		first := err != nil && !w.feedErr
		w.feedErr = err != nil
		w.mu.Unlock()
		if first {
			w.log.Error("cannot feed the watchdog; the machine resets unless a later feed succeeds", "device", w.device, "err", err)
		}
	case watchdog.Close:
		w.disarm()
	}
}

// disarm is the magic close.
func (w *nodeWatchdog) disarm() {
	if err := w.wd.Close(); err != nil {
		w.log.Error("cannot close the watchdog: the machine may reset", "device", w.device, "err", err)
		return
	}
	w.log.Info("watchdog disarmed", "device", w.device)
	w.publish(events.Event{Kind: events.WatchdogDisarmed, Subject: w.device,
		Message: fmt.Sprintf("watchdog %s disarmed (magic close): a planned stop with no lease held", w.device)})
}

// reportGiveUp says once, loudly, that the machine is about to reset.
func (w *nodeWatchdog) reportGiveUp() {
	w.mu.Lock()
	why, at, ok := w.f.GaveUp()
	if !ok || w.reported {
		w.mu.Unlock()
		return
	}
	w.reported = true
	w.mu.Unlock()
	by := at.Add(w.timeout)
	w.log.Error("watchdog no longer fed: this machine resets", "device", w.device, "why", why, "by", by)
	w.publish(events.Event{Kind: events.WatchdogExpiring, Subject: w.device,
		Message: fmt.Sprintf("watchdog %s no longer fed: %s; this machine resets by %s", w.device, why, by.Format(time.RFC3339Nano)),
		Attrs:   map[string]any{"device": w.device, "reset_by": by}})
}

// leaseChanged takes the heartbeat runner's lease reports (acquired,
// extended) as they come.
func (w *nodeWatchdog) leaseChanged(c heartbeat.Change) {
	if w == nil || (c.Kind != heartbeat.LeaseAcquired && c.Kind != heartbeat.LeaseExtended) {
		return
	}
	w.mu.Lock()
	w.f.Held(c.At, c.Group, c.Epoch, c.Until) // At: when the engine judged it
	w.mu.Unlock()
}

// applied takes an applied state, before the lease engine does: the held
// marker is written before a lease can be held on a group the state names
// this node the holder of; a watched lease whose group the state moved off
// this node (or to another epoch) is gone, and by a takeover from this
// node the feeder gives up; the marker goes once nothing is held or named,
// unless the feeder gave up (the machine is to be reset).
func (w *nodeWatchdog) applied(st *state.State) {
	if w == nil {
		return
	}
	named := false
	for _, gs := range st.Groups {
		named = named || gs.Holder == w.self
	}
	if named {
		w.mark()
	}
	w.mu.Lock()
	now := w.clk.Now()
	for g, epoch := range w.f.Watched() {
		gs := st.Groups[g]
		if gs != nil && gs.Holder == w.self && gs.Epoch == epoch {
			continue
		}
		tk := (*state.Takeover)(nil)
		if gs != nil {
			tk = gs.Takeover
		}
		w.f.Gone(g, epoch, tk != nil && tk.From == w.self && tk.FromEpoch == epoch, now)
	}
	watched := len(w.f.Watched())
	_, _, gaveUp := w.f.GaveUp()
	w.mu.Unlock()
	w.reportGiveUp()
	if !named && watched == 0 && !gaveUp {
		w.markerMu.Lock()
		if !w.closed {
			w.unmarkLocked()
		}
		w.markerMu.Unlock()
	}
}

// mark writes the held marker (watchdog_marker.go), unless it is there or
// stop decided. One that cannot be written is logged, not fatal: a disk
// error should not reset the machine; only a quick restart after a crash
// would then escape the reset. The next state applied tries again.
func (w *nodeWatchdog) mark() {
	w.markerMu.Lock()
	defer w.markerMu.Unlock()
	if w.marked || w.closed {
		return
	}
	w.mayBe = true // a failed write may have left it
	if err := writeHeldMarker(w.marker); err != nil {
		w.log.Error("cannot write the watchdog's held marker: an agent restarted within the timeout after a crash would not let the watchdog reset this machine", "err", err)
		return
	}
	w.marked = true
}

// unmarkLocked removes the held marker if it may be there, and says whether
// it is gone.
func (w *nodeWatchdog) unmarkLocked() bool {
	if !w.mayBe {
		return true
	}
	if err := os.Remove(w.marker); err != nil && !errors.Is(err, os.ErrNotExist) {
		w.log.Error("cannot remove the watchdog's held marker", "file", w.marker, "err", err)
		return false
	}
	w.marked, w.mayBe = false, false
	return true
}

// released is the manager giving a lease back (after the group stopped).
func (w *nodeWatchdog) released(group string, epoch uint64) {
	w.mu.Lock()
	w.f.Gone(group, epoch, false, w.clk.Now())
	w.mu.Unlock()
	w.reportGiveUp()
}

// stop is the agent's planned stop, after its groups stopped: the magic
// close when nothing is held, or the watchdog left armed (and unfed). The
// held marker goes just before the close and only then; from here on the
// states still applied (consensus runs until the agent's end) change it no
// more.
func (w *nodeWatchdog) stop() {
	if w == nil {
		return
	}
	w.halt()
	// markerMu before mu (applied never holds both): no state applied
	// between the feeder's decision and the marker's changes the marker.
	w.markerMu.Lock()
	defer w.markerMu.Unlock()
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return
	}
	w.stopped = true
	now := w.clk.Now()
	holding := w.f.Holding(now)
	a := w.f.Stop(now)
	_, _, gaveUp := w.f.GaveUp()
	w.mu.Unlock()
	w.closed = true
	w.reportGiveUp()
	if a != watchdog.Close {
		if !gaveUp {
			w.log.Error("stopping with leases held: the watchdog stays armed and this machine resets", "device", w.device, "groups", holding, "timeout", w.timeout)
			w.publish(events.Event{Kind: events.WatchdogExpiring, Subject: w.device,
				Message: fmt.Sprintf("agent stopped holding the leases of %v: watchdog %s stays armed, this machine resets within %v", holding, w.device, w.timeout)})
		}
		return
	}
	// The marker first: an agent that dies between the two leaves the
	// watchdog armed with no marker, which a quick restart feeds on, as
	// after any stop with nowayout (nothing is held); the other order
	// would leave a marker with the watchdog disarmed, and no agent of
	// this boot would start.
	if !w.unmarkLocked() {
		w.log.Error("the held marker cannot be removed, and no agent of this boot would start with it: the watchdog stays armed, this machine resets",
			"device", w.device, "file", w.marker, "timeout", w.timeout)
		w.publish(events.Event{Kind: events.WatchdogExpiring, Subject: w.device,
			Message: fmt.Sprintf("agent stopped unable to remove %s: watchdog %s stays armed, this machine resets within %v", w.marker, w.device, w.timeout)})
		return
	}
	w.disarm()
}

// crash ends the feeding as a killed agent's does: no close.
func (w *nodeWatchdog) crash() {
	if w != nil {
		w.halt()
	}
}

// halt ends the feeding loop, if it runs.
func (w *nodeWatchdog) halt() {
	if w.cancel != nil {
		w.cancel()
		<-w.done
		w.cancel = nil
	}
}

// watchdogLeases is the manager's lease source with its releases told to
// the watchdog.
type watchdogLeases struct {
	manager.LeaseSource
	w *nodeWatchdog
}

func (l watchdogLeases) Release(group string, epoch uint64) {
	l.LeaseSource.Release(group, epoch)
	l.w.released(group, epoch)
}

// managerLeases is what the manager renews and releases leases through.
func (w *nodeWatchdog) managerLeases(hb manager.LeaseSource) manager.LeaseSource {
	if w == nil {
		return hb
	}
	return watchdogLeases{hb, w}
}
