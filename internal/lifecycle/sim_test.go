package lifecycle

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"
)

// world is a model of one node for property tests: it runs the machine's
// operations against simulated resources with random durations, outcomes
// and hangs, feeds it view and lease changes, and checks the invariants
// after every call.
type world struct {
	t     testing.TB
	rng   *rand.Rand
	m     *Machine
	cfg   Config
	now   time.Time
	view  View
	lease Lease
	// the resources as they really are
	up []bool
	// operations in flight, by id
	ops map[uint64]*wop
	// lastObs is the last observation the machine accepted per resource:
	// "running" or something else.
	lastObs   []string
	guardOpen time.Time // zero: closed
	shutdown  bool
	released  map[uint64]bool
	handed    map[uint64]bool
	// failure injection
	failRate, hangRate float64
	trace              []string
	seed               uint64
}

type wop struct {
	run       Run
	doneAt    time.Time
	hang      bool
	cancelled bool
	fail      bool
	// abandoned: the machine gave up on a hung operation (it ignored its
	// deadline); a real agent that does that is broken, and nothing the
	// machine does can wait for it.
	abandoned bool
}

const me = "a"

func newWorld(t testing.TB, seed uint64, n int) *world {
	w := &world{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), now: time.Unix(1000, 0),
		up: make([]bool, n), ops: map[uint64]*wop{}, lastObs: make([]string, n),
		released: map[uint64]bool{}, handed: map[uint64]bool{}, seed: seed}
	w.cfg = Config{Node: me, Group: "g", MaxRestarts: 2, FailureTimeout: 10 * time.Second,
		Margin: 12 * time.Millisecond, OpGrace: 500 * time.Millisecond, StopRetry: 200 * time.Millisecond,
		AdoptWait: 300 * time.Millisecond}
	for i := 0; i < n; i++ {
		w.cfg.Resources = append(w.cfg.Resources, Resource{Name: fmt.Sprintf("r%d", i), VIP: i == 0,
			MonitorInterval: 100 * time.Millisecond, StartTimeout: 400 * time.Millisecond,
			StopTimeout: 400 * time.Millisecond, MonitorTimeout: 300 * time.Millisecond})
	}
	// Some resources run already (left by a predecessor agent).
	for i := range w.up {
		w.up[i] = w.rng.IntN(4) == 0
	}
	w.m = New(w.cfg, w.now)
	w.apply("new")
	return w
}

func (w *world) logf(format string, args ...any) {
	w.trace = append(w.trace, w.now.Format("05.000")+" "+fmt.Sprintf(format, args...))
}

func (w *world) fail(format string, args ...any) {
	w.t.Helper()
	tail := w.trace
	if len(tail) > 60 {
		tail = tail[len(tail)-60:]
	}
	w.t.Fatalf("seed %d: %s\ntrace (last %d):\n%s\nstatus: %+v", w.seed, fmt.Sprintf(format, args...), len(tail), strings.Join(tail, "\n"), w.m.Status())
}

func (w *world) leaseOK() bool {
	return w.lease.Epoch == w.view.Epoch && w.lease.Epoch != 0 && w.now.Before(w.lease.Until.Add(-w.cfg.Margin))
}

// leaseValid: some lease of this node is valid (whatever epoch: no other
// node holds one while it is).
func (w *world) leaseValid() bool {
	return w.lease.Epoch != 0 && w.now.Before(w.lease.Until.Add(-w.cfg.Margin))
}

func (w *world) wanted() bool {
	return w.view.Known && w.view.Holder == me && w.view.Handover == "" && !w.view.Maintenance && !w.shutdown && w.leaseOK()
}

