package e2e

import (
	"testing"
	"time"

	"tandem/internal/events"
	"tandem/internal/testbed"
)

// Primary crash — CTS FlipTest / StopOnebyOne on the active node: every
// process of node1 gets SIGKILL; its VIP stays configured on its interface,
// so only the kernel-enforced lease keeps it silent.
func TestPrimaryCrash(t *testing.T) {
	r := startCluster(t, testbed.Spec{})
	f := r.bed.Kill("node1")
	o := r.failedOver("web", "node2", f)
	tk := r.waitEvent("node2", f.At, 5*time.Second, testbed.Kind(events.Takeover, "web"), "node2's takeover event")
	t.Logf("takeover: detect %v + decide %v + start %v ms", tk.Attrs["detect_ms"], tk.Attrs["decide_ms"], tk.Attrs["start_ms"])
	r.watchQuiet("web", "node2", o.End, 500*time.Millisecond, 100*time.Millisecond)
}

// Standby crash — CTS StopOnebyOne on the standby: nothing moves and the
// client sees no gap.
func TestStandbyCrash(t *testing.T) {
	r := startCluster(t, testbed.Spec{})
	f := r.bed.Kill("node2")
	r.waitEvent("node1", f.At, 5*time.Second, func(e events.Event) bool {
		return e.Kind == events.NodeDown && e.Subject == "node2"
	}, "node1 noticing node2 down")
	r.watchQuiet("web", "node1", f.At, quiet, 100*time.Millisecond)
}

// Witness crash — CTS StopOnebyOne on the quorum device: the two nodes
// keep a quorum; nothing moves, no gap.
func TestWitnessCrash(t *testing.T) {
	r := startCluster(t, testbed.Spec{})
	f := r.bed.Kill("witness")
	r.waitEvent("node1", f.At, 5*time.Second, func(e events.Event) bool {
		return e.Kind == events.NodeDown && e.Subject == "witness"
	}, "node1 noticing the witness down")
	r.watchQuiet("web", "node1", f.At, quiet, 100*time.Millisecond)
}

// Node restart — CTS RestartTest / RestartOnebyOne on the active node: it
// is killed and its agent started again at once on the same state. The
// group must come back exactly once (on either node) and never answer
// from both.
func TestPrimaryRestart(t *testing.T) {
	r := startCluster(t, testbed.Spec{})
	f, err := r.c.Restart("node1")
	if err != nil {
		t.Fatal(err)
	}
	s := r.waitServed("web", "", f.At, 5*time.Second)
	o := r.outage("web", f, s.Done.Add(time.Millisecond))
	if o.Ms > float64(maxFailover.Milliseconds()) {
		t.Errorf("unavailable for %.0f ms after the restart, target ≤ %v", o.Ms, maxFailover)
	}
	if err := r.c.WaitUp(r.ctx, 10*time.Second, "node1", "node2", "witness"); err != nil {
		t.Fatal(err)
	}
	r.watchQuiet("web", s.Node, s.Done, 500*time.Millisecond, 100*time.Millisecond)
}
