package watchdog

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"tandem/internal/clock"
)

// refLease is the dumb reference's view of one lease (a group at an
// epoch): held until until, unless it went or lapsed.
type refLease struct {
	group    string
	epoch    uint64
	until    time.Time
	gone     bool
	lapsed   bool
	lapsedAt time.Time
}

// feederRun drives a Feeder and the in-memory twin on a fake clock with one
// random interleaving, and checks every action against a reference that
// only keeps the leases' history.
type feederRun struct {
	t       *testing.T
	rnd     *rand.Rand
	clk     *clock.Fake
	f       *Feeder
	wd      *Memory
	timeout time.Duration
	lease   time.Duration
	log     []string

	open, closed, stopped, hung bool
	lastFeed, lastTick          time.Time
	refs                        []*refLease
	epoch                       map[string]uint64 // the group's current claim (0: none)
	next                        uint64
	connected                   bool
}

func (r *feederRun) failf(format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf("%s\nsteps:\n%s", fmt.Sprintf(format, args...), strings.Join(r.log, "\n"))
}

func (r *feederRun) now() time.Time { return r.clk.Now() }

func (r *feederRun) note(format string, args ...any) {
	r.log = append(r.log, fmt.Sprintf("%6dms ", r.now().Sub(time.Unix(0, 0)).Milliseconds())+fmt.Sprintf(format, args...))
}

// settle marks the leases that ran out by now without going.
func (r *feederRun) settle() {
	for _, l := range r.refs {
		if !l.gone && !l.lapsed && !r.now().Before(l.until) {
			l.lapsed, l.lapsedAt = true, l.until
		}
	}
}

func (r *feederRun) ref(group string, epoch uint64) *refLease {
	for _, l := range r.refs {
		if l.group == group && l.epoch == epoch {
			return l
		}
	}
	return nil
}

func (r *feederRun) held() bool {
	for _, l := range r.refs {
		if !l.gone && !l.lapsed && r.now().Before(l.until) {
			return true
		}
	}
	return false
}

func (r *feederRun) firstLapse() (time.Time, bool) {
	var at time.Time
	for _, l := range r.refs {
		if l.lapsed && (at.IsZero() || l.lapsedAt.Before(at)) {
			at = l.lapsedAt
		}
	}
	return at, !at.IsZero()
}

func (r *feederRun) do(a Action, from string) {
	r.note("%s -> %s", from, a)
	switch a {
	case Open:
		if r.open {
			r.failf("opened twice")
		}
		if _, err := r.wd.Open(r.timeout); err != nil {
			r.failf("open: %v", err)
		}
		r.open, r.lastFeed = true, r.now()
	case Feed:
		r.settle()
		if at, ok := r.firstLapse(); ok {
			r.failf("fed at %v after a lease lapsed at %v", r.now(), at)
		}
		if r.hung || r.stopped {
			r.failf("fed by a hung or stopped agent")
		}
		if err := r.wd.Feed(); err != nil {
			r.failf("feed: %v", err)
		}
		r.lastFeed = r.now()
	case Close:
		r.settle()
		if from != "stop" {
			r.failf("closed by %s, not a planned stop", from)
		}
		if _, ok := r.firstLapse(); ok || r.held() {
			r.failf("closed while a lease is held or lapsed")
		}
		if err := r.wd.Close(); err != nil {
			r.failf("close: %v", err)
		}
		r.closed = true
	}
}

