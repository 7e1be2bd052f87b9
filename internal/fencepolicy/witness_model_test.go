package fencepolicy

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// The witness-mode model: two data nodes and a witness (raft's third
// voter, never down, reachable from each node unless that link is cut).
// The quorum lease is modelled by its effect: a node that is live and
// reaches a majority (the witness, or its peer) renews; a live node whose
// lease ran out has stopped its groups; a frozen node still runs what it
// ran (an exec service, a mount: what only a fence stops). A takeover
// starts after the old holder's lease has ended and the machine's gate.

const leaseDur = 600 * time.Millisecond

// reportWait: the machines' ReportWait (a lease and a stop, and then some).
const reportWait = 2 * leaseDur

type wnode struct {
	name    string
	on      bool
	frozen  bool
	m       *Machine
	running map[string]bool
	renewed map[string]time.Time // last lease renewal, per group
	// the witness's detector of this node (the witness leads and places)
	wvis      bool
	wvisSince time.Time
	wlink     bool
	dev       device
	vis       bool
	visSince  time.Time
	heard     bool
	lostRep   bool
	fencing   bool
	fenceEnd  time.Time
	fenceOut  Outcome
	due       *Outcome
	// confirmedAt: the last confirmed fence of the peer this node learnt of
	confirmedAt time.Time
}

type wmodel struct {
	t         testing.TB
	rng       *rand.Rand
	now       time.Time
	n         [2]*wnode
	connected bool
	groups    []Group // Holder and From are the replicated state
	lostAt    map[string]time.Time
	tracer
}

func newWModel(t testing.TB, seed uint64) *wmodel {
	w := &wmodel{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x2545f491)), now: time.Unix(1000, 0), tracer: tracer{seed: seed},
		connected: true, lostAt: map[string]time.Time{}}
	for i := range w.n {
		w.n[i] = &wnode{name: fmt.Sprintf("n%d", i), wlink: true}
	}
	for i := range w.n {
		w.boot(i)
	}
	for i := range 1 + w.rng.IntN(3) {
		w.groups = append(w.groups, Group{Name: fmt.Sprintf("g%d", i), Holder: w.n[w.rng.IntN(2)].name, Epoch: 1,
			Policy: Policy(w.rng.IntN(3)), Uncovered: w.rng.IntN(2) == 0})
	}
	return w
}

func (w *wmodel) logf(format string, a ...any) { w.tracer.logf(w.now, format, a...) }

func (w *wmodel) fail(format string, a ...any) {
	w.t.Helper()
	w.tracer.fail(w.t, format, a...)
}

func (w *wmodel) boot(i int) {
	nd := w.n[i]
	m, err := New(Config{Self: nd.name, Peer: w.n[1-i].name, Mode: Witness, Preferred: "n0",
		RetryMin: 100 * time.Millisecond, RetryMax: 800 * time.Millisecond, ReportWait: reportWait})
	if err != nil {
		w.t.Fatal(err)
	}
	nd.m, nd.on, nd.frozen, nd.running, nd.renewed = m, true, false, map[string]bool{}, map[string]time.Time{}
	nd.vis, nd.visSince, nd.heard, nd.lostRep, nd.fencing, nd.due = false, w.now, false, false, false, nil
	w.logf("%s boots", nd.name)
	w.do(i, m.Start(w.now, false))
}

func (w *wmodel) live(i int) bool { return w.n[i].on && !w.n[i].frozen }

func (w *wmodel) quorum(i int) bool {
	return w.live(i) && (w.n[i].wlink || (w.connected && w.live(1-i)))
}

func (w *wmodel) leaseEnd(i int, g string) time.Time { return w.n[i].renewed[g].Add(leaseDur) }

func (w *wmodel) do(i int, acts []Action) {
	nd := w.n[i]
	for _, a := range acts {
		w.logf("%s: %v", nd.name, a)
		if a.Kind != Fence {
			continue
		}
		if nd.fencing {
			w.fail("%s: a second fence in flight", nd.name)
		}
		nd.fencing = true
		var d time.Duration
		nd.fenceOut, d = attempt(w.rng, w.n[1-i].dev)
		nd.fenceEnd = w.now.Add(d)
	}
}

func (w *wmodel) index(name string) int {
	if name == "n0" {
		return 0
	}
	return 1
}

