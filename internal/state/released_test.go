package state

import "testing"

// A takeover records the epoch its old holder held the group at, and
// counts that holder's "released" report for that holding only.
func TestReleasedCountsForItsTakeoverOnly(t *testing.T) {
	s := New()
	must := func(i uint64, c Command) {
		t.Helper()
		if err := s.Apply(i, c); err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
	}
	must(1, Command{Op: OpPlace, Group: "db", Holder: "a", Epoch: 0, Time: t0})
	must(2, Command{Op: OpPlace, Group: "db", Holder: "b", Epoch: 1, Time: t0, Takeover: &Takeover{From: "a", To: "b"}})
	tk := s.Groups["db"].Takeover
	if tk.FromEpoch != 1 || tk.Epoch != 2 || tk.FromStopped {
		t.Fatalf("takeover %+v", tk)
	}
	for _, c := range []Command{
		{Op: OpReleased, Group: "db", Node: "b", Epoch: 1}, // not the old holder
		{Op: OpReleased, Group: "db", Node: "a", Epoch: 2}, // not the holding taken over
		{Op: OpReleased, Group: "web", Node: "a", Epoch: 1},
	} {
		if err := s.Apply(3, c); !IsStaleEpoch(err) {
			t.Fatalf("%+v: want stale, got %v", c, err)
		}
	}
	if s.Groups["db"].Takeover.FromStopped {
		t.Fatal("a wrong report counted")
	}
	must(4, Command{Op: OpReleased, Group: "db", Node: "a", Epoch: 1})
	if !s.Groups["db"].Takeover.FromStopped {
		t.Fatal("the old holder's report did not count")
	}
	// A later move without a takeover leaves the record behind: a report
	// for it is stale then.
	must(5, Command{Op: OpPlace, Group: "db", Holder: "a", Epoch: 2, Time: t0})
	if err := s.Apply(6, Command{Op: OpReleased, Group: "db", Node: "a", Epoch: 1}); !IsStaleEpoch(err) {
		t.Fatalf("report for an old takeover: %v", err)
	}
	// A new takeover starts unreported.
	must(7, Command{Op: OpPlace, Group: "db", Holder: "b", Epoch: 3, Time: t0, Takeover: &Takeover{From: "a", To: "b", FromStopped: true}})
	if tk := s.Groups["db"].Takeover; tk.FromStopped || tk.FromEpoch != 3 {
		t.Fatalf("new takeover %+v", tk)
	}
}