func (r *feederRun) step() {
	r.clk.Advance(time.Duration(r.rnd.Int64N(int64(r.lease / 2))))
	r.settle()
	if r.held() && (!r.open || r.closed) {
		r.failf("a lease is held and the watchdog is not armed")
	}
	if r.hung || r.stopped {
		return
	}
	groups := []string{"db", "web"}
	g := groups[r.rnd.IntN(len(groups))]
	switch k := r.rnd.IntN(100); {
	case k < 3:
		r.connected = !r.connected
		r.note("connected=%v", r.connected)
	case k < 30: // a claim renews its lease (if the quorum answers)
		e := r.epoch[g]
		if e == 0 {
			r.next++
			e = r.next
			r.epoch[g] = e
			r.note("claim %s@%d", g, e)
		}
		if !r.connected {
			return
		}
		until := r.now().Add(r.lease)
		l := r.ref(g, e)
		if l == nil {
			l = &refLease{group: g, epoch: e}
			r.refs = append(r.refs, l)
			for _, o := range r.refs { // a newer epoch ends the older ones
				if o.group == g && o.epoch < e && !o.gone && !o.lapsed {
					o.gone = true
				}
			}
		}
		if !l.lapsed {
			l.until = until
		}
		r.note("held %s@%d until +%v", g, e, r.lease)
		r.f.Held(r.now(), g, e, until)
	case k < 36: // the claim goes: released, moved, or taken over
		e := r.epoch[g]
		if e == 0 {
			return
		}
		r.epoch[g] = 0
		takenOver := r.rnd.IntN(4) == 0
		if l := r.ref(g, e); l != nil && !l.lapsed && !l.gone {
			l.gone = true
			if takenOver {
				l.lapsed, l.lapsedAt = true, r.now()
			}
		}
		r.note("gone %s@%d takenOver=%v", g, e, takenOver)
		r.f.Gone(g, e, takenOver, r.now())
	case k < 40: // a report overtaken by the claim's end: stale
		if r.next == 0 || r.epoch[g] != 0 {
			return
		}
		r.note("stale held %s@%d", g, r.next)
		if l := r.ref(g, r.next); l == nil || l.gone || l.lapsed {
			r.f.Held(r.now(), g, r.next, r.now().Add(r.lease))
		}
	case k < 41:
		r.hung = true
		r.note("agent hangs")
	case k < 43:
		r.stopped = true
		r.note("planned stop")
		r.do(r.f.Stop(r.now()), "stop")
	default:
		r.lastTick = r.now()
		r.do(r.f.Tick(r.now()), "tick")
	}
}

// TestFeederProperties runs random interleavings of lease reports, claims
// that go, takeovers, ticks, hangs and planned stops against the in-memory
// twin and checks: the watchdog is armed whenever a lease is held; no feed
// comes at or after a lease's lapse (or a takeover); it is closed only on a
// planned stop with no lease held or lapsed; the machine resets within the
// timeout of a lapse; and a live agent whose leases never lapse, fed every
// quarter timeout, is never reset.
func TestFeederProperties(t *testing.T) {
	const timeout, lease = 4 * time.Second, time.Second
	for seed := uint64(0); seed < 3000; seed++ {
		clk := clock.NewFake(time.Unix(0, 0))
		r := &feederRun{t: t, rnd: rand.New(rand.NewPCG(seed, 7)), clk: clk, f: NewFeeder(),
			wd: &Memory{Clock: clk}, timeout: timeout, lease: lease, epoch: map[string]uint64{}, connected: true}
		r.do(r.f.Start(), "start")
		for range 300 {
			r.step()
			// The agent ticks at least every quarter timeout while it runs.
			if !r.hung && !r.stopped && r.now().Sub(r.lastTick) >= timeout/4-lease/2 {
				r.lastTick = r.now()
				r.do(r.f.Tick(r.now()), "tick")
			}
		}
		r.settle()
		lapse, lapsed := r.firstLapse()
		end := r.now()
		resetAt, reset := r.wd.Reset()
		switch {
		case lapsed:
			// Fed last before the lapse: reset within a timeout of it.
			r.clk.Advance(max(0, lapse.Add(timeout).Sub(r.now())))
			at, ok := r.wd.Reset()
			if !ok || at.After(lapse.Add(timeout)) {
				r.failf("seed %d: a lease lapsed at %v; reset=%v at %v, want by %v", seed, lapse, ok, at, lapse.Add(timeout))
			}
		case r.hung, r.stopped && !r.closed:
			r.clk.Advance(timeout)
			if at, ok := r.wd.Reset(); !ok || at.After(r.lastFeed.Add(timeout)) {
				r.failf("seed %d: hung or stopped armed at %v; reset=%v at %v", seed, end, ok, at)
			}
		case reset:
			r.failf("seed %d: a live agent whose leases never lapsed was reset at %v", seed, resetAt)
		}
	}
}

