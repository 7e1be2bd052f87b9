package lifecycle

import (
	"fmt"
	"testing"
	"time"
)

// rig drives one machine by hand: every Run is answered by the test.
type rig struct {
	t   *testing.T
	m   *Machine
	now time.Time
	// pending runs by resource name and op, e.g. "vip start"
	pending map[string]Run
	log     []Action
}

func newRig(t *testing.T, names ...string) *rig {
	r := &rig{t: t, now: time.Unix(1000, 0), pending: map[string]Run{}}
	cfg := Config{Node: me, Group: "web", MaxRestarts: 1, FailureTimeout: time.Minute, Margin: 10 * time.Millisecond}
	for _, n := range names {
		cfg.Resources = append(cfg.Resources, Resource{Name: n, VIP: n == "vip", MonitorInterval: time.Second,
			StartTimeout: 20 * time.Second, StopTimeout: 20 * time.Second, MonitorTimeout: 10 * time.Second})
	}
	r.m = New(cfg, r.now)
	r.take()
	return r
}

func (r *rig) take() []Action {
	acts := r.m.Actions()
	for _, a := range acts {
		if run, ok := a.(Run); ok {
			r.pending[fmt.Sprintf("%s %v", r.m.cfg.Resources[run.Res].Name, run.Op)] = run
		}
		if c, ok := a.(Cancel); ok {
			for k, run := range r.pending {
				if run.ID == c.ID && run.Op != OpStart {
					delete(r.pending, k)
				}
			}
		}
	}
	r.log = append(r.log, acts...)
	return acts
}

// answer completes the pending operation named like "vip start".
func (r *rig) answer(name string, out Outcome) []Action {
	r.t.Helper()
	run, ok := r.pending[name]
	if !ok {
		r.t.Fatalf("no %q pending (pending: %v)", name, r.pending)
	}
	delete(r.pending, name)
	r.m.Done(r.now, Result{ID: run.ID, Outcome: out, Err: map[bool]string{true: "failed"}[out == Failed]})
	return r.take()
}

func (r *rig) wantPending(names ...string) {
	r.t.Helper()
	if len(r.pending) != len(names) {
		r.t.Fatalf("pending %v, want %v", keys(r.pending), names)
	}
	for _, n := range names {
		if _, ok := r.pending[n]; !ok {
			r.t.Fatalf("pending %v, want %v", keys(r.pending), names)
		}
	}
}

func keys(m map[string]Run) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func (r *rig) view(v View) []Action { r.m.SetView(r.now, v); return r.take() }
func (r *rig) lease(epoch uint64, d time.Duration) []Action {
	r.m.SetLease(r.now, Lease{Epoch: epoch, Until: r.now.Add(d)})
	return r.take()
}
func (r *rig) advance(d time.Duration) []Action {
	r.now = r.now.Add(d)
	r.m.Tick(r.now)
	return r.take()
}

// hold lets d pass while the lease at epoch is renewed every 60 ms.
func (r *rig) hold(epoch uint64, d time.Duration) {
	for end := r.now.Add(d); r.now.Before(end); {
		r.lease(epoch, 180*time.Millisecond)
		r.advance(60 * time.Millisecond)
	}
	r.lease(epoch, 180*time.Millisecond)
}

func (r *rig) phase(want Phase) {
	r.t.Helper()
	if got := r.m.Status().Phase; got != want {
		r.t.Fatalf("phase %s, want %s (status %+v)", got, want, r.m.Status())
	}
}

func has[T Action](acts []Action) bool {
	for _, a := range acts {
		if _, ok := a.(T); ok {
			return true
		}
	}
	return false
}

// startAll brings a fresh rig to running at epoch 1.
func (r *rig) startAll() {
	r.t.Helper()
	for _, res := range r.m.cfg.Resources {
		r.answer(res.Name+" probe", NotRunning)
	}
	r.view(View{Known: true, Holder: me, Epoch: 1})
	r.lease(1, 180*time.Millisecond)
	for _, res := range r.m.cfg.Resources {
		r.answer(res.Name+" start", OK)
	}
	r.phase(PhaseRunning)
}

