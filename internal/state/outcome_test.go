package state

import (
	"bytes"
	"fmt"
	"testing"
)

// A repeated proposal (same ID) changes nothing but the index and gets the
// first application's result, whatever the state became in between.
func TestRepeatedProposalAppliesOnce(t *testing.T) {
	s := New()
	place := Command{ID: "p1", Op: OpPlace, Group: "g", Holder: "a", Epoch: 0, Time: t0}
	failure := Command{ID: "f1", Op: OpFailure, Group: "g", Node: "a", Epoch: 1, Severity: "soft", Time: t0}
	stale := Command{ID: "s1", Op: OpPlace, Group: "g", Holder: "b", Epoch: 0, Time: t0}
	if err := s.Apply(1, place); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(2, failure); err != nil {
		t.Fatal(err)
	}
	first := s.Apply(3, stale)
	if !IsStaleEpoch(first) {
		t.Fatalf("stale place: %v", first)
	}
	before, _ := s.Marshal()
	for i, c := range []Command{place, failure, place, failure} {
		if err := s.Apply(uint64(4+i), c); err != nil {
			t.Fatalf("repeat %d of %s: %v, want the first result (nil)", i, c.Op, err)
		}
	}
	again := s.Apply(8, stale)
	if !IsStaleEpoch(again) || again.Error() != first.Error() {
		t.Fatalf("repeat of a stale place: %v, want %v", again, first)
	}
	if s.Index != 8 {
		t.Fatalf("index %d after the repeats, want 8", s.Index)
	}
	s.Index = 3
	if after, _ := s.Marshal(); !bytes.Equal(after, before) {
		t.Fatalf("repeats changed the state:\n%s\n%s", before, after)
	}
	if g := s.Groups["g"]; g.Epoch != 1 || g.Holder != "a" || g.Failures["a"].Count != 1 {
		t.Fatalf("group after repeats: %+v, failures %+v", g, g.Failures["a"])
	}
}

// Commands without an ID (every entry logged before IDs, and no-ops) are
// applied each time, as before.
func TestCommandsWithoutIDAreNotDeduplicated(t *testing.T) {
	s := New()
	s.Apply(1, Command{Op: OpPlace, Group: "g", Holder: "a"})
	failure := Command{Op: OpFailure, Group: "g", Node: "a", Epoch: 1, Severity: "soft"}
	s.Apply(2, failure)
	s.Apply(3, failure)
	if n := s.Groups["g"].Failures["a"].Count; n != 2 {
		t.Fatalf("two failures without IDs counted %d times", n)
	}
	if len(s.Outcomes) != 0 {
		t.Fatalf("outcomes kept for commands without IDs: %+v", s.Outcomes)
	}
}

// At most keptOutcomes outcomes are kept, the newest, in log order; a
// repeat of a forgotten ID is applied as a new proposal.
func TestOutcomesAreBounded(t *testing.T) {
	s := New()
	for i := range keptOutcomes + 10 {
		s.Apply(uint64(i+1), Command{ID: fmt.Sprintf("id%d", i), Op: OpStandby, Node: "a", On: i%2 == 0})
	}
	if len(s.Outcomes) != keptOutcomes || s.Outcomes[0].ID != "id10" || s.Outcomes[keptOutcomes-1].Index != keptOutcomes+10 {
		t.Fatalf("%d outcomes kept, from %+v to %+v", len(s.Outcomes), s.Outcomes[0], s.Outcomes[len(s.Outcomes)-1])
	}
	if _, ok := s.Outcome("id9"); ok {
		t.Fatal("an outcome beyond the bound is still kept")
	}
	s.Apply(keptOutcomes+11, Command{ID: "id9", Op: OpStandby, Node: "a", On: true})
	if !s.Nodes["a"].Standby {
		t.Fatal("a forgotten ID was not applied")
	}
}

