package placement

import (
	"math/rand"
	"testing"
	"time"

	"tandem/internal/config"
	"tandem/internal/state"
)

var t0 = time.Unix(1_700_000_000, 0)

func group(name string, prefer []string, fb config.Failback) config.Group {
	return config.Group{Name: name, Prefer: prefer, Nodes: []string{"a", "b"}, Failback: fb,
		MaxRestarts: 3, FailureTimeout: config.Duration(10 * time.Minute)}
}

var manual = config.Failback{Mode: config.FailbackManual}

func input(groups []config.Group, st *state.State, reachable ...string) Input {
	in := Input{Now: t0, Groups: groups, State: st, Reachable: map[string]bool{},
		ReachableSince: map[string]time.Time{}, LastHeard: map[string]time.Time{}, DownAt: map[string]time.Time{},
		LeaderSince: t0.Add(-time.Hour), Settle: 2 * time.Second}
	for _, n := range reachable {
		in.Reachable[n] = true
		in.ReachableSince[n] = t0.Add(-time.Hour)
	}
	return in
}

func held(holder string, epoch uint64) *state.State {
	s := state.New()
	s.Groups["g"] = &state.Group{Holder: holder, Epoch: epoch}
	return s
}

func one(t *testing.T, cmds []state.Command) state.Command {
	t.Helper()
	if len(cmds) != 1 {
		t.Fatalf("want one command, got %+v", cmds)
	}
	return cmds[0]
}

func TestColdStartWaitsForPreferred(t *testing.T) {
	g := []config.Group{group("g", []string{"a"}, manual)}
	in := input(g, state.New(), "b")
	in.LeaderSince = t0.Add(-time.Second)
	if c := Decide(in); len(c) != 0 {
		t.Fatalf("placed on b while a may still come: %+v", c)
	}
	in.Reachable["a"] = true
	if c := one(t, Decide(in)); c.Holder != "a" || c.Epoch != 0 {
		t.Fatalf("%+v", c)
	}
	in = input(g, state.New(), "b")
	in.LeaderSince = t0.Add(-3 * time.Second)
	if c := one(t, Decide(in)); c.Holder != "b" {
		t.Fatalf("after settle it must start on b: %+v", c)
	}
}

func TestTakeoverWhenHolderUnreachable(t *testing.T) {
	g := []config.Group{group("g", []string{"a"}, manual)}
	in := input(g, held("a", 3), "b")
	in.LastHeard["a"] = t0.Add(-200 * time.Millisecond)
	in.DownAt["a"] = t0.Add(-50 * time.Millisecond)
	c := one(t, Decide(in))
	if c.Holder != "b" || c.Epoch != 3 || c.Takeover == nil || c.Takeover.DetectMs != 150 || c.Takeover.From != "a" {
		t.Fatalf("%+v %+v", c, c.Takeover)
	}
	// Nobody else: leave it with the unreachable holder.
	if c := Decide(input(g, held("a", 3))); len(c) != 0 {
		t.Fatalf("%+v", c)
	}
}

func TestFailbackModes(t *testing.T) {
	for _, tc := range []struct {
		fb    config.Failback
		upFor time.Duration
		stick int
		move  bool
	}{
		{manual, time.Hour, 0, false},
		{config.Failback{Mode: config.FailbackAuto}, time.Second, 0, false}, // not settled yet
		{config.Failback{Mode: config.FailbackAuto}, 3 * time.Second, 0, true},
		{config.Failback{Mode: config.FailbackAuto}, time.Hour, 100, false}, // stickiness outweighs preference
		{config.Failback{Mode: config.FailbackDelay, Delay: time.Minute}, 30 * time.Second, 0, false},
		{config.Failback{Mode: config.FailbackDelay, Delay: time.Minute}, 61 * time.Second, 0, true},
	} {
		g := group("g", []string{"a"}, tc.fb)
		g.Stickiness = tc.stick
		in := input([]config.Group{g}, held("b", 2), "a", "b")
		in.ReachableSince["a"] = t0.Add(-tc.upFor)
		cmds := Decide(in)
		if moved := len(cmds) == 1 && cmds[0].Holder == "a"; moved != tc.move {
			t.Errorf("%+v: commands %+v", tc, cmds)
		}
		if len(cmds) == 1 && cmds[0].Takeover != nil {
			t.Errorf("a failback is planned, not a takeover")
		}
	}
}