// apply takes the machine's actions and checks every rule that concerns a
// single call.
func (w *world) apply(what string) {
	w.t.Helper()
	acts := w.m.Actions()
	var parts []string
	for _, a := range acts {
		parts = append(parts, fmt.Sprintf("%T%+v", a, a))
	}
	w.logf("%s -> %s  up=%v obs=%v", what, strings.Join(parts, " "), w.up, w.lastObs)
	for _, a := range acts {
		switch a := a.(type) {
		case Run:
			if a.Op == OpStart && !w.wanted() {
				w.fail("(b) start of r%d without a valid lease or not wanted (view %+v lease %+v)", a.Res, w.view, w.lease)
			}
			if a.Op == OpStart && w.cfg.Resources[a.Res].VIP && w.guardOpen.IsZero() {
				w.fail("VIP r%d started with the guard closed", a.Res)
			}
			if a.Op == OpStop && w.cfg.Resources[a.Res].VIP && !w.guardOpen.IsZero() && !w.leaseValid() {
				w.fail("VIP r%d stopped without a lease and the guard still open", a.Res)
			}
			if a.Op == OpMonitor && w.shutdown {
				w.fail("monitor started during shutdown")
			}
			for _, o := range w.ops {
				if o.run.Res == a.Res && !o.cancelled && !o.abandoned {
					w.fail("r%d: %v issued while %v (id %d) is in flight and not cancelled", a.Res, a.Op, o.run.Op, o.run.ID)
				}
			}
			o := &wop{run: a}
			d := time.Duration(w.rng.IntN(80)) * time.Millisecond
			if w.rng.IntN(10) == 0 {
				d += time.Duration(w.rng.IntN(300)) * time.Millisecond
			}
			o.doneAt = w.now.Add(d)
			o.hang = w.rng.Float64() < w.hangRate
			o.fail = w.rng.Float64() < w.failRate
			w.ops[a.ID] = o
		case Cancel:
			if o := w.ops[a.ID]; o != nil {
				o.cancelled = true
				o.abandoned = !w.tracked(a.ID)
				// a cancelled operation ends soon unless it hangs
				if !o.hang && o.doneAt.After(w.now.Add(5*time.Millisecond)) {
					o.doneAt = w.now.Add(time.Duration(w.rng.IntN(5)) * time.Millisecond)
				}
			}
		case OpenGuard:
			if !w.leaseValid() {
				w.fail("guard opened without holding a valid lease (view %+v lease %+v)", w.view, w.lease)
			}
			if !a.Until.Equal(w.lease.Until) {
				w.fail("guard opened until %v, lease ends %v", a.Until, w.lease.Until)
			}
			w.guardOpen = a.Until
		case CloseGuard:
			w.guardOpen = time.Time{}
		case Release:
			w.checkQuiet("release")
			if !w.guardOpen.IsZero() {
				w.fail("(d) lease released with the VIP guard still open")
			}
			w.released[a.Epoch] = true
		case Report:
			if a.Kind == ReportHandedOver {
				w.checkQuiet("handover")
				if !w.released[a.Epoch] {
					w.fail("(d) handover of epoch %d reported before its lease was released", a.Epoch)
				}
				w.handed[a.Epoch] = true
			}
		case Note:
		}
	}
	w.checkState()
}

// tracked: the machine still waits for operation id's answer.
func (w *world) tracked(id uint64) bool {
	for _, r := range w.m.res {
		if r.op != nil && r.op.id == id {
			return true
		}
	}
	return false
}

// checkQuiet: nothing runs and no operation is in flight.
func (w *world) checkQuiet(what string) {
	w.t.Helper()
	for i, u := range w.up {
		if u {
			w.fail("(d) %s while r%d still runs", what, i)
		}
	}
	for _, o := range w.ops {
		if (o.run.Op == OpStart || o.run.Op == OpStop) && !o.abandoned {
			w.fail("(d) %s while %v of r%d is in flight", what, o.run.Op, o.run.Res)
		}
	}
}

