package fencepolicy

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// The model: two data nodes in two-node mode, each with its own Machine,
// against a world that crashes, freezes, thaws, restarts, partitions and
// heals them, and fence devices that confirm, fail or time out. Fencing has
// power: a confirmed fence turns its target off at that instant, whoever
// asked and whatever happened to the asker since (a frozen or dead asker's
// request still lands). An off or frozen node does nothing; a frozen node
// still runs what it ran. Raft is modelled by what may commit: both
// voters paired and in touch, or a sole voter.

const (
	detect     = 500 * time.Millisecond // heartbeat loss detection
	maxSkew    = 100 * time.Millisecond // how much later one node may detect than the other
	heardAfter = 100 * time.Millisecond
	fenceMin   = 50 * time.Millisecond
	fenceBound = 300 * time.Millisecond // the longest a fence attempt takes (device timeout)
	fenceDelay = time.Second            // > maxSkew + fenceBound
	recoverDur = 200 * time.Millisecond
)

type device int

const (
	devWorking device = iota // every attempt confirms
	devFailing               // every attempt fails
	devTimeout               // every attempt times out
	devFlaky                 // each attempt at random
)

type mnode struct {
	name    string
	on      bool
	frozen  bool
	m       *Machine
	running map[string]bool
	sole    bool // raft's persisted configuration: this node alone
	dev     device
	// detector, as seen by this node while it runs
	vis      bool
	visSince time.Time
	heard    bool // last reported to the machine
	lostRep  bool
	skew     time.Duration
	// a fence this node asked for, in flight
	fencing    bool
	fenceEnd   time.Time
	fenceOut   Outcome
	resultDue  *Outcome // a result waiting for the asker to thaw
	recoverAt  time.Time
	recoverDur time.Duration
	rebootAt   time.Time // a fence by reboot: the node comes back by itself
	// for the invariants
	startedAt        time.Time
	joinedSinceStart bool
	confirmedAt      time.Time // last confirmed fence of the peer delivered to this machine
	confirmedSince   bool      // a confirmed fence delivered since this agent started
}

type model struct {
	t         testing.TB
	rng       *rand.Rand
	now       time.Time
	n         [2]*mnode
	connected bool
	groups    []string
	pref      map[string]int
	view      [2]map[string]string // each node's replicated holder table
	lastStart map[string]struct {
		node int
		at   time.Time
	}
	tracer
	// fastReboot: some fences are reboots and the node is back at once
	fastReboot bool
	delay      time.Duration // fence_delay

}

// seen counts, over every run of a test, what the runs exercised, so a
// model that stopped reaching takeovers or failures shows as a failure.
var seen = map[string]int{}

func newModel(t testing.TB, seed uint64) *model { return newModelDelay(t, seed, fenceDelay) }

func newModelDelay(t testing.TB, seed uint64, delay time.Duration) *model {
	w := &model{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x5bd1e995)), now: time.Unix(1000, 0), tracer: tracer{seed: seed},
		connected: true, delay: delay, pref: map[string]int{}, lastStart: map[string]struct {
			node int
			at   time.Time
		}{}}
	ng := w.rng.IntN(4) // 0..3 groups, preferring either node: none, all on one, mutual standby
	for i := range ng {
		g := fmt.Sprintf("g%d", i)
		w.groups = append(w.groups, g)
		w.pref[g] = w.rng.IntN(2)
	}
	for i := range w.n {
		w.n[i] = &mnode{name: fmt.Sprintf("n%d", i), skew: time.Duration(w.rng.Int64N(int64(maxSkew)))}
		w.view[i] = map[string]string{}
	}
	for i := range w.n {
		w.boot(i)
	}
	return w
}

func (w *model) peer(i int) int { return 1 - i }

func (w *model) logf(format string, a ...any) { w.tracer.logf(w.now, format, a...) }

func (w *model) fail(format string, a ...any) {
	w.t.Helper()
	w.tracer.fail(w.t, format, a...)
}

// tracer keeps a run's trace and prints its tail with the seed on failure.
type tracer struct {
	trace []string
	seed  uint64
}

func (tr *tracer) logf(now time.Time, format string, a ...any) {
	tr.trace = append(tr.trace, now.Format("05.000")+" "+fmt.Sprintf(format, a...))
}

func (tr *tracer) fail(t testing.TB, format string, a ...any) {
	t.Helper()
	tail := tr.trace
	if len(tail) > 80 {
		tail = tail[len(tail)-80:]
	}
	t.Fatalf("seed %d: %s\n%s", tr.seed, fmt.Sprintf(format, a...), strings.Join(tail, "\n"))
}

