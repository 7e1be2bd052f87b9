package e2e

import (
	"testing"
	"time"

	"tandem/internal/events"
	"tandem/internal/testbed"
)

// Primary freeze then thaw — no CTS test freezes a node; it is the fault
// keepalived turns into two masters. node1 is SIGSTOPped: its kernel keeps
// answering for anything still configured, so the kernel lease must
// silence the VIP; after the thaw node1 must check its lease before
// touching anything and stand down.
func TestPrimaryFreezeThaw(t *testing.T) {
	r := startCluster(t, testbed.Spec{})
	f := r.bed.Freeze("node1")
	o := r.failedOver("web", "node2", f)
	r.sleep(300 * time.Millisecond) // frozen well past its lease
	thaw := r.bed.Thaw("node1")
	r.waitEvent("node1", thaw.At, 5*time.Second, testbed.Kind(events.GroupStopped, "web"), "node1 stopping the group after the thaw")
	r.watchQuiet("web", "node2", o.End, 500*time.Millisecond, 100*time.Millisecond)
}

// Primary isolated — CTS SplitBrainTest with a one-node side: every link
// of node1 goes down (as a dead NIC or switch port). node2 takes over;
// when the links return, the group stays on node2 (failback manual) and
// node1 never answers again.
func TestPrimaryIsolated(t *testing.T) {
	r := startCluster(t, testbed.Spec{})
	f, err := r.bed.Isolate("node1")
	if err != nil {
		t.Fatal(err)
	}
	o := r.failedOver("web", "node2", f)
	r.waitEvent("node1", f.At, 5*time.Second, testbed.Kind(events.LeaseLost, "web"), "node1 losing its lease")
	heal := r.heal()
	if err := r.c.WaitUp(r.ctx, 10*time.Second, "node1"); err != nil {
		t.Fatal(err)
	}
	r.watchQuiet("web", "node2", o.End, time.Until(heal.At.Add(settle+300*time.Millisecond)), 100*time.Millisecond)
}

// Primary cut off from both peers while clients still reach it — the
// split brain keepalived shows on a partition. nftables drops everything
// between node1 and {node2, witness}; the client still reaches node1, so
// node1 must silence the VIP itself when its lease ends.
func TestPrimaryCutOffFromPeers(t *testing.T) {
	r := startCluster(t, testbed.Spec{})
	f, err := r.bed.CutOff("node1")
	if err != nil {
		t.Fatal(err)
	}
	o := r.failedOver("web", "node2", f)
	r.waitEvent("node1", f.At, 5*time.Second, testbed.Kind(events.LeaseLost, "web"), "node1 losing its lease")
	r.sleep(300 * time.Millisecond) // the client keeps asking both
	r.heal()
	if err := r.c.WaitUp(r.ctx, 10*time.Second, "node1"); err != nil {
		t.Fatal(err)
	}
	r.watchQuiet("web", "node2", o.End, 500*time.Millisecond, 100*time.Millisecond)
}

// Partition between the data nodes, both still reaching the witness —
// CTS SplitBrainTest with the quorum device on one side of each cut. The
// witness (raft leader) still hears node1, which keeps renewing its lease
// through it: nothing may move.
func TestPartitionBetweenNodes(t *testing.T) {
	r := startCluster(t, testbed.Spec{})
	f, err := r.bed.Partition("node1", "node2")
	if err != nil {
		t.Fatal(err)
	}
	r.waitEvent("node2", f.At, 5*time.Second, func(e events.Event) bool {
		return e.Kind == events.NodeDown && e.Subject == "node1"
	}, "node2 noticing the partition")
	r.watchQuiet("web", "node1", f.At, quiet, 100*time.Millisecond)
	r.heal()
	r.watchQuiet("web", "node1", f.At, 500*time.Millisecond, 100*time.Millisecond)
}

// One-way partitions — no CTS equivalent (CTS cuts both ways): one
// direction of a pair is dropped. No split brain in any case; where the
// active node still has a quorum in both directions, nothing moves.
func TestOneWayPartition(t *testing.T) {
	for _, tc := range []struct{ from, to string }{
		{"node1", "node2"},
		{"node2", "node1"},
		{"node1", "witness"},
		{"witness", "node1"},
	} {
		t.Run(tc.from+"-to-"+tc.to, func(t *testing.T) {
			r := startCluster(t, testbed.Spec{})
			f, err := r.bed.OneWay(tc.from, tc.to)
			if err != nil {
				t.Fatal(err)
			}
			r.waitEvent(tc.to, f.At, 5*time.Second, func(e events.Event) bool {
				return e.Kind == events.NodeDown && e.Subject == tc.from
			}, tc.to+" noticing that "+tc.from+" went silent")
			r.watchQuiet("web", "node1", f.At, quiet, 100*time.Millisecond)
			r.heal()
		})
	}
}

