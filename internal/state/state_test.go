package state

import (
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0).UTC()

func TestPlaceBumpsEpochAndRefusesStale(t *testing.T) {
	s := New()
	if err := s.Apply(1, Command{Op: OpPlace, Group: "web", Holder: "a", Epoch: 0, Time: t0}); err != nil {
		t.Fatal(err)
	}
	g := s.Groups["web"]
	if g.Holder != "a" || g.Epoch != 1 {
		t.Fatalf("%+v", g)
	}
	// Two leaders computed from epoch 1; the second must lose.
	if err := s.Apply(2, Command{Op: OpPlace, Group: "web", Holder: "b", Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	err := s.Apply(3, Command{Op: OpPlace, Group: "web", Holder: "a", Epoch: 1})
	if !IsStaleEpoch(err) || g.Holder != "b" || g.Epoch != 2 || s.Index != 3 {
		t.Fatalf("stale place: err=%v %+v", err, g)
	}
}

func TestFailuresBanAndBlock(t *testing.T) {
	s := New()
	s.Apply(1, Command{Op: OpPlace, Group: "g", Holder: "a"})
	s.Apply(2, Command{Op: OpFailure, Group: "g", Node: "a", Epoch: 1, Severity: "soft", Time: t0})
	f := s.Groups["g"].Failures["a"]
	if f.Count != 1 || f.Banned {
		t.Fatalf("soft: %+v", f)
	}
	s.Apply(3, Command{Op: OpFailure, Group: "g", Node: "a", Epoch: 1, Severity: "soft", GaveUp: true})
	if !f.Banned {
		t.Fatal("gave up must ban")
	}
	if err := s.Apply(4, Command{Op: OpFailure, Group: "g", Node: "a", Epoch: 0, Severity: "fatal"}); !IsStaleEpoch(err) {
		t.Fatalf("failure of an old epoch: %v", err)
	}
	s.Apply(5, Command{Op: OpFailure, Group: "g", Node: "a", Epoch: 1, Severity: "fatal", Reason: "not configured"})
	if s.Groups["g"].Blocked != "not configured" {
		t.Fatal("fatal must block")
	}
	s.Apply(6, Command{Op: OpCleanup, Group: "g"})
	if s.Groups["g"].Blocked != "" || s.Groups["g"].Failures != nil {
		t.Fatal("cleanup")
	}
	if !(&Failure{Last: t0}).ActiveFailure(t0.Add(time.Minute), 10*time.Minute) ||
		(&Failure{Last: t0}).ActiveFailure(t0.Add(11*time.Minute), 10*time.Minute) {
		t.Fatal("failure expiry")
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	s := New()
	s.Apply(1, Command{Op: OpPlace, Group: "g", Holder: "a", Time: t0})
	s.Apply(2, Command{Op: OpStandby, Node: "b", On: true})
	s.Apply(3, Command{Op: OpMaintenance, On: true})
	b, _ := s.Marshal()
	r, err := Unmarshal(b)
	if err != nil || r.Index != 3 || !r.Nodes["b"].Standby || !r.Maintenance || r.Groups["g"].Holder != "a" {
		t.Fatalf("%+v %v", r, err)
	}
	if _, err := Unmarshal([]byte("{")); err == nil {
		t.Fatal("bad snapshot accepted")
	}
	c, err := DecodeCommand(Command{Op: OpPlace, Group: "g", Epoch: 4}.Encode())
	if err != nil || c.Epoch != 4 {
		t.Fatal(err)
	}
}

// A planned move keeps the epoch while the holder stops; the group goes to
// the target, at the next epoch, only when the holder reports it handed
// over — never twice, and never on an old epoch's report.
func TestHandoverTwoSteps(t *testing.T) {
	s := New()
	s.Apply(1, Command{Op: OpPlace, Group: "g", Holder: "a", Time: t0})
	s.Apply(2, Command{Op: OpPhase, Group: "g", Node: "a", Epoch: 1, Phase: "running", Time: t0})
	g := s.Groups["g"]
	if !g.Running || g.Phase != "running" || !g.StartedAt.Equal(t0) {
		t.Fatalf("phase report: %+v", g)
	}
	if err := s.Apply(3, Command{Op: OpHandover, Group: "g", Epoch: 1, Holder: "b", Reason: "admin", Actor: "root", Time: t0}); err != nil {
		t.Fatal(err)
	}
	if g.Holder != "a" || g.Epoch != 1 || g.Handover != "b" || g.Pinned != "b" {
		t.Fatalf("handover asked: %+v", g)
	}
	if err := s.Apply(4, Command{Op: OpHandedOver, Group: "g", Node: "b", Epoch: 1}); !IsStaleEpoch(err) {
		t.Fatalf("handed over by a node that does not hold it: %v", err)
	}
	if err := s.Apply(5, Command{Op: OpHandedOver, Group: "g", Node: "a", Epoch: 1, Time: t0.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	if g.Holder != "b" || g.Epoch != 2 || g.Handover != "" || g.Running || g.Phase != "" || g.Reason != "admin" {
		t.Fatalf("after the handover: %+v", g)
	}
	if err := s.Apply(6, Command{Op: OpHandedOver, Group: "g", Node: "a", Epoch: 1}); !IsStaleEpoch(err) {
		t.Fatalf("a repeated handover report must be stale: %v", err)
	}
	if err := s.Apply(7, Command{Op: OpPhase, Group: "g", Node: "a", Epoch: 1, Phase: "stopped"}); !IsStaleEpoch(err) || g.Phase != "" {
		t.Fatalf("the old holder's phase must not count: %v %+v", err, g)
	}
	// A takeover cancels a pending handover.
	s.Apply(8, Command{Op: OpHandover, Group: "g", Epoch: 2, Holder: "a"})
	s.Apply(9, Command{Op: OpPlace, Group: "g", Epoch: 2, Holder: "a", Takeover: &Takeover{From: "b", To: "a"}})
	if g.Handover != "" || g.Epoch != 3 || g.Takeover.Epoch != 3 {
		t.Fatalf("takeover during a handover: %+v %+v", g, g.Takeover)
	}
}