func TestStandbyMaintenanceBanBlock(t *testing.T) {
	g := []config.Group{group("g", []string{"a"}, manual)}
	st := held("a", 1)
	st.Node("a").Standby = true
	if c := one(t, Decide(input(g, st, "a", "b"))); c.Holder != "b" {
		t.Fatalf("standby: %+v", c)
	}
	st = held("a", 1)
	st.Node("b").Standby = true
	st.Node("a").Standby = true
	if c := one(t, Decide(input(g, st, "a", "b"))); c.Holder != "" {
		t.Fatalf("both standby: must stop, got %+v", c)
	}
	st = held("a", 1)
	st.Maintenance = true
	st.Node("a").Standby = true
	if c := Decide(input(g, st, "b")); len(c) != 0 {
		t.Fatalf("cluster maintenance decides nothing: %+v", c)
	}
	st = held("a", 1)
	st.Node("a").Maintenance = true
	if c := Decide(input(g, st, "b")); len(c) != 0 {
		t.Fatalf("holder in maintenance is left alone: %+v", c)
	}
	st = held("a", 1)
	st.Groups["g"].Failures = map[string]*state.Failure{"a": {Count: 4, Banned: true, Last: t0.Add(-time.Minute)}}
	if c := one(t, Decide(input(g, st, "a", "b"))); c.Holder != "b" {
		t.Fatalf("banned: %+v", c)
	}
	st.Groups["g"].Failures["a"].Last = t0.Add(-11 * time.Minute) // expired
	if c := Decide(input(g, st, "a", "b")); len(c) != 0 {
		t.Fatalf("expired ban still applied: %+v", c)
	}
	st = held("a", 1)
	st.Groups["g"].Blocked = "not configured"
	if c := one(t, Decide(input(g, st, "a", "b"))); c.Holder != "" {
		t.Fatalf("blocked: %+v", c)
	}
}

func TestMutualStandby(t *testing.T) {
	g := []config.Group{group("g1", []string{"a"}, manual), group("g2", []string{"b"}, manual)}
	cmds := Decide(input(g, state.New(), "a", "b"))
	if len(cmds) != 2 || cmds[0].Holder != "a" || cmds[1].Holder != "b" {
		t.Fatalf("%+v", cmds)
	}
}