// One of two heartbeat links lost — CTS has none (corosync's redundant
// rings): no failover may happen. Link 1 (the dedicated heartbeat path)
// goes down at the switch; then link 0 is blocked between the nodes only
// (node1 still reaches the witness and the client on it).
func TestHeartbeatLinkDown(t *testing.T) {
	t.Run("link1-down", func(t *testing.T) {
		r := startCluster(t, testbed.Spec{})
		f, err := r.bed.LinkDown("node1", 1)
		if err != nil {
			t.Fatal(err)
		}
		r.waitEvent("node2", f.At, 5*time.Second, func(e events.Event) bool {
			return e.Kind == events.LinkDown && e.Subject == "node1/1"
		}, "node2 noticing link 1 down")
		r.watchQuiet("web", "node1", f.At, quiet, 100*time.Millisecond)
		up, err := r.bed.LinkUp("node1", 1)
		if err != nil {
			t.Fatal(err)
		}
		r.waitEvent("node2", up.At, 5*time.Second, func(e events.Event) bool {
			return e.Kind == events.LinkUp && e.Subject == "node1/1"
		}, "node2 noticing link 1 back")
		r.noNodeDown(f.At)
	})
	t.Run("link0-blocked-between-nodes", func(t *testing.T) {
		r := startCluster(t, testbed.Spec{})
		f, err := r.bed.PartitionLink("node1", "node2", 0)
		if err != nil {
			t.Fatal(err)
		}
		r.waitEvent("node2", f.At, 5*time.Second, func(e events.Event) bool {
			return e.Kind == events.LinkDown && e.Subject == "node1/0"
		}, "node2 noticing link 0 down")
		r.watchQuiet("web", "node1", f.At, quiet, 100*time.Millisecond)
		r.heal()
		r.noNodeDown(f.At)
	})
}

// Link flapping — CTS has none. First link 1 flaps fast (nothing may
// happen); then every link of node1 flaps slowly enough that node1 is
// declared down each time: the group moves to node2 once and must not
// come back while node1 flaps (with failback auto and a 2 s failback_hold
// it returns once, after node1 has been steady that long).
func TestLinkFlapping(t *testing.T) {
	t.Run("heartbeat-link", func(t *testing.T) {
		r := startCluster(t, testbed.Spec{})
		from := time.Now()
		if err := r.bed.Flap(r.ctx, "node1", []int{1}, 60*time.Millisecond, 60*time.Millisecond, 15); err != nil {
			t.Fatal(err)
		}
		r.watchQuiet("web", "node1", from, 300*time.Millisecond, 100*time.Millisecond)
		r.noNodeDown(from)
	})
	t.Run("all-links", func(t *testing.T) {
		g := testbed.DefaultGroup()
		g.Failback, g.FailbackHold = "auto", "2s"
		r := startCluster(t, testbed.Spec{Groups: []testbed.GroupSpec{g}})
		if err := r.bed.Flap(r.ctx, "node1", []int{0, 1}, 300*time.Millisecond, 300*time.Millisecond, 5); err != nil {
			t.Fatal(err)
		}
		stopped := time.Now()
		moves := r.probes["web"].Timeline().Moves()
		if len(moves) != 1 || moves[0] != "node1→node2" {
			t.Errorf("while node1 flapped the group moved %v; want once, node1→node2", moves)
		}
		back := r.waitServed("web", "node1", stopped, 10*time.Second)
		if d := back.Sent.Sub(stopped); d < 2*time.Second-200*time.Millisecond {
			t.Errorf("failback %v after the flapping stopped; it must wait ~2 s (failback_hold) of steady reachability", d)
		}
		r.watchQuiet("web", "node1", back.Done, 300*time.Millisecond, 100*time.Millisecond)
		if moves := r.probes["web"].Timeline().Moves(); len(moves) != 2 {
			t.Errorf("moves %v; want node1→node2→node1", moves)
		}
	})
}

// Slow links — CTS has none (corosync's token timeout covers it): node1's
// outgoing traffic is squeezed through tbf, link 0 (which also carries the
// client's traffic, ~0.5 Mbit/s of probes) to 2 Mbit/s and the heartbeat
// link to 128 kbit/s, with up to 50 ms of queueing; heartbeats still
// arrive in time, so nothing may move.
func TestSlowLinks(t *testing.T) {
	r := startCluster(t, testbed.Spec{})
	f, err := r.bed.Slow("node1", 0, "2mbit", 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.bed.Slow("node1", 1, "128kbit", 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	r.watchQuiet("web", "node1", f.At, quiet, 150*time.Millisecond)
	r.heal()
	r.noNodeDown(f.At)
}

// heal undoes every network fault.
func (r *run) heal() testbed.Fault {
	r.t.Helper()
	f, err := r.bed.Heal()
	if err != nil {
		r.t.Fatal(err)
	}
	return f
}

// noNodeDown checks that neither data node declared the other down since.
func (r *run) noNodeDown(since time.Time) {
	r.t.Helper()
	for _, h := range []string{"node1", "node2", "witness"} {
		evs, err := r.c.Events(h)
		if err != nil {
			r.t.Fatal(err)
		}
		for _, e := range evs {
			if !e.Time.Before(since) && e.Kind == events.NodeDown && (e.Subject == "node1" || e.Subject == "node2") {
				r.t.Errorf("%s declared %s down at %s", h, e.Subject, e.Time.Format("15:04:05.000"))
			}
		}
	}
}

// A stale holder back while the new one restarts — found by a random
// schedule (seed 9040). node1 is cut off and node2 takes over at epoch 2;
// node2 dies; node1's links return as node2's agent restarts. Neither may
// run the group at node1's superseded epoch 1: it must come back through a
// new placement (or on node2 at epoch 2), never at an epoch that went
// backwards (S2).
func TestStaleHolderReturns(t *testing.T) {
	r := startCluster(t, testbed.Spec{})
	f, err := r.bed.CutOff("node1")
	if err != nil {
		t.Fatal(err)
	}
	r.failedOver("web", "node2", f)
	r.bed.Kill("node2")
	r.sleep(time.Second) // node1's lease is long gone; nobody runs the group; the witness alone loses raft leadership
	if err := r.c.Start("node2"); err != nil {
		t.Fatal(err)
	}
	r.heal()
	r.waitServed("web", "", time.Now(), 10*time.Second)
	if err := r.c.WaitUp(r.ctx, 10*time.Second, testbed.Voters...); err != nil {
		t.Fatal(err)
	}
	if _, err := r.probes["web"].WaitSteady(r.ctx, time.Second, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}