// attempt is one fence attempt with device dev: its outcome and duration.
func attempt(rng *rand.Rand, dev device) (Outcome, time.Duration) {
	d := fenceMin + time.Duration(rng.Int64N(int64(fenceBound-fenceMin)))
	switch {
	case dev == devWorking || (dev == devFlaky && rng.IntN(2) == 0):
		return Confirmed, d
	case dev == devFailing || (dev == devFlaky && rng.IntN(2) == 0):
		return Failed, d
	}
	return TimedOut, fenceBound
}

func (w *model) boot(i int) {
	nd := w.n[i]
	m, err := New(Config{Self: nd.name, Peer: w.n[w.peer(i)].name, Mode: TwoNode, Preferred: "n0",
		FenceDelay: w.delay, RetryMin: 100 * time.Millisecond, RetryMax: 800 * time.Millisecond})
	if err != nil {
		w.t.Fatal(err)
	}
	nd.m, nd.on, nd.frozen = m, true, false
	nd.running = map[string]bool{}
	nd.vis, nd.visSince, nd.heard, nd.lostRep = false, w.now, false, false
	nd.fencing, nd.resultDue, nd.recoverAt = false, nil, time.Time{}
	nd.startedAt, nd.joinedSinceStart, nd.confirmedSince = w.now, false, false
	w.logf("%s boots (sole voter %v)", nd.name, nd.sole)
	w.do(i, m.Start(w.now, nd.sole))
	w.do(i, m.SetGroups(w.now, w.groupsOf(i)))
}

func (w *model) powerOff(i int, why string) {
	nd := w.n[i]
	if !nd.on {
		return
	}
	w.logf("%s off (%s)", nd.name, why)
	nd.on, nd.frozen, nd.m, nd.running = false, false, nil, map[string]bool{}
	// A request to a fence device that was already sent still lands; the
	// asker will never hear of it.
	nd.resultDue, nd.recoverAt = nil, time.Time{}
}

func (w *model) live(i int) bool { return w.n[i].on && !w.n[i].frozen }

func (w *model) groupsOf(i int) []Group {
	var gs []Group
	for _, g := range w.groups {
		gs = append(gs, Group{Name: g, Holder: w.view[i][g], RunningHere: w.n[i].running[g], Policy: Always})
	}
	return gs
}

// do runs a machine's actions.
func (w *model) do(i int, acts []Action) {
	nd := w.n[i]
	for _, a := range acts {
		w.logf("%s: %v", nd.name, a)
		switch a.Kind {
		case Fence:
			if a.Node != w.n[w.peer(i)].name {
				w.fail("%s fences %s, not its peer", nd.name, a.Node)
			}
			if nd.fencing {
				w.fail("%s: a second fence while one is in flight", nd.name)
			}
			nd.fencing = true
			var d time.Duration
			nd.fenceOut, d = attempt(w.rng, w.n[w.peer(i)].dev)
			nd.fenceEnd = w.now.Add(d)
		case RecoverRaft:
			// RecoverCluster replays the log and writes a snapshot: quick
			// on a small log, seconds on a big one.
			nd.recoverDur = recoverDur + time.Duration(w.rng.Int64N(int64(4*recoverDur)))
			nd.recoverAt = w.now.Add(nd.recoverDur)
		case ReaddPeer:
			p := w.n[w.peer(i)]
			if nd.sole && w.live(w.peer(i)) && w.connected {
				if p.sole {
					w.fail("both nodes are raft's only voter")
				}
				nd.sole = false
				for _, g := range w.groups {
					w.view[w.peer(i)][g] = w.view[i][g]
				}
				w.logf("%s re-adds %s", nd.name, p.name)
				nd.joinedSinceStart = true
				seen["re-add"]++
				w.do(i, nd.m.PeerReadded(w.now))
				w.join(w.peer(i))
			}
		case MayTakeOver:
			if !nd.sole {
				w.fail("%s may take over %s without being raft's only voter", nd.name, a.Group)
			}
			w.commitAndStart(i, a.Group)
		}
	}
}

func (w *model) join(i int) {
	nd := w.n[i]
	nd.joinedSinceStart = true
	w.do(i, nd.m.PeerJoined(w.now))
}

// canCommit: raft can commit a change proposed by node i.
func (w *model) canCommit(i int) bool {
	nd, p := w.n[i], w.n[w.peer(i)]
	if nd.sole {
		return true
	}
	return w.connected && w.live(w.peer(i)) && nd.m.paired && p.m.paired && !p.sole &&
		nd.m.AcceptsPeer() && p.m.AcceptsPeer() // a start needs both voters' lease grants
}

