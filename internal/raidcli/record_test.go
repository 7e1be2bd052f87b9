package raidcli

import (
	"bytes"
	"strings"
	"testing"

	"tandem/internal/raid"
)

// A removed member leaves the array's record: before, every later status
// and assemble offered it again and warned "left out: stale".
func TestRemovedMemberLeavesTheRecord(t *testing.T) {
	c := newCLI(t)
	c.must("create", "--level", "5", "--chunk", "16K", "--size", "8M", "--wait", "r5", c.path("m0"), c.path("m1"), c.path("m2"), c.path("m3"))
	c.must("fail", "r5", c.path("m3"))
	c.must("remove", "r5", c.path("m3"))
	rec, err := loadRecord(c.state, "r5")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range rec.Members {
		if m == c.path("m3") {
			t.Fatalf("the record still lists the removed member: %v", rec.Members)
		}
	}
	for _, cmd := range [][]string{{"status", "r5"}, {"assemble", "r5"}, {"status"}} {
		out, stderr, err := c.runStderr(cmd...)
		if err != nil {
			t.Fatalf("%v: %v", cmd, err)
		}
		if strings.Contains(stderr, "left out") || strings.Contains(out, "left out") {
			t.Errorf("%v warns about the removed member:\n%s%s", cmd, out, stderr)
		}
	}
	if st := c.status("r5"); st.State != "degraded" || st.InSync != 3 {
		t.Fatalf("after remove: %+v", st)
	}
	// It comes back with add, named again, and resyncs what it missed.
	c.must("add", "r5", c.path("m3"))
	if st := c.status("r5"); st.State != "clean" || st.InSync != 4 {
		t.Fatalf("after add: %+v", st)
	}
	if rec, _ := loadRecord(c.state, "r5"); !strings.Contains(strings.Join(rec.Members, " "), c.path("m3")) {
		t.Fatalf("add did not record the member again: %v", rec.Members)
	}
}

// The same through a served array's control socket.
func TestRemovedMemberLeavesTheRecordWhenServed(t *testing.T) {
	c := newCLI(t)
	c.must("create", "--level", "1", "--size", "8M", "--wait", "--spare", c.path("s0"), "r1", c.path("m0"), c.path("m1"))
	_, stop := c.serve("r1")
	defer stop()
	c.must("remove", "r1", c.path("s0"))
	if rec, _ := loadRecord(c.state, "r1"); strings.Contains(strings.Join(rec.Members, " "), c.path("s0")) {
		t.Fatalf("the record still lists the removed spare: %v", rec.Members)
	}
}

// A new array is created without an initial sync; its status says a
// resync is pending until an assemble (or serve) has run it. Before,
// status said "active" and nothing more.
func TestNewArrayShowsItsPendingResync(t *testing.T) {
	c := newCLI(t)
	c.must("create", "--level", "5", "--chunk", "16K", "--size", "8M", "r5", c.path("m0"), c.path("m1"), c.path("m2"))
	st := c.status("r5")
	if st.ResyncPending == 0 || st.ResyncPending != st.Regions {
		t.Fatalf("a new array: %d of %d regions pending resync, want all", st.ResyncPending, st.Regions)
	}
	if out := c.must("status", "r5"); !strings.Contains(out, "resync=PENDING (all") {
		t.Fatalf("status of a new array does not show the pending resync:\n%s", out)
	}
	assembleResyncs(t, c, "r5: resync (all")
}

// An array killed in the middle of writes (its process died: the members
// were never closed) shows the regions it was writing as pending resync,
// and assemble runs the resync: parity agrees with the data again.
func TestKilledArrayShowsAndRunsItsPendingResync(t *testing.T) {
	c := newCLI(t)
	c.must("create", "--level", "5", "--chunk", "16K", "--size", "32M", "--bitmap-chunk", "1M", "--wait", "r5", c.path("m0"), c.path("m1"), c.path("m2"))
	if st := c.status("r5"); st.State != "clean" || st.ResyncPending != 0 {
		t.Fatalf("after create --wait: %+v", st)
	}
	var ms []raid.Member
	for _, p := range []string{"m0", "m1", "m2"} {
		m, err := openMember(c.path(p))
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	a, err := raid.Assemble(ms, raid.AssembleOptions{Name: "r5"}, raid.Options{NoBackground: true, WriteBehind: -1, ReadAhead: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.WriteAt(bytes.Repeat([]byte{7}, 64<<10), 3<<20); err != nil {
		t.Fatal(err)
	}
	// The process dies here: no Flush, no Close.
	for _, m := range ms {
		m.Dev.Close()
	}

	st := c.status("r5")
	if st.State != "active" || st.ResyncPending == 0 || st.ResyncPending == st.Regions {
		t.Fatalf("after the kill: state %s, %d of %d regions pending resync; want active with the written regions pending", st.State, st.ResyncPending, st.Regions)
	}
	if out := c.must("status", "r5"); !strings.Contains(out, "resync=PENDING (") || !strings.Contains(out, "not stopped cleanly") {
		t.Fatalf("status after the kill does not show the pending resync:\n%s", out)
	}
	assembleResyncs(t, c, "r5: resync (")
}

// assembleResyncs assembles r5, which must say it resyncs (announce), and
// checks that it is clean afterwards, with parity that agrees.
func assembleResyncs(t *testing.T, c *cli, announce string) {
	t.Helper()
	if out := c.must("assemble", "r5"); !strings.Contains(out, announce) {
		t.Fatalf("assemble does not say it resyncs:\n%s", out)
	}
	if st := c.status("r5"); st.State != "clean" || st.ResyncPending != 0 {
		t.Fatalf("after assemble: %+v", st)
	}
	if out := c.must("check", "r5"); !strings.Contains(out, " 0 mismatches") {
		t.Fatalf("check after the resync: %s", out)
	}
}
