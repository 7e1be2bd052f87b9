package raid

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"tandem/internal/events"
)

// As mdadm's 01r5integ / 01raid6integ: every level with every single member
// failed (and RAID 6 with every pair) still returns the data, takes writes
// degraded, and assembles again without the failed members.
func TestEveryFailureKeepsTheData(t *testing.T) {
	for _, lc := range levelCases() {
		if lc.co.Level == Raid0 {
			continue
		}
		var sets [][]int
		for i := 0; i < lc.n; i++ {
			sets = append(sets, []int{i})
			if lc.co.Level == Raid6 {
				for j := i + 1; j < lc.n; j++ {
					sets = append(sets, []int{i, j})
				}
			}
		}
		for _, set := range sets {
			t.Run(fmt.Sprintf("%s-fail%v", lc.name, set), func(t *testing.T) {
				ta := newTestArray(t, lc.co, lc.n, 0, testMemberSize)
				for _, i := range set {
					ta.faults[i].FailAll()
				}
				ta.verify("degraded read")
				ta.randomWrites(rand.New(rand.NewPCG(5, uint64(len(set)))), 30) // writes reach every member
				ta.a.Flush()
				if st := ta.a.Status(); st.State != "degraded" || st.InSync != lc.n-len(set) {
					t.Fatalf("status %s, %d in sync", st.State, st.InSync)
				}
				if len(ta.rec.OfKind(events.RaidFail)) != len(set) || len(ta.rec.OfKind(events.RaidDegradedArray)) == 0 {
					t.Fatalf("events: %d Fail, %d DegradedArray", len(ta.rec.OfKind(events.RaidFail)), len(ta.rec.OfKind(events.RaidDegradedArray)))
				}
				ta.verify("degraded writes")
				ta.reopen(nil)
				if n := len(ta.a.LeftOut()); n != len(set) {
					t.Fatalf("left out %d members, want %d: %v", n, len(set), ta.a.LeftOut())
				}
				ta.verify("reassembled degraded")
			})
		}
	}
}

func TestRaid0MemberFailureFailsTheArray(t *testing.T) {
	ta := newTestArray(t, levelCases()[0].co, 3, 0, testMemberSize)
	ta.faults[1].FailAll()
	if _, err := ta.a.ReadAt(make([]byte, ta.a.Size()), 0); err == nil {
		t.Fatal("read of failed raid0 succeeded")
	}
	if st := ta.a.Status(); st.State != "failed" {
		t.Fatalf("state %s", st.State)
	}
}

func TestHotSpareRebuildsAndTakesOver(t *testing.T) {
	for _, lc := range levelCases() {
		if lc.co.Level == Raid0 {
			continue
		}
		t.Run(lc.name, func(t *testing.T) {
			ta := newTestArray(t, lc.co, lc.n, 1, testMemberSize)
			ta.faults[0].FailAll()
			ta.verify("degraded")
			ta.randomWrites(rand.New(rand.NewPCG(9, 9)), 10)
			ta.a.RunJobs()
			st := ta.a.Status()
			if st.State != "clean" || st.InSync != lc.n {
				t.Fatalf("after rebuild: %+v", st)
			}
			for _, k := range []events.Kind{events.RaidRebuildStarted, events.RaidRebuildFinished, events.RaidSpareActive} {
				if len(ta.rec.OfKind(k)) != 1 {
					t.Fatalf("%s events: %d", k, len(ta.rec.OfKind(k)))
				}
			}
			// The rebuilt spare must hold the right data: lose another member.
			ta.faults[1].FailAll()
			ta.verify("spare carries the data")
			ta.reopen(nil)
			ta.verify("reassembled")
		})
	}
}

func TestReAddResyncsOnlyWhatChanged(t *testing.T) {
	for _, lc := range levelCases() {
		if lc.co.Level == Raid0 {
			continue
		}
		t.Run(lc.name, func(t *testing.T) {
			ta := newTestArray(t, lc.co, lc.n, 0, 2*testMemberSize)
			ta.a.Flush()
			ta.clk.Advance(1)
			ta.a.Flush() // clears the bits of the fill
			if n := ta.a.DirtyRegions(); n != 0 {
				t.Fatalf("%d dirty regions after flush", n)
			}
			if err := ta.a.Fail("m1"); err != nil {
				t.Fatal(err)
			}
			if err := ta.a.Remove("m1"); err != nil {
				t.Fatal(err)
			}
			ta.write(make([]byte, 5000), 3*ta.a.geo.Chunk+100) // one small write while m1 is out
			ta.a.Flush()                                       // out of the write-behind queue, onto the others
			if err := ta.a.Add(Member{"m1", ta.faults[1]}); err != nil {
				t.Fatal(err)
			}
			st := ta.a.Status()
			if st.State != "rebuilding" {
				t.Fatalf("after re-add: %s", st.State)
			}
			ta.a.RunJobs()
			started := ta.rec.OfKind(events.RaidRebuildStarted)
			stripes := started[len(started)-1].Attrs["stripes"].(int64)
			if stripes == 0 || stripes > ta.a.lay.StripesPerBit {
				t.Fatalf("re-add rebuilt %d stripes, want one region (%d)", stripes, ta.a.lay.StripesPerBit)
			}
			if len(ta.rec.OfKind(events.RaidSpareActive)) != 0 {
				t.Fatal("re-add reported as SpareActive")
			}
			for i := 0; i < lc.n; i++ {
				if i != 1 && (lc.co.Level != Raid10 || i == 0) {
					ta.faults[i].FailAll()
					break
				}
			}
			ta.verify("re-added member carries the data")
		})
	}
}

