package state

import (
	"testing"
	"time"
)

// A killed agent's last report can reach the leader after its restarted
// agent started the group again at the same epoch (its kernel sent the
// report once a partition healed: storage seed 43161). Applied, it
// recorded the running group stopped; the state refuses it.
func TestCommandOfAnEarlierLifeIsStale(t *testing.T) {
	s := New()
	t0 := time.Unix(1000, 0)
	s.Apply(1, Command{Op: OpPlace, Group: "g", Holder: "a", Epoch: 0, Time: t0})
	if err := s.Apply(2, Command{Op: OpPhase, Group: "g", Node: "a", Epoch: 1, Phase: "running", Boot: 7}); err != nil {
		t.Fatal(err)
	}
	// the restarted agent (boot 8) starts the group again at epoch 1
	if err := s.Apply(3, Command{Op: OpPhase, Group: "g", Node: "a", Epoch: 1, Phase: "running", Boot: 8}); err != nil {
		t.Fatal(err)
	}
	// boot 7's report of the stop before its death arrives last
	err := s.Apply(4, Command{Op: OpPhase, Group: "g", Node: "a", Epoch: 1, Phase: "stopped", Boot: 7})
	if g := s.Groups["g"]; !IsStaleEpoch(err) || !g.Running || g.Phase != "running" {
		t.Fatalf("the earlier life's report: %v; group running %v, phase %q; want refused as stale, still running", err, g.Running, g.Phase)
	}
	// the later life's reports go on; one without a boot is not checked
	if err := s.Apply(5, Command{Op: OpPhase, Group: "g", Node: "a", Epoch: 1, Phase: "stopped", Boot: 8}); err != nil || s.Groups["g"].Running {
		t.Fatalf("the current life's stop: %v, running %v", err, s.Groups["g"].Running)
	}
	if err := s.Apply(6, Command{Op: OpPhase, Group: "g", Node: "a", Epoch: 1, Phase: "running"}); err != nil {
		t.Fatalf("a command without a boot number: %v", err)
	}
	if s.Nodes["a"].Boot != 8 {
		t.Fatalf("node a's life recorded as %d, want 8", s.Nodes["a"].Boot)
	}
	// the refusal survives a snapshot (every member decides the same)
	c := s.Clone()
	if err := c.Apply(7, Command{Op: OpPhase, Group: "g", Node: "a", Epoch: 1, Phase: "stopped", Boot: 7}); !IsStaleEpoch(err) {
		t.Fatalf("after a clone the earlier life's report: %v, want stale", err)
	}
}