// The outcomes travel in snapshots: a voter restored from one treats a
// repeat like the voters that applied the first. Clone copies them.
func TestOutcomesInSnapshotAndClone(t *testing.T) {
	s := New()
	s.Apply(1, Command{ID: "p1", Op: OpPlace, Group: "g", Holder: "a"})
	s.Apply(2, Command{ID: "p2", Op: OpPlace, Group: "g", Holder: "b"})
	b, _ := s.Marshal()
	r, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []*State{r, s.Clone()} {
		if err := st.Apply(3, Command{ID: "p1", Op: OpPlace, Group: "g", Holder: "a"}); err != nil {
			t.Fatalf("repeat after restore: %v", err)
		}
		if err := st.Apply(4, Command{ID: "p2", Op: OpPlace, Group: "g", Holder: "b"}); !IsStaleEpoch(err) {
			t.Fatalf("repeat of a stale place after restore: %v", err)
		}
		if g := st.Groups["g"]; g.Epoch != 1 || g.Holder != "a" {
			t.Fatalf("repeats after restore changed the group: %+v", g)
		}
	}
	if len(s.Outcomes) != 2 {
		t.Fatalf("applying to a clone changed the original's outcomes: %+v", s.Outcomes)
	}
}

// Log entries and snapshots as earlier versions wrote them still decode:
// raft logs and snapshots on disk survive an upgrade. A command's ID is
// logged right after its op, and not at all when empty.
func TestCommandAndSnapshotFormat(t *testing.T) {
	old := `{"op":"failure","time":"2023-11-14T22:13:20Z","group":"g","node":"a","epoch":1,"reason":"exit 1","severity":"soft"}`
	c, err := DecodeCommand([]byte(old))
	if err != nil || c.ID != "" || c.Op != OpFailure || c.Epoch != 1 || c.Severity != "soft" || !c.Time.Equal(t0) {
		t.Fatalf("an entry logged before IDs: %+v, %v", c, err)
	}
	if got := string(c.Encode()); got != old {
		t.Fatalf("a command without an ID encodes as\n%s\nwant\n%s", got, old)
	}
	c.ID = "0123456789abcdef"
	want := `{"op":"failure","id":"0123456789abcdef","time":"2023-11-14T22:13:20Z","group":"g","node":"a","epoch":1,"reason":"exit 1","severity":"soft"}`
	if got := string(c.Encode()); got != want {
		t.Fatalf("a command with an ID encodes as\n%s\nwant\n%s", got, want)
	}

	group := `{"g":{"holder":"a","epoch":1,"since":"2023-11-14T22:13:20Z","reason":"","running":false,` +
		`"started_at":"0001-01-01T00:00:00Z","phase_at":"0001-01-01T00:00:00Z","handover_at":"0001-01-01T00:00:00Z"}}`
	oldSnap := `{"index":7,"groups":` + group + `,"nodes":{},"maintenance":false}`
	s, err := Unmarshal([]byte(oldSnap))
	if err != nil || s.Index != 7 || s.Groups["g"].Holder != "a" || s.Outcomes != nil {
		t.Fatalf("a snapshot taken before outcomes: %+v, %v", s, err)
	}
	if b, _ := s.Marshal(); string(b) != oldSnap {
		t.Fatalf("a state without outcomes snapshots as\n%s\nwant\n%s", b, oldSnap)
	}
	s.Apply(8, Command{ID: "0123456789abcdef", Op: OpPlace, Group: "g", Holder: "b", Epoch: 0})
	want = `{"index":8,"groups":` + group + `,"nodes":{},"maintenance":false,` +
		`"outcomes":[{"id":"0123456789abcdef","index":8,"error":"state: stale epoch: group g is at epoch 1, command computed at 0","stale":true}]}`
	if b, _ := s.Marshal(); string(b) != want {
		t.Fatalf("snapshot with an outcome:\n%s\nwant\n%s", b, want)
	}
}
