package fencepolicy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var t0 = time.Unix(1000, 0)

func newMachine(t *testing.T, mode Mode, self, preferred string) *Machine {
	t.Helper()
	peer := "b"
	if self == "b" {
		peer = "a"
	}
	m, err := New(Config{Self: self, Peer: peer, Mode: mode, Preferred: preferred,
		FenceDelay: time.Second, RetryMin: 100 * time.Millisecond, RetryMax: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func kinds(acts []Action) string {
	var s []string
	for _, a := range acts {
		s = append(s, a.Kind.String())
	}
	return strings.Join(s, ",")
}

func expect(t *testing.T, what string, acts []Action, want string) {
	t.Helper()
	if got := kinds(acts); got != want {
		t.Fatalf("%s: actions %q, want %q (%v)", what, got, want, acts)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Self: "a", Peer: "b", Preferred: "a", Mode: TwoNode, FenceDelay: time.Second, RetryMin: 1, RetryMax: 2}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []func(*Config){
		func(c *Config) { c.Peer = "a" },
		func(c *Config) { c.Self = "" },
		func(c *Config) { c.Preferred = "z" },
		func(c *Config) { c.RetryMin = 0 },
		func(c *Config) { c.RetryMax = 0 },
		func(c *Config) { c.FenceDelay = 0 },
	} {
		c := ok
		bad(&c)
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "fencepolicy: ") {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

// Witness mode: a takeover from an unreachable holder fences first by the
// group's policy, and only then may start.
func TestWitnessPolicy(t *testing.T) {
	for _, tc := range []struct {
		policy    Policy
		uncovered bool
		fence     bool
	}{
		{Always, false, true}, {Always, true, true},
		{WhenNeeded, true, true}, {WhenNeeded, false, false},
		{Never, true, false}, {Never, false, false},
	} {
		t.Run(fmt.Sprintf("%d/%v", tc.policy, tc.uncovered), func(t *testing.T) {
			m := newMachine(t, Witness, "a", "a")
			expect(t, "start", m.Start(t0, false), "")
			m.PeerHeard(t0)
			g := Group{Name: "g", Holder: "b", Policy: tc.policy, Uncovered: tc.uncovered}
			expect(t, "groups", m.SetGroups(t0, []Group{g}), "")
			expect(t, "lost", m.PeerLost(t0), "")
			g.Holder, g.From = "a", "b" // placement gave it to a
			acts := m.SetGroups(t0, []Group{g})
			if !tc.fence {
				expect(t, "takeover", acts, "")
				if !m.MayStart(g) {
					t.Fatal("a takeover the policy does not guard waits")
				}
				return
			}
			expect(t, "takeover", acts, "fence")
			if m.MayStart(g) {
				t.Fatal("may start before the fence")
			}
			expect(t, "failed", m.FenceDone(t0, Failed, "bad password"), "report,retry-scheduled")
			if m.MayStart(g) {
				t.Fatal("may start after a failed fence")
			}
			expect(t, "retry", m.Tick(t0.Add(100*time.Millisecond)), "fence")
			expect(t, "confirmed", m.FenceDone(t0, Confirmed, ""), "report,may-take-over")
			if !m.MayStart(g) {
				t.Fatal("may not start after a confirmed fence")
			}
			// A new loss needs a new fence.
			m.PeerHeard(t0)
			expect(t, "lost again", m.PeerLost(t0), "fence")
		})
	}
}

// A takeover from a reachable holder waits for its stop report, and
// fences it if it is lost first.
func TestWitnessReachableHolder(t *testing.T) {
	m := newMachine(t, Witness, "a", "a")
	m.Start(t0, false)
	m.PeerHeard(t0)
	g := Group{Name: "g", Holder: "a", From: "b", Policy: Always, Uncovered: true}
	expect(t, "takeover from a heard node", m.SetGroups(t0, []Group{g}), "")
	if m.MayStart(g) {
		t.Fatal("starts before the heard old holder reported the group stopped")
	}
	g.FromStopped = true
	if !m.MayStart(g) {
		t.Fatal("waits for a fence of a holder that reported the group stopped")
	}
	g.FromStopped = false
	expect(t, "lost before its report", m.PeerLost(t0), "fence")
	expect(t, "failed", m.FenceDone(t0, Failed, ""), "report,retry-scheduled")
	g.FromStopped = true // the report came through after all
	expect(t, "reported", m.SetGroups(t0, []Group{g}), "fence-cancelled")
	expect(t, "no retry", m.Tick(t0.Add(time.Hour)), "")
}

// Two-node: the race, by groups run and then the preferred node.
func TestTwoNodeRace(t *testing.T) {
	for _, tc := range []struct {
		self, preferred string
		groups          []Group
		now             bool
	}{
		{"a", "a", nil, true},
		{"b", "a", nil, false},
		{"b", "a", []Group{{Name: "g", Holder: "b", RunningHere: true}}, true},
		{"a", "a", []Group{{Name: "g", Holder: "b"}}, false},
		{"a", "a", []Group{{Name: "g", Holder: "a", RunningHere: true}, {Name: "h", Holder: "b"}}, true},
		{"b", "a", []Group{{Name: "g", Holder: "a"}, {Name: "h", Holder: "b", RunningHere: true}}, false},
	} {
		m := newMachine(t, TwoNode, tc.self, tc.preferred)
		expect(t, "start", m.Start(t0, false), "waiting")
		m.PeerHeard(t0)
		m.PeerJoined(t0)
		m.SetGroups(t0, tc.groups)
		acts := m.PeerLost(t0)
		if tc.now {
			expect(t, "winner", acts, "fence")
			continue
		}
		expect(t, "loser", acts, "fence-scheduled")
		if acts[0].At != t0.Add(time.Second) || m.NextTick() != acts[0].At {
			t.Fatalf("scheduled at %v, next tick %v", acts[0].At, m.NextTick())
		}
		expect(t, "early tick", m.Tick(t0.Add(999*time.Millisecond)), "")
		expect(t, "delay over", m.Tick(t0.Add(time.Second)), "fence")
	}
}

// Two-node: heard again during the delay calls the fence off; a failure
// while the peer is heard is not retried.
func TestTwoNodeHeardAgain(t *testing.T) {
	m := newMachine(t, TwoNode, "b", "a")
	m.Start(t0, false)
	m.PeerHeard(t0)
	m.PeerJoined(t0)
	expect(t, "lost", m.PeerLost(t0), "fence-scheduled")
	expect(t, "heard", m.PeerHeard(t0.Add(time.Second/2)), "fence-cancelled")
	expect(t, "tick", m.Tick(t0.Add(2*time.Second)), "")
	if !m.MayStart(Group{Name: "g"}) {
		t.Fatal("a paired node hearing its peer may not start")
	}
	m.PeerLost(t0.Add(3 * time.Second))
	expect(t, "delay", m.Tick(t0.Add(4*time.Second)), "fence")
	m.PeerHeard(t0.Add(4 * time.Second))
	expect(t, "failed while heard", m.FenceDone(t0.Add(4*time.Second), TimedOut, ""), "report")
	if m.NextTick() != (time.Time{}) {
		t.Fatal("a retry is pending")
	}
}

// Two-node: a confirmed fence, raft recovery, the takeover, the re-add.
func TestTwoNodeSurvivor(t *testing.T) {
	m := newMachine(t, TwoNode, "a", "a")
	m.Start(t0, false)
	m.PeerHeard(t0)
	m.PeerJoined(t0)
	g := Group{Name: "g", Holder: "b"}
	m.SetGroups(t0, []Group{g})
	expect(t, "lost", m.PeerLost(t0), "fence-scheduled")
	expect(t, "delay", m.Tick(t0.Add(time.Second)), "fence")
	if !m.SelfGrant() {
		t.Fatal("no self-granted lease while the peer is lost")
	}
	backoff := []time.Duration{100, 200, 400, 400}
	now := t0.Add(time.Second)
	for i, b := range backoff {
		acts := m.FenceDone(now, Failed, "")
		expect(t, "failed", acts, "report,retry-scheduled")
		if acts[1].At != now.Add(b*time.Millisecond) {
			t.Fatalf("retry %d after %v", i, acts[1].At.Sub(now))
		}
		if m.MayStart(g) || m.AcceptsPeer() != true {
			t.Fatal("may start, or refuses the peer, after a failed fence")
		}
		now = acts[1].At
		expect(t, "retry", m.Tick(now), "fence")
	}
	expect(t, "confirmed", m.FenceDone(now, Confirmed, ""), "report,recover-raft")
	if m.MayStart(g) || m.AcceptsPeer() {
		t.Fatal("may start before raft is recovered, or still accepts the fenced peer")
	}
	expect(t, "recovery failed", m.RaftRecoverFailed(now, errors.New("disk full")), "report")
	if m.MayStart(g) || m.NextTick() != now.Add(100*time.Millisecond) {
		t.Fatalf("may start after a failed recovery, or next tick %v", m.NextTick())
	}
	now = now.Add(100 * time.Millisecond)
	expect(t, "recovery again", m.Tick(now), "recover-raft")
	expect(t, "recovered", m.RaftRecovered(now), "may-take-over")
	if !m.MayStart(g) || !m.SoleVoter() {
		t.Fatal("the sole voter may not start after a confirmed fence")
	}
	expect(t, "heard", m.PeerHeard(now), "readd-peer")
	expect(t, "re-add again", m.Tick(now.Add(100*time.Millisecond)), "readd-peer")
	m.PeerReadded(now)
	if m.SoleVoter() || !m.AcceptsPeer() || !m.MayStart(g) {
		t.Fatal("not back to a pair after the re-add")
	}
}

// Wait-for-all: a restarted voter of two never fences and starts nothing
// until joined; a restarted sole voter fences first.
func TestTwoNodeRestart(t *testing.T) {
	m := newMachine(t, TwoNode, "b", "b")
	expect(t, "start", m.Start(t0, false), "waiting")
	expect(t, "lost", m.PeerLost(t0), "waiting")
	if m.MayStart(Group{Name: "g"}) || m.SelfGrant() {
		t.Fatal("a waiting node may start or self-grant")
	}
	expect(t, "heard", m.PeerHeard(t0), "")
	if m.MayStart(Group{Name: "g"}) {
		t.Fatal("heard is not joined")
	}
	m.PeerJoined(t0)
	if !m.MayStart(Group{Name: "g"}) {
		t.Fatal("joined and heard may not start")
	}

	s := newMachine(t, TwoNode, "a", "b")
	expect(t, "sole start", s.Start(t0, true), "fence")
	if s.MayStart(Group{Name: "g"}) {
		t.Fatal("sole voter starts before its fence")
	}
	expect(t, "confirmed", s.FenceDone(t0, Confirmed, ""), "report")
	if !s.MayStart(Group{Name: "g"}) {
		t.Fatal("sole voter may not start after its fence")
	}
}

func TestMemoryFencer(t *testing.T) {
	var f Memory
	f.SetMode("b", MemoryFail)
	f.SetMode("c", MemoryHang)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	for _, tc := range []struct {
		node string
		want Outcome
	}{{"a", Confirmed}, {"b", Failed}, {"c", TimedOut}} {
		ok, err := f.Fence(ctx, tc.node, "test")
		if got := OutcomeOf(ok, err); got != tc.want {
			t.Errorf("%s: %v (%v, %v), want %v", tc.node, got, ok, err, tc.want)
		}
	}
	if got := OutcomeOf(false, nil); got != Failed {
		t.Errorf("not verified off without an error: %v", got)
	}
	if got := OutcomeOf(false, fmt.Errorf("fence: %w", timeoutErr{})); got != TimedOut {
		t.Errorf("an error that says Timeout(): %v", got)
	}
	if got := OutcomeOf(true, errors.New("x")); got != Failed {
		t.Errorf("confirmed with an error: %v", got)
	}
	if c := f.Calls(); len(c) != 3 || c[0] != "a: test" {
		t.Errorf("calls %q", c)
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string { return "i/o timeout" }
func (timeoutErr) Timeout() bool { return true }

// The operator's fence ends wait-for-all: the node recovers raft and may
// start.
func TestTwoNodeManualFence(t *testing.T) {
	m := newMachine(t, TwoNode, "b", "a")
	expect(t, "start", m.Start(t0, false), "waiting")
	expect(t, "lost", m.PeerLost(t0), "waiting")
	g := Group{Name: "g", Holder: "a"}
	m.SetGroups(t0, []Group{g})
	expect(t, "manual", m.ManualFence(t0), "report,recover-raft")
	if m.MayStart(g) {
		t.Fatal("starts before raft is recovered")
	}
	expect(t, "recovered", m.RaftRecovered(t0), "may-take-over")
	if !m.MayStart(g) {
		t.Fatal("may not start after the operator's fence")
	}
}

// Witness mode: a fence covers the holdings it ended, not one the peer
// took up afterwards at a newer epoch without this node hearing it.
func TestWitnessFenceCoversOlderEpochs(t *testing.T) {
	m := newMachine(t, Witness, "a", "a")
	m.Start(t0, false)
	m.PeerLost(t0)
	g := Group{Name: "g", Holder: "a", From: "b", FromEpoch: 1, Epoch: 2, Policy: Always}
	expect(t, "takeover", m.SetGroups(t0, []Group{g}), "fence")
	expect(t, "confirmed", m.FenceDone(t0, Confirmed, ""), "report,may-take-over")
	if !m.MayStart(g) {
		t.Fatal("the fence does not cover the holding it ended")
	}
	// b came back unheard, took g at epoch 3, and is now lost to the state.
	g.FromEpoch, g.Epoch = 3, 4
	expect(t, "a newer takeover", m.SetGroups(t0, []Group{g}), "fence")
	if m.MayStart(g) {
		t.Fatal("an old fence covers a holding that began after it")
	}
	expect(t, "confirmed again", m.FenceDone(t0, Confirmed, ""), "report,may-take-over")
	if !m.MayStart(g) {
		t.Fatal("the new fence does not cover the holding")
	}
}
