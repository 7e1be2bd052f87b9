package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"tandem/internal/events"
	"tandem/internal/testbed"
)

// Fencing in witness mode (issue 13, docs/fencing.md): each data node has
// a BMC (OpenIPMI's ipmi_sim on a host of its own) that the other node
// drives with Debian's fence_ipmilan; the BMC's power off kills every
// process of its node. The group's fence: always makes a takeover from an
// unreachable holder wait for a confirmed off.

type fenced struct {
	*run
	bmcs map[string]*testbed.BMC
}

func startFenced(t *testing.T) *fenced {
	g := testbed.DefaultGroup()
	g.Fence = "always"
	f := startWithBMCs(t, testbed.Spec{Groups: []testbed.GroupSpec{g}})
	f.waitAllPreferred()
	return f
}

// startWithBMCs starts spec's cluster with a BMC (ipmi_sim) for each data
// node, fenced by the other through fence_ipmilan.
func startWithBMCs(t *testing.T, spec testbed.Spec) *fenced {
	f := &fenced{bmcs: map[string]*testbed.BMC{}}
	f.run = newRunWith(t, spec, func(bed *testbed.Bed, s *testbed.Spec) {
		s.Extra = "fence_devices:\n"
		for _, n := range testbed.DataNodes {
			m, err := bed.AddBMC(t.Context(), n)
			if err != nil {
				t.Fatal(err)
			}
			f.bmcs[n] = m
			s.Extra += m.FenceDeviceYAML()
		}
	})
	if err := f.c.Start(); err != nil {
		t.Fatal(err)
	}
	return f
}

// fencedBy waits for node's confirmed fence of its peer after since and
// checks the BMC powered the peer off.
func (f *fenced) fencedBy(node, peer string, since time.Time) events.Event {
	f.t.Helper()
	e := f.waitEvent(node, since, 60*time.Second, func(e events.Event) bool {
		return e.Kind == events.FenceSucceeded && e.Subject == peer
	}, node+"'s confirmed fence of "+peer)
	if !f.bmcs[peer].PoweredOff() {
		f.t.Errorf("%s says %s is fenced, but its BMC did not power it off", node, peer)
	}
	return e
}

// startedAfter checks the takeover on node started after the fence.
func (f *fenced) startedAfter(node string, fence events.Event, since time.Time) {
	f.t.Helper()
	st := f.waitEvent(node, since, 30*time.Second, testbed.Kind(events.GroupStarted, "web"), node+" starting web")
	if st.Time.Before(fence.Time) {
		f.t.Errorf("%s started web at %s, before the fence was confirmed at %s", node, st.Time.Format("15:04:05.000"), fence.Time.Format("15:04:05.000"))
	}
	tk := f.waitEvent(node, since, 5*time.Second, testbed.Kind(events.Takeover, "web"), node+"'s takeover event")
	f.t.Logf("takeover after a fence: detect %v + decide %v + start %v ms; fence confirmed %v after the fault",
		tk.Attrs["detect_ms"], tk.Attrs["decide_ms"], tk.Attrs["start_ms"], fence.Time.Sub(since).Round(time.Millisecond))
}

// The holder's agent dies and its service keeps running (what the lease
// cannot stop): node2 powers node1 off through its BMC, then takes over.
func TestFenceAgentDeathFencesBeforeTakeover(t *testing.T) {
	f := startFenced(t)
	k, err := f.c.KillAgent("node1")
	if err != nil {
		t.Fatal(err)
	}
	if !f.bed.ServiceRunning("node1", "demo-service") {
		t.Fatal("the service died with its agent; the scenario needs it alive")
	}
	e := f.fencedBy("node2", "node1", k.At)
	f.startedAfter("node2", e, k.At)
	f.waitServed("web", "node2", k.At, 10*time.Second)
	if f.bed.ServiceRunning("node1", "demo-service") {
		t.Error("node1's service runs after its fence")
	}
}

// The holder is cut off from everyone: its lease ends and it stops, but
// it cannot say so; node2 fences it and takes over. node1 never fences.
func TestFenceCutOffHolder(t *testing.T) {
	f := startFenced(t)
	k, err := f.bed.CutOff("node1")
	if err != nil {
		t.Fatal(err)
	}
	e := f.fencedBy("node2", "node1", k.At)
	f.startedAfter("node2", e, k.At)
	f.waitServed("web", "node2", k.At, 10*time.Second)
}

// A frozen holder is powered off (SIGKILL reaches a stopped process) and
// the group moves; it never thaws into a second copy.
func TestFenceFrozenHolder(t *testing.T) {
	f := startFenced(t)
	k := f.bed.Freeze("node1")
	e := f.fencedBy("node2", "node1", k.At)
	f.startedAfter("node2", e, k.At)
	f.waitServed("web", "node2", k.At, 10*time.Second)
}

// A fence device that fails (wrong password) blocks the takeover: nothing
// starts on node2 while every attempt fails, and it is retried; once the
// password is right the fence confirms and the group moves.
func TestFenceFailureBlocksTakeover(t *testing.T) {
	f := startFenced(t)
	pw := f.bmcs["node1"].Password
	good, err := os.ReadFile(pw)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pw, []byte("wrong-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := f.c.KillAgent("node1")
	if err != nil {
		t.Fatal(err)
	}
	failed := f.waitEvent("node2", k.At, 90*time.Second, func(e events.Event) bool {
		return e.Kind == events.FenceFailed && e.Subject == "node1"
	}, "node2's failed fence of node1")
	t.Logf("fence failed as it must: %s", failed.Message)
	if v, err := f.c.GroupView(f.ctx, "web"); err != nil || v.Running && v.Holder == "node2" {
		t.Fatalf("web runs on node2 though node1 is not fenced: %+v %v", v, err)
	}
	if !f.bed.ServiceRunning("node1", "demo-service") || f.bmcs["node1"].PoweredOff() {
		t.Fatal("node1 is off though every fence failed")
	}
	st, err := f.c.Status(f.ctx, "node2")
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range st.Groups {
		if g.Name == "web" {
			t.Logf("node2's status of web: holder %s, waiting for %s", g.Holder, g.Waiting)
			if !strings.Contains(g.Waiting, "confirmed fence of node1") {
				t.Errorf("node2's status does not say web waits for a fence: %+v", g)
			}
		}
	}
	if err := os.WriteFile(pw, good, 0o600); err != nil {
		t.Fatal(err)
	}
	e := f.fencedBy("node2", "node1", failed.Time)
	f.startedAfter("node2", e, k.At)
	f.waitServed("web", "node2", k.At, 10*time.Second)
}

// The holder is cut from the witness only; node2 still hears it and
// vouches for its lease, so nothing moves and nobody is fenced: fencing
// must never take down a holder the cluster can still vouch for.
func TestFenceHolderCutFromWitnessOnlyStays(t *testing.T) {
	f := startFenced(t)
	k, err := f.bed.Partition("node1", "witness")
	if err != nil {
		t.Fatal(err)
	}
	f.watchQuiet("web", "node1", k.At, quiet, 100*time.Millisecond)
	for _, n := range testbed.DataNodes {
		evs, err := f.c.Events(n)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.Kind == events.FenceRequested && e.Time.After(k.At) {
				t.Errorf("%s asked to fence %s: %s", n, e.Subject, e.Message)
			}
		}
	}
	if f.bmcs["node1"].PoweredOff() {
		t.Error("node1 was powered off")
	}
}