// TestAgainstBruteForce checks Decide on random inputs against a direct
// reading of the rules: never an ineligible target, the best eligible node
// when the holder must move, nothing under cluster maintenance or a healthy
// holder with manual failback, and always the current epoch.
func TestAgainstBruteForce(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	nodes := []string{"a", "b", "c"}
	for i := 0; i < 5000; i++ {
		g := config.Group{Name: "g", Nodes: nodes, FailureTimeout: config.Duration(time.Minute),
			Failback:   []config.Failback{manual, {Mode: config.FailbackAuto}}[rng.Intn(2)],
			Stickiness: []int{0, 50, 500}[rng.Intn(3)]}
		for _, n := range nodes {
			if rng.Intn(2) == 0 {
				g.Prefer = append(g.Prefer, n)
			}
		}
		st := held([]string{"", "a", "b", "c"}[rng.Intn(4)], uint64(1+rng.Intn(5)))
		in := input([]config.Group{g}, st)
		elig := map[string]bool{}
		for _, n := range nodes {
			in.Reachable[n] = rng.Intn(3) > 0
			in.ReachableSince[n] = t0.Add(-time.Hour)
			st.Node(n).Standby = rng.Intn(5) == 0
			if rng.Intn(6) == 0 {
				st.Groups["g"].Failures = map[string]*state.Failure{n: {Banned: true, Last: t0}}
			}
		}
		for _, n := range nodes {
			f := st.Groups["g"].Failures[n]
			elig[n] = in.Reachable[n] && !st.Nodes[n].Standby && !(f != nil && f.Banned)
		}
		st.Maintenance = rng.Intn(10) == 0
		cmds := Decide(in)
		h := st.Groups["g"].Holder
		if st.Maintenance && len(cmds) > 0 {
			t.Fatalf("case %d: decided under maintenance", i)
		}
		if len(cmds) == 0 {
			if !st.Maintenance && h != "" && !elig[h] && in.Reachable[h] {
				t.Fatalf("case %d: reachable ineligible holder %s kept", i, h)
			}
			continue
		}
		c := cmds[0]
		if c.Epoch != st.Groups["g"].Epoch {
			t.Fatalf("case %d: epoch %d vs %d", i, c.Epoch, st.Groups["g"].Epoch)
		}
		if c.Holder != "" && !elig[c.Holder] {
			t.Fatalf("case %d: target %s not eligible", i, c.Holder)
		}
		if h != "" && elig[h] && g.Failback.Mode == config.FailbackManual {
			t.Fatalf("case %d: moved a healthy group with manual failback", i)
		}
		// The target maximizes score among eligible nodes (with stickiness).
		for _, n := range nodes {
			if elig[n] && c.Holder != "" {
				sn, sc := score(&g, n), score(&g, c.Holder)
				if n == h {
					sn += g.Stickiness
				}
				if sn > sc {
					t.Fatalf("case %d: %s (score %d) beats target %s (%d)", i, n, sn, c.Holder, sc)
				}
			}
		}
	}
}

func TestPinnedGroupStaysPut(t *testing.T) {
	g := []config.Group{group("g", []string{"a"}, config.Failback{Mode: config.FailbackAuto})}
	st := held("b", 2)
	st.Groups["g"].Pinned = "b"
	if c := Decide(input(g, st, "a", "b")); len(c) != 0 {
		t.Fatalf("pinned group failed back: %+v", c)
	}
	st.Node("b").Standby = true
	if c := one(t, Decide(input(g, st, "a", "b"))); c.Holder != "a" {
		t.Fatalf("pinned node in standby: %+v", c)
	}
}

// A move off a node that can still stop the group is a handover (the
// holder stops first); off an unreachable one, a takeover.
func TestMovesOffALiveHolderAreHandovers(t *testing.T) {
	g := []config.Group{group("g", []string{"a"}, manual)}
	st := held("a", 5)
	st.Nodes["a"] = &state.Node{Standby: true}
	c := one(t, Decide(input(g, st, "a", "b")))
	if c.Op != state.OpHandover || c.Holder != "b" || c.Epoch != 5 || c.Takeover != nil {
		t.Fatalf("standby of a live holder: %+v", c)
	}
	st.Groups["g"].Handover = "b"
	if c := Decide(input(g, st, "a", "b")); len(c) != 0 {
		t.Fatalf("handover under way must not be asked again: %+v", c)
	}
	// The holder dies during the handover: take over at once.
	c = one(t, Decide(input(g, st, "b")))
	if c.Op != state.OpPlace || c.Holder != "b" || c.Takeover == nil {
		t.Fatalf("holder lost during handover: %+v", c)
	}
}

// A node whose agent is shutting down hands its groups over and gets none.
func TestLeavingNodeHandsOver(t *testing.T) {
	g := []config.Group{group("g", []string{"a"}, manual)}
	st := held("a", 2)
	st.Nodes["a"] = &state.Node{Leaving: true}
	c := one(t, Decide(input(g, st, "a", "b")))
	if c.Op != state.OpHandover || c.Holder != "b" {
		t.Fatalf("%+v", c)
	}
	st = state.New()
	st.Nodes["a"] = &state.Node{Leaving: true}
	c = one(t, Decide(input(g, st, "a", "b")))
	if c.Holder != "b" {
		t.Fatalf("placed on a leaving node: %+v", c)
	}
}