func (w *model) commitAndStart(i int, g string) {
	nd := w.n[i]
	if nd.running[g] || !w.canCommit(i) {
		return
	}
	grp := Group{Name: g, Holder: w.view[i][g], Policy: Always}
	if !nd.m.MayStart(grp) {
		return
	}
	for j := range w.view {
		if j == i || !nd.sole {
			w.view[j][g] = nd.name
		}
	}
	w.start(i, g)
}

// start checks the invariants at the moment node i starts group g.
func (w *model) start(i int, g string) {
	nd, p := w.n[i], w.n[w.peer(i)]
	if p.on && p.running[g] {
		w.fail("S1: %s starts %s while %s runs it", nd.name, g, p.name)
	}
	if ls, ok := w.lastStart[g]; ok && ls.node != i && !nd.confirmedAt.After(ls.at) {
		w.fail("%s takes %s over from %s (started %v) without a confirmed fence since (last %v)",
			nd.name, g, p.name, ls.at.Format("05.000"), nd.confirmedAt.Format("05.000"))
	}
	if !nd.joinedSinceStart && !nd.confirmedSince {
		w.fail("wait-for-all: %s starts %s before it joined or fenced its peer", nd.name, g)
	}
	if ls, ok := w.lastStart[g]; ok && ls.node != i {
		seen["takeover"]++
	}
	nd.running[g] = true
	w.lastStart[g] = struct {
		node int
		at   time.Time
	}{i, w.now}
	w.logf("%s starts %s", nd.name, g)
	w.do(i, nd.m.SetGroups(w.now, w.groupsOf(i)))
}

// raftUp: a recovering member's raft runs on for the first half of the
// recovery's three quarters (the member stops when the step gets to it),
// then is down.
func (w *model) raftUp(i int) bool {
	at := w.n[i].recoverAt
	return at.IsZero() || at.Sub(w.now) > w.n[i].recoverDur/4
}

// step advances time and delivers what is due.
func (w *model) step(dt time.Duration) {
	w.now = w.now.Add(dt)
	// fences land
	for i, nd := range w.n {
		if !nd.fencing || w.now.Before(nd.fenceEnd) {
			continue
		}
		nd.fencing = false
		o := nd.fenceOut
		if o == Confirmed {
			w.powerOff(w.peer(i), "fenced by "+nd.name)
			if w.fastReboot && w.rng.IntN(3) == 0 { // fenced by reboot, and a fast one
				w.n[w.peer(i)].rebootAt = w.now.Add(time.Duration(w.rng.IntN(300)) * time.Millisecond)
			}
		}
		if nd.on {
			nd.resultDue = &o
		}
	}
	for i, nd := range w.n {
		if !nd.on && !nd.rebootAt.IsZero() && !w.now.Before(nd.rebootAt) {
			nd.rebootAt = time.Time{}
			w.boot(i)
		}
		if !w.live(i) {
			continue
		}
		if nd.resultDue != nil {
			o := *nd.resultDue
			nd.resultDue = nil
			if o == Confirmed {
				nd.confirmedAt, nd.confirmedSince = w.now, true
			}
			seen["fence "+o.String()]++
			w.do(i, nd.m.FenceDone(w.now, o, ""))
		}
		if !nd.recoverAt.IsZero() && !w.now.Before(nd.recoverAt) && w.rng.IntN(5) == 0 {
			nd.recoverAt = time.Time{}
			seen["recovery failed"]++
			w.do(i, nd.m.RaftRecoverFailed(w.now, errors.New("disk full")))
		}
		if !nd.recoverAt.IsZero() && !w.now.Before(nd.recoverAt) {
			nd.recoverAt = time.Time{}
			nd.sole = true
			w.logf("%s is raft's only voter", nd.name)
			w.do(i, nd.m.RaftRecovered(w.now))
		}
	}
	// detection
	for i, nd := range w.n {
		if !w.live(i) {
			continue
		}
		vis := w.connected && w.live(w.peer(i))
		if vis != nd.vis {
			nd.vis, nd.visSince = vis, w.now
		}
		switch {
		case vis && !nd.heard && w.now.Sub(nd.visSince) >= heardAfter:
			nd.heard, nd.lostRep = true, false
			w.do(i, nd.m.PeerHeard(w.now))
		case !vis && !nd.lostRep && w.now.Sub(nd.visSince) >= detect+nd.skew:
			nd.heard, nd.lostRep = false, true
			w.do(i, nd.m.PeerLost(w.now))
		}
	}
	// raft: two voters in touch join; a joined pair shares one table
	if w.live(0) && w.live(1) && w.connected && w.n[0].heard && w.n[1].heard && !w.n[0].sole && !w.n[1].sole &&
		w.raftUp(0) && w.raftUp(1) && w.n[0].m.AcceptsPeer() && w.n[1].m.AcceptsPeer() {
		for i, nd := range w.n {
			if !nd.m.paired {
				if w.n[w.peer(i)].m.paired || w.n[w.peer(i)].joinedSinceStart {
					for _, g := range w.groups {
						w.view[i][g] = w.view[w.peer(i)][g]
					}
				} else {
					for _, g := range w.groups {
						if w.view[0][g] != w.view[1][g] {
							w.fail("two voters join with different states for %s: %q, %q", g, w.view[0][g], w.view[1][g])
						}
					}
				}
				w.join(i)
			}
		}
	}
	// ticks, and placement: a node starts what it holds or is preferred for
	for i, nd := range w.n {
		if !w.live(i) {
			continue
		}
		w.do(i, nd.m.Tick(w.now))
		w.do(i, nd.m.SetGroups(w.now, w.groupsOf(i)))
		for _, g := range w.groups {
			h := w.view[i][g]
			if h == nd.name || (h == "" && w.pref[g] == i) {
				w.commitAndStart(i, g)
			}
		}
	}
	if w.n[0].on && w.n[1].on && (w.n[0].frozen || w.n[1].frozen) {
		seen["frozen"]++
	}
	if w.n[0].on && w.n[1].on && w.n[0].sole && w.n[1].sole {
		w.fail("both nodes are raft's only voter")
	}
	for _, g := range w.groups {
		if w.n[0].on && w.n[1].on && w.n[0].running[g] && w.n[1].running[g] {
			w.fail("S1: both nodes run %s", g)
		}
	}
}

