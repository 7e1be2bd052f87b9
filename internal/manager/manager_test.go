package manager

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"tandem/internal/clock"
	"tandem/internal/events"
	"tandem/internal/resource"
	"tandem/internal/state"
	"tandem/internal/vipguard"
)

// fakeLease is a LeaseSource whose lease the test sets.
type fakeLease struct {
	mu       sync.Mutex
	epoch    uint64
	until    time.Time
	released []uint64
	calls    int
}

func (f *fakeLease) Lease(string) (uint64, time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.epoch, f.until, time.Now().Before(f.until)
}

func (f *fakeLease) Release(_ string, e uint64) {
	f.mu.Lock()
	f.released = append(f.released, e)
	f.mu.Unlock()
}

func (f *fakeLease) set(epoch uint64, d time.Duration) {
	f.mu.Lock()
	f.epoch, f.until = epoch, time.Now().Add(d)
	f.mu.Unlock()
}

type fakeReporter struct {
	mu   sync.Mutex
	cmds []state.Command
	lose int // the next tries whose answers are lost (they did commit)
}

func (f *fakeReporter) Propose(_ context.Context, c state.Command) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = append(f.cmds, c)
	if f.lose > 0 {
		f.lose--
		return context.DeadlineExceeded
	}
	return nil
}

func (f *fakeReporter) get() []state.Command {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]state.Command(nil), f.cmds...)
}

type rig struct {
	m       *Manager
	lease   *fakeLease
	rep     *fakeReporter
	rec     *events.Recorder
	guard   *vipguard.Mem
	agents  []*resource.Mem
	orderMu *sync.Mutex
	order   *[]string
	cancel  context.CancelFunc
}

func starts(a *resource.Mem) (n int) {
	a.Set(func(m *resource.Mem) { n = m.Starts })
	return n
}

var vip = netip.MustParseAddr("10.9.0.50")

func newRig(t *testing.T, maxRestarts int) *rig { return newRigWith(t, maxRestarts, nil) }

// newRigWith is newRig with the manager's Config changed by set first.
func newRigWith(t *testing.T, maxRestarts int, set func(*Config)) *rig {
	mu := &sync.Mutex{}
	order := []string{}
	r := &rig{orderMu: mu, lease: &fakeLease{}, rep: &fakeReporter{}, rec: &events.Recorder{}, guard: vipguard.NewMem(clock.Real{}), order: &order}
	r.guard.Install([]netip.Prefix{netip.PrefixFrom(vip, 24)})
	g := Group{Name: "web", MaxRestarts: maxRestarts, FailureTimeout: time.Minute}
	for _, name := range []string{"ip", "app", "check"} {
		name := name
		a := &resource.Mem{OnChange: func(on bool) {
			mu.Lock()
			order = append(order, map[bool]string{true: "start ", false: "stop "}[on]+name)
			mu.Unlock()
		}}
		r.agents = append(r.agents, a)
		res := Resource{Name: name, Kind: "mem", Agent: a, MonitorInterval: 20 * time.Millisecond,
			StartTimeout: 200 * time.Millisecond, StopTimeout: 200 * time.Millisecond, MonitorTimeout: 100 * time.Millisecond}
		if name == "ip" {
			res.VIP, res.Kind = vip, "vip"
		}
		g.Resources = append(g.Resources, res)
	}
	cfg := Config{Node: "a", Groups: []Group{g}, Lease: r.lease, Guard: r.guard, Reporter: r.rep,
		Clock: clock.Real{}, Events: r.rec, Margin: 5 * time.Millisecond}
	if set != nil {
		set(&cfg)
	}
	r.m = New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.m.Run(ctx)
	began := time.Now()
	t.Cleanup(func() {
		cancel()
		r.m.Wait()
		// Whatever the test did, a worker that looks at its lease tens of
		// thousands of times a second is spinning (as it did in
		// maintenance): with the agent on one processor that starves the
		// heartbeats. A busy but sane worker stays far below.
		r.lease.mu.Lock()
		n := r.lease.calls
		r.lease.mu.Unlock()
		if rate := float64(n) / time.Since(began).Seconds(); n > 1000 && rate > 20000 {
			t.Errorf("the worker looked at its lease %d times in %v (%.0f/s): it spins", n, time.Since(began).Round(time.Millisecond), rate)
		}
	})
	return r
}