// An admin handover to a node that then goes away is called off, so the
// holder runs the group again; a forced move's target that goes away is
// replaced by the best other node.
func TestHandoverTargetLost(t *testing.T) {
	g := []config.Group{group("g", []string{"a"}, manual)}
	st := held("a", 3)
	st.Groups["g"].Handover = "b"
	c := one(t, Decide(input(g, st, "a")))
	if c.Op != state.OpHandover || c.Holder != "" || c.Epoch != 3 {
		t.Fatalf("handover to a lost node must be called off: %+v", c)
	}
	g3 := []config.Group{{Name: "g", Prefer: []string{"a"}, Nodes: []string{"a", "b", "c"}, Failback: manual,
		MaxRestarts: 3, FailureTimeout: config.Duration(time.Minute)}}
	st = held("a", 3)
	st.Groups["g"].Handover = "b"
	st.Nodes["a"] = &state.Node{Standby: true}
	c = one(t, Decide(input(g3, st, "a", "c")))
	if c.Op != state.OpHandover || c.Holder != "c" {
		t.Fatalf("handover off a standby holder must be redirected: %+v", c)
	}
}

// Seen item 7: a node started with another configuration (another VIP)
// gets no group while config_mismatch is block; the holder keeps its group.
func TestConfigDriftBlocksTakeoverOntoTheNode(t *testing.T) {
	g := []config.Group{group("g", []string{"a"}, manual)}
	st := held("a", 4)
	st.Nodes["a"] = &state.Node{Config: "x", Standby: true}
	st.Nodes["b"] = &state.Node{Config: "y"}
	st.Nodes["w"] = &state.Node{Config: "x"}
	in := input(g, st, "a", "b")
	in.Voters, in.BlockDrift = []string{"a", "b", "w"}, true
	if c := Decide(in); len(c) != 1 || c[0].Holder != "" {
		t.Fatalf("moved onto a node with another configuration: %+v", c)
	}
	in.BlockDrift = false
	if c := one(t, Decide(in)); c.Holder != "b" {
		t.Fatalf("warn only: %+v", c)
	}
	// The drifted node holds the group: it stays.
	st = held("b", 4)
	st.Nodes["a"] = &state.Node{Config: "x"}
	st.Nodes["b"] = &state.Node{Config: "y"}
	st.Nodes["w"] = &state.Node{Config: "x"}
	in = input(g, st, "a", "b")
	in.Voters, in.BlockDrift = []string{"a", "b", "w"}, true
	if c := Decide(in); len(c) != 0 {
		t.Fatalf("a drifted holder must keep its group: %+v", c)
	}
}

// Seen item 8: with failback auto, a node that lost the group by a
// takeover (a blip) gets it back only after failback_hold, not after the
// one-second settle: one blip, one move.
func TestFailbackHoldAfterTakeover(t *testing.T) {
	auto := config.Failback{Mode: config.FailbackAuto}
	gr := group("g", []string{"a"}, auto)
	gr.FailbackHold = config.Duration(time.Minute)
	st := held("b", 5)
	st.Groups["g"].Takeover = &state.Takeover{From: "a", To: "b", Epoch: 5}
	in := input([]config.Group{gr}, st, "a", "b")
	in.ReachableSince["a"] = t0.Add(-10 * time.Second)
	if c := Decide(in); len(c) != 0 {
		t.Fatalf("failback 10 s after a blip: %+v", c)
	}
	in.ReachableSince["a"] = t0.Add(-61 * time.Second)
	if c := one(t, Decide(in)); c.Holder != "a" || c.Op != state.OpHandover {
		t.Fatalf("no failback after the hold: %+v", c)
	}
	// A planned move away (no takeover) fails back after the settle.
	st.Groups["g"].Takeover = nil
	in.ReachableSince["a"] = t0.Add(-3 * time.Second)
	if c := one(t, Decide(in)); c.Holder != "a" {
		t.Fatalf("%+v", c)
	}
}