func TestReplaceKeepsRedundancy(t *testing.T) {
	lc := levelCases()[4] // raid5 on 4
	ta := newTestArray(t, lc.co, lc.n, 1, testMemberSize)
	spare := ta.members()[lc.n]
	if err := ta.a.Remove(spare.Name); err != nil {
		t.Fatal(err)
	}
	if err := ta.a.Replace("m2", spare); err != nil {
		t.Fatal(err)
	}
	if st := ta.a.Status(); st.State != "rebuilding" || st.InSync != lc.n {
		t.Fatalf("while replacing: %+v", st)
	}
	ta.randomWrites(rand.New(rand.NewPCG(1, 1)), 10)
	ta.a.RunJobs()
	st := ta.a.Status()
	if st.State != "clean" {
		t.Fatalf("after replace: %+v", st)
	}
	found := false
	for _, m := range st.Members {
		found = found || m.Name == "m2" && m.State == "faulty"
	}
	if !found {
		t.Fatalf("m2 not faulty after replace: %+v", st.Members)
	}
	ta.faults[0].FailAll()
	ta.verify("replacement carries the data")
}

// A rebuild that meets a stripe with no good copy left stops there: the
// spare is not called in sync with a hole in it, the array stays degraded
// and says why, reads of the lost chunk fail rather than return zeros, and
// what the rebuild had done before is kept.
func TestRebuildStopsAtAStripeItCannotRebuild(t *testing.T) {
	lc := levelCases()[4] // raid5 on 4
	ta := newTestArray(t, lc.co, lc.n, 1, testMemberSize)
	g := ta.a.geo
	s := g.Stripes() / 2
	role1, loc1 := g.RoleOf(s, 1)
	role0, _ := g.RoleOf(s, 0)
	if role1 < 0 || role0 < 0 {
		t.Fatalf("stripe %d: want data on members 0 and 1, got roles %d and %d", s, role0, role1)
	}
	// A corrupt block on m1 in stripe s (its checksum fails); then m0 dies.
	ta.faults[1].FlipOnRead(ta.a.lay.DataOff+loc1.Off+100, 3)
	if err := ta.a.Fail("m0"); err != nil {
		t.Fatal(err)
	}
	ta.a.RunJobs()
	st := ta.a.Status()
	if st.State != "degraded" {
		t.Fatalf("after the rebuild met the bad stripe: state %s, want degraded: %+v", st.State, st)
	}
	var spare MemberStatus
	for _, m := range st.Members {
		if m.Name == "m4" {
			spare = m
		}
	}
	if spare.State != "rebuild_aborted" || spare.Slot != 0 {
		t.Fatalf("the spare: %+v, want rebuild_aborted in slot 0", spare)
	}
	if n := len(ta.rec.OfKind(events.RaidRebuildAborted)); n != 1 {
		t.Fatalf("%d RebuildAborted events, want 1", n)
	}
	if n := len(ta.rec.OfKind(events.RaidRebuildFinished)); n != 0 {
		t.Fatalf("%d RebuildFinished events, want 0", n)
	}
	lost := s*g.StripeBytes() + int64(role0)*g.Chunk
	if _, err := ta.a.ReadAt(make([]byte, BlockSize), lost); err == nil {
		t.Fatal("the chunk no copy holds read without an error")
	}
	// Stripes before the bad one were rebuilt and recorded.
	if r := ta.a.slots[0].rec.Load(); r == nil || r.pos.Load() <= 0 || r.pos.Load() > s {
		t.Fatalf("rebuild position %v, want in (0, %d]", r, s)
	}
	// Elsewhere the array still serves the right data.
	if _, err := ta.a.ReadAt(make([]byte, BlockSize), 0); err != nil {
		t.Fatal(err)
	}
	// No job is left spinning on it.
	if ta.a.hasWork() {
		t.Fatal("the aborted rebuild still counts as work")
	}
}

// Fail refuses a member the array cannot lose, as mdadm --fail does: the
// array would fail and every client get errors. An I/O error still fails it.
func TestFailRefusesTheLastCopy(t *testing.T) {
	ta := newTestArray(t, levelCases()[1].co, 2, 0, testMemberSize) // raid1 on 2
	if err := ta.a.Fail("m0"); err != nil {
		t.Fatal(err)
	}
	if err := ta.a.Fail("m1"); !errors.Is(err, ErrLastCopy) {
		t.Fatalf("failing the last copy: %v, want ErrLastCopy", err)
	}
	ta.verify("after the refused fail")
	r0 := newTestArray(t, levelCases()[0].co, 3, 0, testMemberSize) // raid0 on 3
	if err := r0.a.Fail("m1"); !errors.Is(err, ErrLastCopy) {
		t.Fatalf("failing a RAID 0 member: %v, want ErrLastCopy", err)
	}
	if st := r0.a.Status(); st.State != "clean" {
		t.Fatalf("RAID 0 after the refused fail: %s", st.State)
	}
}