func (w *model) dt() time.Duration { return time.Duration(10+w.rng.IntN(40)) * time.Millisecond }

// chaos runs random faults for d.
func (w *model) chaos(d time.Duration) {
	end := w.now.Add(d)
	for w.now.Before(end) {
		if w.rng.IntN(40) == 0 {
			i := w.rng.IntN(2)
			nd := w.n[i]
			switch r := w.rng.IntN(10); {
			case r < 3:
				w.connected = !w.connected
				w.logf("network %s", map[bool]string{true: "heals", false: "partitioned"}[w.connected])
			case r == 3:
				w.powerOff(i, "crash")
			case r == 4 && nd.on:
				nd.frozen = !nd.frozen
				if !nd.frozen {
					nd.vis, nd.visSince = false, w.now // detection starts afresh after a freeze
					nd.lostRep = false
				}
				w.logf("%s %s", nd.name, map[bool]string{true: "freezes", false: "thaws"}[nd.frozen])
			case r <= 6 && !nd.on:
				w.boot(i)
			case r == 7:
				nd.dev = device(w.rng.IntN(4))
				w.logf("%s's fence device now %d", nd.name, nd.dev)
			}
		}
		w.step(w.dt())
	}
}

// calm heals everything, gives both nodes working devices and lets the
// world settle; every group then runs on a live node.
func (w *model) calm() {
	w.connected = true
	for i, nd := range w.n {
		nd.dev = devWorking
		if nd.on && nd.frozen {
			nd.frozen = false
			nd.vis, nd.visSince, nd.lostRep, nd.heard = false, w.now, false, false
			w.do(i, nd.m.Resume(w.now))
		}
		if !nd.on {
			w.boot(i)
		}
	}
	w.logf("calm")
	end := w.now.Add(20 * time.Second)
	var offSince [2]time.Time
	for w.now.Before(end) {
		w.step(w.dt())
		for i, nd := range w.n { // a fenced node is powered on again (reboot, or the operator)
			switch {
			case nd.on:
				offSince[i] = time.Time{}
			case offSince[i].IsZero():
				offSince[i] = w.now
			case w.now.Sub(offSince[i]) > 2*time.Second:
				w.boot(i)
			}
		}
	}
	for _, g := range w.groups {
		if !(w.n[0].on && w.n[0].running[g]) && !(w.n[1].on && w.n[1].running[g]) {
			w.fail("liveness: %s runs nowhere after the calm", g)
		}
	}
}

// runs multiplies every model test's number of runs (go test -args -runs 10).
var runs = flag.Int("runs", 1, "multiply the model tests' number of random runs")