func TestFeederGivesUpAtALapseAndNotAtARelease(t *testing.T) {
	t0 := time.Unix(100, 0)
	f := NewFeeder()
	if f.Tick(t0) != Nothing {
		t.Fatal("fed before the start")
	}
	if a := f.Start(); a != Open {
		t.Fatalf("start: %v, want open", a)
	}
	if a := f.Start(); a != Nothing {
		t.Fatalf("second start: %v", a)
	}
	if f.Tick(t0) != Feed {
		t.Fatal("no feed with no lease held: a healthy agent keeps feeding")
	}
	f.Held(t0, "db", 3, t0.Add(time.Second))
	f.Held(t0, "web", 4, t0.Add(time.Second))
	// db is handed over: given back before its end.
	f.Gone("db", 3, false, t0.Add(500*time.Millisecond))
	f.Held(t0.Add(800*time.Millisecond), "db", 3, t0.Add(2*time.Second)) // overtaken by the release
	if got := f.Holding(t0.Add(900 * time.Millisecond)); len(got) != 1 || got[0] != "web" {
		t.Fatalf("holding %v, want [web]", got)
	}
	if f.Tick(t0.Add(999*time.Millisecond)) != Feed {
		t.Fatal("no feed before the end of web's lease")
	}
	if f.Tick(t0.Add(time.Second)) != Nothing {
		t.Fatal("fed at the end of web's lease, not renewed")
	}
	f.Held(t0.Add(1100*time.Millisecond), "web", 4, t0.Add(3*time.Second)) // too late
	if f.Tick(t0.Add(1200*time.Millisecond)) != Nothing {
		t.Fatal("a late renewal undid the lapse")
	}
	why, at, ok := f.GaveUp()
	if !ok || !at.Equal(t0.Add(time.Second)) || !strings.Contains(why, "group web (epoch 4) ran out") {
		t.Fatalf("gave up: %v %v %q", ok, at, why)
	}
	if a := f.Stop(t0.Add(2 * time.Second)); a != Nothing {
		t.Fatalf("stop after a lapse: %v, want the watchdog left armed", a)
	}
}

func TestFeederTakeoverGivesUp(t *testing.T) {
	t0 := time.Unix(100, 0)
	f := NewFeeder()
	f.Start()
	f.Held(t0, "db", 3, t0.Add(time.Second))
	f.Gone("db", 3, true, t0.Add(100*time.Millisecond))
	if f.Tick(t0.Add(200*time.Millisecond)) != Nothing {
		t.Fatal("fed after a takeover from this node")
	}
	if why, _, _ := f.GaveUp(); !strings.Contains(why, "taken over") {
		t.Fatalf("why: %q", why)
	}
}

func TestFeederPlannedStopClosesOnlyWithNoLease(t *testing.T) {
	t0 := time.Unix(100, 0)
	f := NewFeeder()
	if f.Stop(t0) != Nothing {
		t.Fatal("closed a watchdog it never opened")
	}
	f.Start()
	f.Held(t0, "db", 1, t0.Add(time.Second))
	if a := f.Stop(t0.Add(100 * time.Millisecond)); a != Nothing {
		t.Fatalf("stop with a lease held: %v", a)
	}
	if f.Tick(t0.Add(200*time.Millisecond)) != Nothing {
		t.Fatal("fed after the stop")
	}

	f = NewFeeder()
	f.Start()
	f.Held(t0, "db", 1, t0.Add(time.Second))
	f.Gone("db", 1, false, t0.Add(100*time.Millisecond))
	if a := f.Stop(t0.Add(200 * time.Millisecond)); a != Close {
		t.Fatalf("stop after the release: %v, want close", a)
	}
	if a := f.Stop(t0.Add(300 * time.Millisecond)); a != Nothing {
		t.Fatalf("second stop: %v", a)
	}
}

func TestFeederNewerEpochEndsTheOlder(t *testing.T) {
	t0 := time.Unix(100, 0)
	f := NewFeeder()
	f.Start()
	f.Held(t0, "db", 1, t0.Add(time.Second))
	// The claim at epoch 1 went unreported and its lease ran out; then the
	// group came back at epoch 2.
	f.Held(t0.Add(2*time.Second), "db", 2, t0.Add(3*time.Second))
	if f.Tick(t0.Add(2*time.Second)) != Nothing {
		t.Fatal("an older lease that lapsed unreported was forgotten")
	}
}
