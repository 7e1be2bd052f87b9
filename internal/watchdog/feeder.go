package watchdog

import (
	"fmt"
	"sort"
	"time"
)

// Feeder decides when the agent opens, feeds and closes its watchdog
// (docs/fencing.md, "Watchdog"). It does no I/O: lease events and ticks go
// in, actions come out; the agent's adapter runs them on a Watchdog.
//
// Its rules, which a watchdog fence of this node relies on:
//
//   - The watchdog is opened (armed) once, at the agent's start, before it
//     can hold any lease, and stays armed while the agent runs, holding a
//     lease or not: a hung or dead agent resets the machine whatever it
//     holds, as sbd does.
//   - Every tick feeds it, unless the feeder has given up.
//   - It gives up for good, so the machine resets within the watchdog's
//     timeout of the last feed, when a lease this node held ran out while
//     the node still claimed it (it could not renew it: cut off from the
//     quorum, or its lease loop stalled), or when the group was taken over
//     from this node (the cluster counted it lost, and may be waiting for a
//     watchdog fence of it). No tick at or after such a lease's end feeds:
//     the last feed comes before the end, as Config.WatchdogFenceWait
//     assumes. A renewal that comes too late does not undo it.
//   - A lease given back (the group stopped here and handed over) or
//     dropped by a placement this node applied (a move while it was
//     reachable) is no longer watched: its group is stopped as for any
//     move, and the machine is not reset.
//   - It is closed (the magic close, which disarms it) only on a planned
//     stop, when no lease is held and it has not given up. Otherwise it
//     stays armed and unfed: the machine resets.
type Feeder struct {
	started, stopped bool
	held             map[string]heldLease // by group: the lease this node holds or held last
	gone             map[string]uint64    // by group: the newest epoch whose claim is gone
	why              string               // why it gave up ("" while it has not)
	gaveUpAt         time.Time
}

type heldLease struct {
	epoch uint64
	until time.Time
}

// Action is what the feeder asks of the watchdog.
type Action int

const (
	Nothing Action = iota
	Open           // arm the watchdog (Watchdog.Open)
	Feed           // Watchdog.Feed
	Close          // the magic close (Watchdog.Close)
)

func (a Action) String() string {
	switch a {
	case Open:
		return "open"
	case Feed:
		return "feed"
	case Close:
		return "close"
	}
	return "nothing"
}

// NewFeeder returns a feeder that has not started.
func NewFeeder() *Feeder {
	return &Feeder{held: map[string]heldLease{}, gone: map[string]uint64{}}
}

// Start is the agent's start: Open, once.
func (f *Feeder) Start() Action {
	if f.started || f.stopped {
		return Nothing
	}
	f.started = true
	return Open
}

// Held says, at now, that this node holds group's lease at epoch until
// until (a lease acquired or extended). A claim already gone at that epoch
// is ignored: the report was overtaken by the release. A lease at a newer
// epoch ends the watch of the older one as Gone would.
func (f *Feeder) Held(now time.Time, group string, epoch uint64, until time.Time) {
	if g, ok := f.gone[group]; ok && epoch <= g {
		return
	}
	h, ok := f.held[group]
	if ok && (epoch < h.epoch || epoch == h.epoch && !until.After(h.until)) {
		return
	}
	switch {
	case ok && epoch > h.epoch:
		f.Gone(group, h.epoch, false, now)
	case ok && !now.Before(h.until):
		f.giveUp(h.until, lapsed(group, h)) // renewed too late
	}
	f.held[group] = heldLease{epoch: epoch, until: until}
}

// Gone says this node's claim on group at epoch is gone: it gave the lease
// back, or the applied state moved the group; takenOver when the state
// moved it by a takeover from this node. A lease that had already run out
// at now had lapsed before it went, and is a lapse.
func (f *Feeder) Gone(group string, epoch uint64, takenOver bool, now time.Time) {
	if g, ok := f.gone[group]; !ok || epoch > g {
		f.gone[group] = epoch
	}
	h, ok := f.held[group]
	if !ok || h.epoch > epoch {
		return
	}
	delete(f.held, group)
	switch {
	case takenOver:
		f.giveUp(now, fmt.Sprintf("group %s was taken over from this node (epoch %d)", group, h.epoch))
	case !now.Before(h.until):
		f.giveUp(h.until, lapsed(group, h))
	}
}

// Tick is a beat of the agent's main loop at now: Feed, unless the feeder
// has given up, or does so now because a lease ran out.
func (f *Feeder) Tick(now time.Time) Action {
	if !f.started || f.stopped {
		return Nothing
	}
	for _, g := range f.groups() {
		if h := f.held[g]; !now.Before(h.until) {
			f.giveUp(h.until, lapsed(g, h))
		}
	}
	if f.why != "" {
		return Nothing
	}
	return Feed
}

// Stop is a planned stop at now: Close if nothing is held and the feeder
// has not given up; otherwise the watchdog stays armed and unfed.
func (f *Feeder) Stop(now time.Time) Action {
	if !f.started || f.stopped {
		return Nothing
	}
	f.Tick(now) // a lease that ran out by now is a lapse
	f.stopped = true
	if f.why != "" || len(f.held) > 0 {
		return Nothing
	}
	return Close
}

// GaveUp says whether, when and why the feeder stopped feeding for good.
func (f *Feeder) GaveUp() (why string, at time.Time, ok bool) {
	return f.why, f.gaveUpAt, f.why != ""
}

// Holding lists the groups whose leases this node holds at now.
func (f *Feeder) Holding(now time.Time) []string {
	var out []string
	for _, g := range f.groups() {
		if now.Before(f.held[g].until) {
			out = append(out, g)
		}
	}
	return out
}

// Watched returns the epoch of each group's lease the feeder watches (held,
// or run out, and not gone), by group.
func (f *Feeder) Watched() map[string]uint64 {
	out := make(map[string]uint64, len(f.held))
	for g, h := range f.held {
		out[g] = h.epoch
	}
	return out
}

func (f *Feeder) giveUp(at time.Time, why string) {
	if f.why == "" {
		f.why, f.gaveUpAt = why, at
	}
}

func (f *Feeder) groups() []string {
	gs := make([]string, 0, len(f.held))
	for g := range f.held {
		gs = append(gs, g)
	}
	sort.Strings(gs)
	return gs
}

func lapsed(group string, h heldLease) string {
	return fmt.Sprintf("the lease on group %s (epoch %d) ran out at %s while this node still claimed it", group, h.epoch, h.until.Format("15:04:05.000"))
}