func (w *wmodel) step(dt time.Duration) {
	w.now = w.now.Add(dt)
	for i, nd := range w.n {
		if nd.fencing && !w.now.Before(nd.fenceEnd) {
			nd.fencing = false
			if nd.fenceOut == Confirmed && w.n[1-i].on {
				w.logf("%s off (fenced by %s)", w.n[1-i].name, nd.name)
				w.n[1-i].on, w.n[1-i].running = false, map[string]bool{}
			}
			if nd.on {
				o := nd.fenceOut
				nd.due = &o
			}
		}
	}
	for i, nd := range w.n {
		if !w.live(i) {
			continue
		}
		for _, g := range w.groups {
			switch {
			case !nd.running[g.Name]:
			case w.quorum(i) && g.Holder == nd.name: // a voter vouches only for the holder it applied
				nd.renewed[g.Name] = w.now
			case !w.now.Before(w.leaseEnd(i, g.Name)):
				w.logf("%s stops %s: lease ended", nd.name, g.Name)
				delete(nd.running, g.Name)
			}
		}
		// A live agent that reaches the leader (the witness) reports what
		// it does not run (after a stop, or a restart's probe) through
		// raft: its peer does not forward it, nor vote for it while it
		// hears the leader.
		for k := range w.groups {
			if g := &w.groups[k]; w.live(i) && nd.wlink && g.From == nd.name && !nd.running[g.Name] && !g.FromStopped {
				g.FromStopped = true
				w.logf("%s reports %s stopped", nd.name, g.Name)
			}
		}
		if nd.due != nil {
			o := *nd.due
			nd.due = nil
			if o == Confirmed {
				nd.confirmedAt = w.now
			}
			w.do(i, nd.m.FenceDone(w.now, o, ""))
		}
		vis := w.connected && w.live(1-i)
		if vis != nd.vis {
			nd.vis, nd.visSince = vis, w.now
		}
		switch {
		case vis && !nd.heard && w.now.Sub(nd.visSince) >= heardAfter:
			nd.heard, nd.lostRep = true, false
			w.do(i, nd.m.PeerHeard(w.now))
		case !vis && !nd.lostRep && w.now.Sub(nd.visSince) >= detect:
			nd.heard, nd.lostRep = false, true
			w.lostAt[nd.name] = w.now
			w.do(i, nd.m.PeerLost(w.now))
		}
	}
	// placement by the witness, which leads: a takeover from a holder it
	// has not heard for the detection time to the other node if it hears
	// that one (a reachable holder hands over cleanly; not modelled).
	for _, nd := range w.n {
		if v := nd.wlink && w.live(w.index(nd.name)); v != nd.wvis {
			nd.wvis, nd.wvisSince = v, w.now
		}
	}
	for i, nd := range w.n {
		p := w.n[1-i]
		if !nd.wvis || p.wvis || w.now.Sub(p.wvisSince) < detect {
			continue
		}
		for k := range w.groups {
			if g := &w.groups[k]; g.Holder == p.name {
				g.From, g.Holder, g.FromStopped = g.Holder, nd.name, !p.running[g.Name] && p.on
				g.FromEpoch, g.Epoch = g.Epoch, g.Epoch+1
				w.logf("takeover of %s: %s → %s", g.Name, g.From, g.Holder)
			}
		}
	}
	for i, nd := range w.n {
		if !w.live(i) {
			continue
		}
		mine := make([]Group, len(w.groups))
		for k, g := range w.groups {
			mine[k] = g
			mine[k].RunningHere = nd.running[g.Name]
		}
		w.do(i, nd.m.SetGroups(w.now, mine))
		w.do(i, nd.m.Tick(w.now))
		for k := range w.groups {
			g := &w.groups[k]
			if g.Holder != nd.name || nd.running[g.Name] || !w.quorum(i) || !nd.m.MayStart(*g) {
				continue
			}
			if g.From != "" && w.now.Before(w.leaseEnd(w.index(g.From), g.Name)) {
				continue // the old lease runs
			}
			w.start(i, g)
		}
	}
}