func (r *rig) orderSnapshot() []string {
	r.orderMu.Lock()
	defer r.orderMu.Unlock()
	return append([]string(nil), (*r.order)...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func holderState(holder string, epoch uint64) *state.State {
	st := state.New()
	st.Groups["web"] = &state.Group{Holder: holder, Epoch: epoch}
	return st
}

func phase(m *Manager) string { return m.Status()[0].Phase }

func TestStartsInOrderOnlyWithLease(t *testing.T) {
	r := newRig(t, 3)
	r.m.SetState(holderState("a", 1))
	time.Sleep(30 * time.Millisecond) // no lease yet: nothing may start
	if len(r.orderSnapshot()) != 0 {
		t.Fatalf("started without a lease: %v", r.orderSnapshot())
	}
	r.lease.set(1, time.Hour)
	r.m.LeaseChanged("web")
	waitFor(t, "running", func() bool { return phase(r.m) == PhaseRunning })
	if got := r.orderSnapshot(); len(got) != 3 || got[0] != "start ip" || got[2] != "start check" {
		t.Fatalf("start order %v", got)
	}
	if left, _ := r.guard.Remaining(vip); left < 30*time.Minute {
		t.Fatalf("VIP not allowed in the guard for the lease: %v", left)
	}
	if len(r.rec.OfKind(events.GroupStarted)) != 1 {
		t.Fatal("no group_started event")
	}
}

// The first look at each resource is a probe (resource.IsProbe), the
// later ones monitors: an exec probe skips the health check, which may go
// through a VIP the guard still silences.
func TestProbesAreMarked(t *testing.T) {
	r := newRig(t, 3)
	r.m.SetState(holderState("a", 1))
	r.lease.set(1, time.Hour)
	r.m.LeaseChanged("web")
	waitFor(t, "running", func() bool { return phase(r.m) == PhaseRunning })
	for i, a := range r.agents {
		waitFor(t, "a monitor", func() bool {
			var n int
			a.Set(func(m *resource.Mem) { n = m.Monitors })
			return n > 0
		})
		var probes int
		a.Set(func(m *resource.Mem) { probes = m.Probes })
		if probes != 1 {
			t.Errorf("resource %d: %d probes, want 1", i, probes)
		}
	}
}

// Every start runs under the group's epoch (resource.EpochOf): a volume is
// promoted at it.
func TestStartsCarryTheEpoch(t *testing.T) {
	r := newRig(t, 3)
	r.m.SetState(holderState("a", 7))
	r.lease.set(7, time.Hour)
	r.m.LeaseChanged("web")
	waitFor(t, "running", func() bool { return phase(r.m) == PhaseRunning })
	for i, a := range r.agents {
		var e uint64
		a.Set(func(m *resource.Mem) { e = m.StartEpoch })
		if e != 7 {
			t.Errorf("resource %d started under epoch %d, want 7", i, e)
		}
	}
}

func TestMoveAwayStopsInReverseAndReleases(t *testing.T) {
	r := newRig(t, 3)
	r.lease.set(1, time.Hour)
	r.m.SetState(holderState("a", 1))
	waitFor(t, "running", func() bool { return phase(r.m) == PhaseRunning })
	r.m.SetState(holderState("b", 2))
	waitFor(t, "stopped", func() bool { return phase(r.m) == PhaseStopped })
	got := r.orderSnapshot()[3:]
	if len(got) != 3 || got[0] != "stop check" || got[2] != "stop ip" {
		t.Fatalf("stop order %v", got)
	}
	waitFor(t, "release", func() bool {
		r.lease.mu.Lock()
		defer r.lease.mu.Unlock()
		return len(r.lease.released) == 1 && r.lease.released[0] == 1
	})
}

// stopNotes closes stopped once its stop has succeeded.
type stopNotes struct {
	*resource.Mem
	stopped chan struct{}
	once    sync.Once
}

func (s *stopNotes) Stop(ctx context.Context) error {
	err := s.Mem.Stop(ctx)
	if err == nil {
		s.once.Do(func() { close(s.stopped) })
	}
	return err
}

// stopsAfter stops only once first has closed.
type stopsAfter struct {
	*resource.Mem
	first <-chan struct{}
}

func (s stopsAfter) Stop(ctx context.Context) error {
	select {
	case <-s.first:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Mem.Stop(ctx)
}

func TestLeaseLostFencesVIPFirst(t *testing.T) {
	// The last resource's stop waits for the VIP's: it completes only if
	// the VIP's stop was issued without waiting for the others (which
	// resource the agents record first is otherwise the scheduler's
	// choice, and a loaded machine chose the other one).
	ipStopped := make(chan struct{})
	r := newRigWith(t, 3, func(c *Config) {
		rs := c.Groups[0].Resources
		rs[0].Agent = &stopNotes{Mem: rs[0].Agent.(*resource.Mem), stopped: ipStopped}
		rs[2].Agent = stopsAfter{Mem: rs[2].Agent.(*resource.Mem), first: ipStopped}
	})
	r.lease.set(1, 300*time.Millisecond)
	r.m.SetState(holderState("a", 1))
	waitFor(t, "running", func() bool { return phase(r.m) == PhaseRunning })
	// No renewal: the worker must stop the group by itself before the end,
	// VIP first; the other resources stop in reverse order after.
	waitFor(t, "stopped", func() bool { return phase(r.m) == PhaseStopped })
	got := r.orderSnapshot()[3:]
	if len(got) != 3 || got[0] != "stop ip" || got[1] != "stop check" || got[2] != "stop app" {
		t.Fatalf("fence order %v", got)
	}
	if left, _ := r.guard.Remaining(vip); left != 0 {
		t.Fatalf("VIP still allowed in the guard: %v", left)
	}
	if len(r.rec.OfKind(events.LeaseLost)) == 0 {
		t.Fatal("no lease_lost event")
	}
}

func TestRestartInPlaceThenGiveUp(t *testing.T) {
	r := newRig(t, 2)
	r.lease.set(1, time.Hour)
	r.m.SetState(holderState("a", 1))
	waitFor(t, "running", func() bool { return phase(r.m) == PhaseRunning })
	r.agents[1].Set(func(m *resource.Mem) { m.MonitorErr = errors.New("app crashed") })
	// Started again: app, then what follows it (check's start comes after
	// app's: waiting for app's alone raced with it, CI beside stress-ng).
	waitFor(t, "first restart", func() bool { return starts(r.agents[1]) >= 2 && starts(r.agents[2]) >= 2 })
	// ip was not restarted: only app and what follows it.
	if starts(r.agents[0]) != 1 {
		t.Fatalf("restart scope: ip %d check %d", starts(r.agents[0]), starts(r.agents[2]))
	}
	waitFor(t, "give up", func() bool { return phase(r.m) == PhaseFailed })
	waitFor(t, "gave-up report", func() bool {
		for _, c := range r.rep.get() {
			if c.Op == state.OpFailure && c.GaveUp && c.Epoch == 1 {
				return true
			}
		}
		return false
	})
	if r.agents[0].Running() || r.agents[1].Running() {
		t.Fatal("group not stopped after giving up")
	}
	// It stays failed at this epoch; a new epoch (moved back later) retries.
	time.Sleep(50 * time.Millisecond)
	if phase(r.m) != PhaseFailed {
		t.Fatalf("phase %s", phase(r.m))
	}
}

func TestHungStartIsKilledAtTimeout(t *testing.T) {
	r := newRig(t, 3)
	r.agents[1].Set(func(m *resource.Mem) { m.HangStart = true })
	r.lease.set(1, time.Hour)
	r.m.SetState(holderState("a", 1))
	waitFor(t, "failed", func() bool { return phase(r.m) == PhaseFailed })
	st := r.m.Status()[0]
	if st.LastError == "" {
		t.Fatal("no error recorded")
	}
	fails := r.rec.OfKind(events.ResFailure)
	if len(fails) == 0 || fails[0].Subject != "app" {
		t.Fatalf("failure events %+v", fails)
	}
}

// inMaintenance runs the group on this node ("a", epoch 1), then applies
// a cluster-maintenance state with the group placed on holder at epoch.
func inMaintenance(t *testing.T, holder string, epoch uint64) *rig {
	r := newRig(t, 3)
	r.lease.set(1, time.Hour)
	r.m.SetState(holderState("a", 1))
	waitFor(t, "running", func() bool { return phase(r.m) == PhaseRunning })
	st := holderState(holder, epoch)
	st.Maintenance = true
	r.m.SetState(st)
	waitFor(t, "unmanaged", func() bool { return phase(r.m) == PhaseUnmanaged })
	return r
}

func TestMaintenanceLeavesThingsRunning(t *testing.T) {
	r := inMaintenance(t, "b", 2)
	r.agents[1].Set(func(m *resource.Mem) { m.MonitorErr = errors.New("would fail") })
	time.Sleep(60 * time.Millisecond)
	if !r.agents[0].Running() || starts(r.agents[1]) != 1 {
		t.Fatal("maintenance must not stop, restart or monitor")
	}
}

// TestMaintenanceDoesNotSpin: unmanaged resources are not monitored, so
// their monitor times stay in the past; the worker must not take them for
// due work and wake again at once. (It did, burning a processor; with one
// processor the agent stopped sending heartbeats.)
func TestMaintenanceDoesNotSpin(t *testing.T) {
	r := inMaintenance(t, "a", 1)
	time.Sleep(300 * time.Millisecond) // monitors (interval 20 ms) fall due
	r.lease.mu.Lock()
	before := r.lease.calls
	r.lease.mu.Unlock()
	time.Sleep(200 * time.Millisecond)
	r.lease.mu.Lock()
	n := r.lease.calls - before
	r.lease.mu.Unlock()
	if n > 20 {
		t.Fatalf("the worker looked at its lease %d times in 200 ms of maintenance: it spins", n)
	}
}

func TestResourceStoppedDuringMaintenanceIsRecovered(t *testing.T) {
	r := inMaintenance(t, "a", 1)
	r.agents[1].Stop(context.Background()) // an admin stops the app by hand
	r.m.SetState(holderState("a", 1))
	waitFor(t, "app restarted", func() bool { return r.agents[1].Running() && phase(r.m) == PhaseRunning })
	if starts := r.rec.OfKind(events.ResStart); len(starts) != 4 || starts[3].Subject != "app" {
		t.Fatalf("the app found stopped after maintenance was not started again (and recorded): %+v", starts)
	}
}

// Seen item 3: the kernel guard dropped packets to a healthy active node
// and nothing said so. Drops while this node holds the lease are counted
// and published; drops on a node that does not hold it only counted.
func TestGuardDropsOnTheActiveNodeAreReported(t *testing.T) {
	r := newRig(t, 3)
	r.lease.set(1, time.Hour)
	r.m.SetState(holderState("a", 1))
	waitFor(t, "running", func() bool { return phase(r.m) == PhaseRunning })
	time.Sleep(guardPoll + 200*time.Millisecond) // one poll with the guard open
	r.guard.Revoke(vip)                          // the kernel's element lapsed behind our back
	r.guard.Drop(vip, 3)
	deadline := time.Now().Add(3 * guardPoll)
	for len(r.rec.OfKind(events.GuardDrops)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no guard_drops event; status %+v", r.m.Status()[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := r.m.Status()[0]; st.GuardDropped != 3 {
		t.Fatalf("status counts %d dropped packets, want 3", st.GuardDropped)
	}
}

// A report whose answer was lost is retried under the same ID, so the
// cluster answers the retry with the first outcome instead of applying it
// twice (a failure would count twice towards max_restarts). (A newer phase
// report may replace an older one in the queue: that is a new report, with
// its own ID.)
func TestRetriedReportKeepsItsID(t *testing.T) {
	r := newRig(t, 2)
	r.rep.mu.Lock()
	r.rep.lose = 3
	r.rep.mu.Unlock()
	r.lease.set(1, time.Hour)
	r.m.SetState(holderState("a", 1))
	same := func(a, b state.Command) bool {
		return a.Op == b.Op && a.Phase == b.Phase && a.Epoch == b.Epoch && a.Reason == b.Reason
	}
	retried := func() (n int) {
		got := r.rep.get()
		for i := 1; i < len(got); i++ {
			if same(got[i-1], got[i]) {
				n++
			}
		}
		return n
	}
	waitFor(t, "a report tried again after its answer was lost", func() bool { return retried() > 0 })
	got := r.rep.get()
	for i, c := range got {
		if c.ID == "" {
			t.Fatalf("report %d (%s) has no ID", i, c.Op)
		}
		if i > 0 && same(got[i-1], c) != (got[i-1].ID == c.ID) {
			t.Fatalf("tries %d and %d (%s %s, %s %s): ids %q and %q: a retry must keep its ID, a new report must not",
				i-1, i, got[i-1].Op, got[i-1].Phase, c.Op, c.Phase, got[i-1].ID, c.ID)
		}
	}
}