// checkState: the rules that hold between calls.
func (w *world) checkState() {
	w.t.Helper()
	st := w.m.Status()
	if st.Phase == PhaseRunning {
		for i, o := range w.lastObs {
			if o != "running" {
				w.fail("(a) phase running but r%d was last seen %q", i, o)
			}
		}
		if !w.wanted() {
			w.fail("phase running while the group is not wanted here")
		}
	}
	if !w.guardOpen.IsZero() && !w.leaseValid() {
		w.fail("guard open without a valid lease")
	}
	if !w.guardOpen.IsZero() && w.guardOpen.After(w.lease.Until) {
		w.fail("guard open beyond the lease")
	}
	if !w.leaseValid() && w.view.Known && !w.view.Maintenance && st.Phase != PhaseProbing {
		// Lost lease: every VIP that runs is being stopped (or its
		// cancelled start is awaited).
		for i, rc := range w.cfg.Resources {
			if !rc.VIP || !w.up[i] {
				continue
			}
			busy := false
			for _, o := range w.ops {
				busy = busy || (o.run.Res == i && (o.run.Op == OpStop || o.run.Op == OpStart))
			}
			// While resources found running at start await the
			// lease, the closed guard silences the VIP.
			adopting := w.now.Before(w.m.adoptUntil) && w.guardOpen.IsZero()
			if !busy && w.m.res[i].stopFails == 0 && !adopting {
				w.fail("lease lost but VIP r%d runs and no stop is under way", i)
			}
		}
	}
	if w.shutdown {
		for _, o := range w.ops {
			if o.run.Op == OpMonitor && !o.cancelled {
				w.fail("(e) monitor of r%d still wanted after shutdown", o.run.Res)
			}
		}
	}
}

// complete delivers the operation's result.
func (w *world) complete(id uint64) {
	o := w.ops[id]
	delete(w.ops, id)
	i := o.run.Res
	res := Result{ID: id}
	switch o.run.Op {
	case OpStart:
		if o.fail || o.cancelled && w.rng.IntN(2) == 0 {
			res.Outcome, res.Err = Failed, "boom"
			if w.rng.IntN(2) == 0 {
				w.up[i] = true // half started
			}
		} else {
			w.up[i] = true
		}
	case OpStop:
		if o.fail && w.rng.IntN(2) == 0 {
			res.Outcome, res.Err = Failed, "stop failed"
		} else {
			w.up[i] = false
		}
	case OpMonitor, OpProbe:
		switch {
		case o.cancelled:
			res.Outcome, res.Err = Failed, "cancelled"
		case o.fail:
			res.Outcome, res.Err = Failed, "unhealthy"
		case !w.up[i]:
			res.Outcome = NotRunning
		}
	}
	if !o.cancelled {
		switch {
		case o.run.Op == OpStop && res.Outcome != Failed:
			w.lastObs[i] = "stopped"
		case o.run.Op == OpStop:
			w.lastObs[i] = "stop failed"
		case res.Outcome == OK:
			w.lastObs[i] = "running"
		default:
			w.lastObs[i] = fmt.Sprintf("%v: %d %s", o.run.Op, res.Outcome, res.Err)
		}
	} else if o.run.Op == OpStart && !o.abandoned {
		// a cancelled start's outcome is still taken
		if res.Outcome == OK {
			w.lastObs[i] = "running"
		} else {
			w.lastObs[i] = "start failed"
		}
	}
	w.m.Done(w.now, res)
	w.apply(fmt.Sprintf("done %v r%d id=%d %d %s cancelled=%v", o.run.Op, i, id, res.Outcome, res.Err, o.cancelled))
}

// advance moves time to t, completing operations and firing deadlines in
// time order.
func (w *world) advance(to time.Time) {
	for {
		next := to
		var nextOp uint64
		for _, id := range sortedIDs(w.ops) {
			if o := w.ops[id]; !o.hang && o.doneAt.Before(next) {
				next, nextOp = o.doneAt, id
			}
		}
		if dl := w.m.NextDeadline(w.now); !dl.IsZero() && dl.Before(next) {
			next, nextOp = dl, 0
		}
		if next.Before(w.now) {
			next = w.now
		}
		w.now = next
		if nextOp != 0 {
			w.complete(nextOp)
			continue
		}
		if !w.now.Before(to) {
			w.m.Tick(w.now)
			w.apply("tick")
			return
		}
		w.m.Tick(w.now)
		w.apply("deadline")
	}
}