func (w *wmodel) start(i int, g *Group) {
	nd, p := w.n[i], w.n[1-i]
	required := g.Policy == Always || (g.Policy == WhenNeeded && g.Uncovered)
	if p.on && p.running[g.Name] {
		if required || !p.frozen {
			w.fail("%s starts %s (policy %d, uncovered %v) while %s runs it (frozen %v)", nd.name, g.Name, g.Policy, g.Uncovered, p.name, p.frozen)
		}
		wseen["covered overlap"]++ // the kernel guard and epochs cover it
	}
	// Unless the old holder reported the group stopped, it must be
	// confirmed off since this node last lost it.
	if g.From == p.name && required && !g.FromStopped && !nd.confirmedAt.After(w.lostAt[nd.name]) {
		w.fail("%s takes %s over from %s without a confirmed fence since it lost it", nd.name, g.Name, p.name)
	}
	if g.From != "" && required {
		wseen["fenced takeover"]++
	}
	nd.running[g.Name] = true
	nd.renewed[g.Name] = w.now
	g.From = ""
	w.logf("%s starts %s", nd.name, g.Name)
}

var wseen = map[string]int{}

// A holder cut from the witness only (its peer still hears it) loses its
// lease and stops, but its report cannot reach the leader: the takeover
// must not wait for the link to heal. It fences the holder after
// ReportWait, and the group runs again while the link is still cut.
func TestWitnessModelHolderCutFromWitness(t *testing.T) {
	for s := range seeds(t, 200) {
		w := newWModel(t, uint64(s))
		for k := range w.groups {
			w.groups[k].Holder, w.groups[k].Policy = "n0", Always
		}
		for range 40 { // settle: n0 runs everything
			w.step(25 * time.Millisecond)
		}
		w.n[0].wlink = false
		w.logf("n0 witness link cut")
		for range 200 { // 5 s: detect, lease, ReportWait, fence
			w.step(25 * time.Millisecond)
		}
		for _, g := range w.groups {
			if g.Holder != "n1" || !w.n[1].running[g.Name] {
				w.fail("%s does not run on n1 5 s after n0 was cut from the witness (holder %s)", g.Name, g.Holder)
			}
		}
	}
}

func TestWitnessModel(t *testing.T) {
	clear(wseen)
	for s := range seeds(t, 1500) {
		w := newWModel(t, uint64(s))
		end := w.now.Add(time.Duration(5+w.rng.IntN(20)) * time.Second)
		for w.now.Before(end) {
			if w.rng.IntN(30) == 0 {
				i := w.rng.IntN(2)
				nd := w.n[i]
				switch r := w.rng.IntN(8); {
				case r < 2:
					w.connected = !w.connected
					w.logf("data link %v", w.connected)
				case r == 2:
					nd.wlink = !nd.wlink
					w.logf("%s witness link %v", nd.name, nd.wlink)
				case r == 3 && nd.on:
					nd.frozen = !nd.frozen
					if !nd.frozen {
						nd.vis, nd.visSince, nd.lostRep, nd.heard = false, w.now, false, false
						w.do(i, nd.m.Resume(w.now))
					}
					w.logf("%s frozen %v", nd.name, nd.frozen)
				case r == 4 && nd.on && !nd.frozen:
					w.logf("%s crashes", nd.name)
					nd.on, nd.running = false, map[string]bool{}
				case r == 5 && !nd.on:
					w.boot(i)
				case r == 6:
					nd.dev = device(w.rng.IntN(4))
				}
			}
			w.step(time.Duration(10+w.rng.IntN(40)) * time.Millisecond)
		}
		// calm: working devices, links up; in some runs one node stays
		// frozen for good, and the other must take its groups over by
		// fencing it (when their policy says so).
		w.connected = true
		keep := w.rng.IntN(4)
		for i, nd := range w.n {
			nd.wlink, nd.dev = true, devWorking
			if nd.frozen && i != keep {
				nd.frozen = false
				nd.vis, nd.visSince, nd.lostRep, nd.heard = false, w.now, false, false
				w.do(i, nd.m.Resume(w.now))
			}
			if !nd.on {
				w.boot(i)
			}
		}
		for range 600 {
			w.step(30 * time.Millisecond)
			for i, nd := range w.n {
				if !nd.on {
					w.boot(i)
				}
			}
		}
		for _, g := range w.groups {
			h := w.n[w.index(g.Holder)]
			if !h.on || !h.running[g.Name] {
				w.fail("liveness: %s not running on its holder %s", g.Name, g.Holder)
			}
		}
	}
	t.Logf("exercised: %v", wseen)
	if wseen["fenced takeover"] == 0 {
		t.Error("no run took over with a fence")
	}
}