func seeds(t *testing.T, n int) int {
	if testing.Short() {
		return n / 10
	}
	return n * *runs
}

func TestModelRandomFaults(t *testing.T) {
	clear(seen)
	for s := range seeds(t, 2000) {
		w := newModel(t, uint64(s))
		w.fastReboot = true
		w.chaos(time.Duration(5+w.rng.IntN(30)) * time.Second)
		w.calm()
	}
	t.Logf("exercised: %v", seen)
	for _, k := range []string{"takeover", "recovery failed", "fence confirmed", "fence failed", "fence timed out", "re-add", "frozen"} {
		if seen[k] == 0 {
			t.Errorf("no run exercised %q", k)
		}
	}
}

// TestModelFenceRace: a symmetric partition of a settled pair with working
// devices leaves exactly one node, which runs every group.
func TestModelFenceRace(t *testing.T) {
	for s := range seeds(t, 1000) {
		if both := race(t, uint64(s), fenceDelay); both {
			t.Fatalf("seed %d: both nodes off", s)
		}
	}
}

// TestModelFenceRaceNeedsTheDelay: with fence_delay below the detection
// skew plus the longest fence, both nodes die in some races: the condition
// is needed, not only sufficient.
func TestModelFenceRaceNeedsTheDelay(t *testing.T) {
	dead := 0
	for s := range seeds(t, 300) {
		if race(t, uint64(s), fenceMin/2) {
			dead++
		}
	}
	if dead == 0 {
		t.Fatal("a fence delay shorter than a fence never killed both nodes")
	}
	t.Logf("both nodes off in %d races", dead)
}

// race partitions a settled pair and reports whether both nodes ended
// off; any other outcome than one survivor running every group fails.
func race(t *testing.T, seed uint64, delay time.Duration) (bothOff bool) {
	t.Helper()
	w := newModelDelay(t, seed, delay)
	w.now = w.now.Add(time.Duration(w.rng.IntN(1000)) * time.Millisecond)
	for range 100 {
		w.step(w.dt())
	}
	if !w.n[0].m.paired || !w.n[1].m.paired {
		w.fail("not paired after settling")
	}
	w.connected = false
	w.logf("partition")
	for range 300 {
		w.step(w.dt())
	}
	if !w.n[0].on && !w.n[1].on {
		return true
	}
	if w.n[0].on == w.n[1].on {
		w.fail("fence race: both nodes on")
	}
	for _, g := range w.groups {
		if !w.n[0].running[g] && !w.n[1].running[g] {
			w.fail("%s runs nowhere after the race", g)
		}
	}
	return false
}

// TestModelFailedFenceBlocks: with the peer's device failing, a lost peer
// is never taken over from, however long it takes.
func TestModelFailedFenceBlocks(t *testing.T) {
	for s := range seeds(t, 300) {
		w := newModel(t, uint64(s))
		for range 100 {
			w.step(w.dt())
		}
		w.n[0].dev, w.n[1].dev = devFailing, devTimeout
		holder := map[string]string{}
		for _, g := range w.groups {
			holder[g] = w.view[0][g]
		}
		w.connected = false
		for range 500 {
			w.step(w.dt())
		}
		for i, nd := range w.n {
			if !nd.on {
				w.fail("%s is off with failing devices", nd.name)
			}
			for _, g := range w.groups {
				if nd.running[g] != (holder[g] == nd.name) {
					w.fail("%s: %s running %v, held by %q before", nd.name, g, nd.running[g], holder[g])
				}
			}
			_ = i
		}
	}
}

// TestModelBothRestart: after both restart, neither starts a group until it
// has joined its peer; a partition that lasts keeps them both waiting.
func TestModelBothRestart(t *testing.T) {
	for s := range seeds(t, 300) {
		w := newModel(t, uint64(s))
		for range 100 {
			w.step(w.dt())
		}
		w.powerOff(0, "power cut")
		w.powerOff(1, "power cut")
		w.connected = false
		w.boot(0)
		w.boot(1)
		for range 300 {
			w.step(w.dt())
		}
		for _, nd := range w.n {
			if len(nd.running) != 0 || nd.fencing {
				w.fail("%s runs %v (fencing %v) before it joined its peer", nd.name, nd.running, nd.fencing)
			}
		}
		w.connected = true
		for range 200 {
			w.step(w.dt())
		}
		for _, g := range w.groups {
			if !w.n[w.pref[g]].running[g] {
				w.fail("%s does not run on its preferred node after the pair joined", g)
			}
		}
	}
}