func (w *world) setView(v View) {
	w.view = v
	w.m.SetView(w.now, v)
	w.apply(fmt.Sprintf("view %+v", v))
}

func (w *world) setLease(l Lease) {
	w.lease = l
	w.m.SetLease(w.now, l)
	w.apply(fmt.Sprintf("lease e%d until +%v", l.Epoch, l.Until.Sub(w.now)))
}

const leaseDur = 180 * time.Millisecond

// chaos runs random events for steps rounds.
func (w *world) chaos(steps int, allowShutdown bool) {
	for s := 0; s < steps; s++ {
		w.advance(w.now.Add(time.Duration(w.rng.IntN(60)) * time.Millisecond))
		switch k := w.rng.IntN(100); {
		case k < 30: // renewal
			if w.view.Holder == me && w.view.Known {
				w.setLease(Lease{Epoch: w.view.Epoch, Until: w.now.Add(leaseDur)})
			}
		case k < 36: // lease lost (the claim dropped)
			w.setLease(Lease{})
		case k < 44: // placed here at a new epoch
			w.setView(View{Known: true, Holder: me, Epoch: w.view.Epoch + 1})
		case k < 48: // moved away
			w.setView(View{Known: true, Holder: "b", Epoch: w.view.Epoch + 1})
		case k < 51: // a planned move
			if w.view.Holder == me {
				v := w.view
				v.Handover = "b"
				w.setView(v)
			}
		case k < 53: // the handover happened
			if w.view.Handover != "" && w.handed[w.view.Epoch] {
				w.setView(View{Known: true, Holder: "b", Epoch: w.view.Epoch + 1})
			}
		case k < 55:
			v := w.view
			v.Known = true
			v.Maintenance = !v.Maintenance
			w.setView(v)
		case k < 62: // a resource dies
			i := w.rng.IntN(len(w.up))
			w.up[i] = false
			if w.rng.IntN(2) == 0 {
				w.m.Exited(w.now, i)
				w.apply(fmt.Sprintf("exited r%d", i))
			}
		case k < 63 && allowShutdown:
			if w.rng.IntN(2) == 0 {
				w.m.Drain(w.now)
				w.apply("drain")
			} else {
				w.shutdown = true
				w.m.Shutdown(w.now)
				w.apply("shutdown")
			}
		}
	}
}

// calm: holder here, lease renewed every 60 ms, no failures; the group must
// end up running everywhere it should.
func (w *world) calm(d time.Duration) {
	w.failRate, w.hangRate = 0, 0
	for id, o := range w.ops {
		if o.hang {
			o.hang = false
			o.doneAt = w.now.Add(10 * time.Millisecond)
			_ = id
		}
	}
	v := View{Known: true, Holder: me, Epoch: w.view.Epoch}
	if w.view.Holder != me || w.m.Status().Phase == PhaseFailed || (w.m.failed && w.m.failedEpoch == w.view.Epoch) {
		v.Epoch++ // placement puts it here again at a new epoch
	}
	w.setView(v)
	end := w.now.Add(d)
	for w.now.Before(end) {
		if w.m.failed && w.m.failedEpoch == w.view.Epoch {
			// it gave up: placement bans it, and after a cleanup
			// places it here again at a new epoch
			w.setView(View{Known: true, Holder: me, Epoch: w.view.Epoch + 1})
		}
		w.setLease(Lease{Epoch: w.view.Epoch, Until: w.now.Add(leaseDur)})
		w.advance(w.now.Add(60 * time.Millisecond))
	}
}

