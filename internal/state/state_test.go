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
