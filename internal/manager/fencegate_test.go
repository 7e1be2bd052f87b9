package manager

import (
	"sync/atomic"
	"testing"
	"time"

	"tandem/internal/state"
)

// A start waits for the fencing gate however long the lease is held; once
// the gate said yes at an epoch, a group that runs is not stopped by it.
func TestStartWaitsForTheFenceGate(t *testing.T) {
	var open atomic.Bool
	var asked atomic.Int32
	r := newRigWith(t, 3, func(c *Config) {
		c.MayStart = func(group string, epoch uint64) bool {
			asked.Add(1)
			return group == "web" && epoch == 2 && open.Load()
		}
	})
	r.m.SetState(holderState("a", 2))
	r.lease.set(2, time.Hour)
	r.m.LeaseChanged("web")
	waitFor(t, "the gate asked", func() bool { return asked.Load() > 0 })
	time.Sleep(30 * time.Millisecond)
	if got := r.orderSnapshot(); len(got) != 0 {
		t.Fatalf("started before the gate opened: %v", got)
	}
	open.Store(true)
	r.m.MayStartChanged("web")
	waitFor(t, "running", func() bool { return phase(r.m) == PhaseRunning })
	open.Store(false)
	r.m.MayStartChanged("web")
	time.Sleep(30 * time.Millisecond)
	if p := phase(r.m); p != PhaseRunning {
		t.Fatalf("a closed gate stopped a running group: %s", p)
	}
}

// The old holder of a takeover reports the group released once it has
// stopped it, for the holding taken over, once.
func TestOldHolderReportsReleased(t *testing.T) {
	r := newRig(t, 3)
	r.lease.set(1, time.Hour)
	r.m.SetState(holderState("a", 1))
	waitFor(t, "running", func() bool { return phase(r.m) == PhaseRunning })
	st := holderState("b", 2)
	st.Groups["web"].Takeover = &state.Takeover{From: "a", To: "b", Epoch: 2, FromEpoch: 1}
	r.lease.set(0, 0)
	r.m.SetState(st)
	r.m.LeaseChanged("web")
	released := func() (n int, epoch uint64) {
		for _, c := range r.rep.get() {
			if c.Op == state.OpReleased {
				n, epoch = n+1, c.Epoch
				if c.Node != "a" || c.Group != "web" {
					t.Fatalf("released %+v", c)
				}
			}
		}
		return n, epoch
	}
	waitFor(t, "released reported", func() bool { n, _ := released(); return n > 0 })
	if phase(r.m) != PhaseStopped {
		t.Fatalf("released reported in phase %s", phase(r.m))
	}
	stops := 0
	for _, o := range r.orderSnapshot() {
		if o[:4] == "stop" {
			stops++
		}
	}
	if stops != 3 {
		t.Fatalf("reported before everything stopped: %v", r.orderSnapshot())
	}
	r.m.SetState(st) // the same view again: no second report
	time.Sleep(30 * time.Millisecond)
	if n, e := released(); n != 1 || e != 1 {
		t.Fatalf("released %d times, epoch %d", n, e)
	}
}