// Seen item 1: a VIP fenced on a short lease loss came back when the lease
// did, at the same epoch, and status says running only once it has.
func TestLeaseRegainedAtSameEpochRestoresVIP(t *testing.T) {
	r := newRig(t, "vip", "http")
	r.startAll()
	acts := r.advance(175 * time.Millisecond) // past lease end - margin
	if !has[CloseGuard](acts) {
		t.Fatalf("lease lost: guard not closed first: %v", acts)
	}
	r.wantPending("vip stop", "http stop")
	r.phase(PhaseStopping)
	r.answer("vip stop", OK)
	r.lease(1, 180*time.Millisecond) // renewed again, same epoch
	r.phase(PhaseStarting)
	r.answer("http stop", OK) // the stop already under way ends first
	r.wantPending("vip start")
	r.answer("vip start", OK)
	r.phase(PhaseStarting)
	r.answer("http start", OK)
	r.phase(PhaseRunning)
}

// Seen item 2: a start that is under way when the lease is lost is
// cancelled, and what it started is stopped when it returns.
func TestStartOutlivingLeaseIsStopped(t *testing.T) {
	r := newRig(t, "vip", "app")
	r.answer("vip probe", NotRunning)
	r.answer("app probe", NotRunning)
	r.view(View{Known: true, Holder: me, Epoch: 6})
	r.lease(6, 180*time.Millisecond)
	r.answer("vip start", OK)
	r.wantPending("app start")
	acts := r.view(View{Known: true, Holder: "b", Epoch: 7}) // moved on while app starts
	r.m.SetLease(r.now, Lease{})                             // and the claim is gone with it
	acts = append(acts, r.take()...)
	if !has[Cancel](acts) {
		t.Fatalf("start not cancelled: %v", acts)
	}
	r.wantPending("app start", "vip stop")
	r.answer("vip stop", OK)
	acts = r.answer("app start", OK) // it started after all
	r.wantPending("app stop")
	for _, a := range acts {
		if n, ok := a.(Note); ok && n.Kind == NoteGroupStarted {
			t.Fatalf("group reported started after its lease was gone: %v", acts)
		}
	}
	r.answer("app stop", OK)
	r.phase(PhaseStopped)
}

// (d): a planned move stops everything in reverse order, and only then
// releases the lease and reports the handover.
func TestHandoverStopsEverythingBeforeRelease(t *testing.T) {
	r := newRig(t, "vip", "db", "web")
	r.startAll()
	acts := r.view(View{Known: true, Holder: me, Epoch: 1, Handover: "b"})
	if has[Release](acts) || has[CloseGuard](acts) {
		t.Fatalf("released or silenced before stopping: %v", acts)
	}
	r.wantPending("web stop")
	r.answer("web stop", OK)
	r.wantPending("db stop")
	r.lease(1, 180*time.Millisecond) // renewals go on while stopping
	acts = r.answer("db stop", OK)
	if has[CloseGuard](acts) || has[Release](acts) {
		t.Fatalf("a planned VIP stop leaves the guard to the agent (its announcements end first) and does not release yet: %v", acts)
	}
	r.wantPending("vip stop")
	acts = r.answer("vip stop", OK)
	var released, handed, closed bool
	for _, a := range acts {
		switch a := a.(type) {
		case CloseGuard:
			closed = true
		case Release:
			if !closed {
				t.Fatalf("released before the guard was closed: %v", acts)
			}
			released = a.Epoch == 1
		case Report:
			if a.Kind == ReportHandedOver {
				if !released {
					t.Fatalf("handover reported before the release: %v", acts)
				}
				handed = true
			}
		}
	}
	if !released || !handed {
		t.Fatalf("after the last stop: released %v handed over %v: %v", released, handed, acts)
	}
}