func TestRandomInterleavings(t *testing.T) {
	seeds := 1500
	if testing.Short() {
		seeds = 300
	}
	for seed := uint64(1); seed <= uint64(seeds); seed++ {
		w := newWorld(t, seed, 1+int(seed%4))
		w.failRate = []float64{0, 0.05, 0.2}[seed%3]
		w.hangRate = []float64{0, 0.01, 0.03}[(seed/3)%3]
		w.setView(View{Known: true, Holder: me, Epoch: 1})
		w.chaos(200, false)
		w.calm(20 * time.Second)
		if st := w.m.Status(); st.Phase != PhaseRunning {
			w.fail("seed %d: (c) after a calm 20 s the group is %s, not running", seed, st.Phase)
		}
		for i, u := range w.up {
			if !u {
				w.fail("seed %d: (c) r%d is not running after a calm 20 s", seed, i)
			}
		}
		if w.guardOpen.IsZero() {
			w.fail("seed %d: (c) running but the VIP guard is closed", seed)
		}
	}
}

// TestRandomInterleavingsThenLeave: after random events the group leaves
// this node by a shutdown, a planned handover or a move; everything stops,
// and the lease is given back (and a handover reported) only then.
func TestRandomInterleavingsThenLeave(t *testing.T) {
	seeds := 1500
	if testing.Short() {
		seeds = 200
	}
	for seed := uint64(1); seed <= uint64(seeds); seed++ {
		w := newWorld(t, seed, 1+int(seed%4))
		w.failRate = []float64{0, 0.05, 0.2}[seed%3]
		w.hangRate = []float64{0, 0.02}[(seed/3)%2]
		w.setView(View{Known: true, Holder: me, Epoch: 1})
		w.chaos(100, true)
		if w.view.Maintenance {
			// Maintenance leaves everything as it is, also at
			// shutdown; the admin ends it.
			v := w.view
			v.Maintenance = false
			w.setView(v)
		}
		held := w.lease.Epoch
		handover := false
		switch seed % 3 {
		case 0:
			if !w.shutdown {
				w.shutdown = true
				w.m.Shutdown(w.now)
				w.apply("shutdown")
			}
		case 1:
			if w.view.Holder == me && !w.shutdown {
				handover = true
				v := w.view
				v.Handover = "b"
				w.setView(v)
				// the lease is still renewed while the group stops
				for i := 0; i < 20; i++ {
					w.setLease(Lease{Epoch: w.view.Epoch, Until: w.now.Add(leaseDur)})
					w.advance(w.now.Add(60 * time.Millisecond))
				}
			}
		case 2:
			w.setView(View{Known: true, Holder: "b", Epoch: w.view.Epoch + 1})
		}
		// Stops succeed from now on (a failed stop is retried).
		w.failRate, w.hangRate = 0, 0
		for _, o := range w.ops {
			o.hang, o.fail = false, false
		}
		w.advance(w.now.Add(10 * time.Second))
		if !w.m.Quiet() {
			w.fail("seed %d: (e) not quiet 10 s after shutdown", seed)
		}
		for i, u := range w.up {
			if u {
				w.fail("seed %d: (e) r%d still runs after shutdown", seed, i)
			}
		}
		if handover {
			held = w.lease.Epoch
		}
		if held != 0 && held == w.view.Epoch && w.view.Holder == me && (w.shutdown || handover) && !w.released[held] {
			w.fail("seed %d: (e) the lease at epoch %d was not released after shutdown", seed, held)
		}
		if handover && !w.handed[w.view.Epoch] && w.m.Status().Phase != PhaseFailed {
			w.fail("seed %d: (d) the handover at epoch %d was not reported", seed, w.view.Epoch)
		}
	}
}

// sortedIDs is for stable iteration in debugging output.
func sortedIDs(m map[uint64]*wop) []uint64 {
	var ids []uint64
	for id := range m {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}