// Seen item 4 / (e): SIGTERM cancels a monitor in flight instead of
// waiting for it, stops the group and releases the lease.
func TestShutdownCancelsMonitors(t *testing.T) {
	r := newRig(t, "vip", "app")
	r.startAll()
	r.hold(1, time.Second)
	r.wantPending("vip monitor", "app monitor")
	acts := r.view(View{Known: true, Holder: me, Epoch: 1}) // nothing new
	r.m.Drain(r.now)
	acts = r.take()
	n := 0
	for _, a := range acts {
		if _, ok := a.(Cancel); ok {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("drain cancelled %d monitors, want 2: %v", n, acts)
	}
	r.wantPending()
	r.m.Shutdown(r.now)
	r.take()
	r.wantPending("app stop")
	r.answer("app stop", OK)
	acts = r.answer("vip stop", OK)
	if !has[Release](acts) || !r.m.Quiet() {
		t.Fatalf("shutdown did not end quiet with a release: %v", acts)
	}
}

// A failing monitor restarts the failed resource and those after it, in
// place; the phase is degraded meanwhile, and past max_restarts the node
// gives the group up.
func TestRestartInPlaceThenGiveUp(t *testing.T) {
	r := newRig(t, "vip", "db", "web")
	r.startAll()
	r.hold(1, time.Second)
	acts := r.answer("db monitor", Failed)
	r.phase(PhaseDegraded)
	if !has[Report](acts) {
		t.Fatalf("restart not reported: %v", acts)
	}
	r.wantPending("vip monitor", "web stop") // web's monitor is cancelled: it restarts
	r.answer("web stop", OK)
	r.answer("db stop", OK)
	r.answer("db start", OK)
	r.answer("web start", OK)
	r.answer("vip monitor", OK)
	r.phase(PhaseRunning)
	r.hold(1, time.Second)
	acts = r.answer("db monitor", Failed) // second failure: budget of 1 used
	gaveUp := false
	for _, a := range acts {
		if rep, ok := a.(Report); ok && rep.Kind == ReportFailure && rep.GaveUp {
			gaveUp = true
		}
	}
	if !gaveUp {
		t.Fatalf("second failure within the window did not give up: %v", acts)
	}
	r.answer("web stop", OK)
	r.answer("db stop", OK)
	r.answer("vip stop", OK)
	r.phase(PhaseFailed)
}

// Seen item 9: resources found running at agent start are kept while the
// lease is awaited, and adopted, not restarted.
func TestAdoptsWhatAPredecessorLeftRunning(t *testing.T) {
	r := newRig(t, "vip", "app")
	r.answer("vip probe", OK)
	r.answer("app probe", OK)
	r.view(View{Known: true, Holder: me, Epoch: 3})
	r.wantPending()
	r.advance(100 * time.Millisecond)
	r.wantPending() // nothing stopped while the lease is on its way
	acts := r.lease(3, 180*time.Millisecond)
	if !has[OpenGuard](acts) {
		t.Fatalf("adopted VIP not allowed to speak: %v", acts)
	}
	r.phase(PhaseRunning)
	r.wantPending()
}

// ... and stopped when this node does not hold the group.
func TestStopsWhatRunsWhereItShouldNot(t *testing.T) {
	r := newRig(t, "vip", "app")
	r.answer("vip probe", OK)
	r.answer("app probe", OK)
	r.view(View{Known: true, Holder: "b", Epoch: 4})
	r.wantPending("vip stop", "app stop")
	r.answer("vip stop", OK)
	r.answer("app stop", OK)
	r.phase(PhaseStopped)
}

// A probe finds a file system broken with a service still running on it
// (the agent restarted after its nbdfuse lost its server): to start the
// group here the service stops first, then the file system, and both
// start again in order. Stopping the file system under the running
// service failed as busy for a minute (a new user's walk).
func TestDirtyResourceBeneathARunningOneStopsItFirst(t *testing.T) {
	r := newRig(t, "data", "fs", "vip", "app")
	r.answer("data probe", NotRunning)
	r.answer("fs probe", Failed)
	r.answer("vip probe", NotRunning)
	r.answer("app probe", OK)
	r.view(View{Known: true, Holder: me, Epoch: 2})
	r.lease(2, 180*time.Millisecond)
	r.answer("data start", OK)
	r.wantPending("app stop")
	r.answer("app stop", OK)
	r.wantPending("fs stop")
	r.answer("fs stop", OK)
	for _, n := range []string{"fs", "vip", "app"} {
		r.wantPending(n + " start")
		r.answer(n+" start", OK)
	}
	r.phase(PhaseRunning)
}
