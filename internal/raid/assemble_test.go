package raid

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"tandem/internal/blockdev"
	"tandem/internal/events"
)

func TestAssembleRefusesBadMembersByName(t *testing.T) {
	lc := levelCases()[4] // raid5 on 4
	ta := newTestArray(t, lc.co, lc.n, 0, testMemberSize)
	other := newTestArray(t, lc.co, 3, 0, testMemberSize)
	ta.a.Close()
	ms := ta.members()
	// A corrupt superblock (both copies), a foreign member, a duplicate.
	for off := int64(0); off < 2*BlockSize; off += BlockSize {
		ta.mems[2].FlipBit(off+100, 0)
	}
	offered := append(ms[:], Member{"foreign", other.faults[0]}, Member{"dup-of-m1", blockdev.NewFaulty(ta.mems[1].Crash())})
	u := ta.a.UUID()
	a, err := Assemble(offered, AssembleOptions{UUID: &u}, testOptions(t, ta.clk, ta.rec))
	if err != nil {
		t.Fatalf("assemble: %v", err)
	}
	defer a.Close()
	got := map[string]string{}
	for _, p := range a.LeftOut() {
		got[p.Name] = p.Err.Error()
	}
	for name, want := range map[string]string{"m2": "no tandem superblock", "foreign": "another array", "dup-of-m1": "duplicate of m1"} {
		if !strings.Contains(got[name], want) {
			t.Fatalf("%s left out as %q, want %q (all: %v)", name, got[name], want, got)
		}
	}
	if st := a.Status(); st.State != "degraded" {
		t.Fatalf("state %s", st.State)
	}
	// Only two of four RAID 5 members: refused, naming why.
	_, err = Assemble(ms[:2], AssembleOptions{UUID: &u}, testOptions(t, ta.clk, ta.rec))
	if err == nil || !strings.Contains(err.Error(), "cannot start") {
		t.Fatalf("two of four: %v", err)
	}
}

func TestStaleMemberIsRefused(t *testing.T) {
	lc := levelCases()[2] // raid1 on 3
	ta := newTestArray(t, lc.co, lc.n, 0, testMemberSize)
	old := ta.mems[2].Crash() // m2 as it was
	ta.a.Fail("m2")
	ta.a.Remove("m2")
	ta.write(make([]byte, 5000), 0)
	ta.a.Close()
	u := ta.a.UUID()
	ms := append(ta.members()[:2], Member{"old-m2", blockdev.NewFaulty(old)})
	a, err := Assemble(ms, AssembleOptions{UUID: &u}, testOptions(t, ta.clk, ta.rec))
	if err != nil {
		t.Fatal(err)
	}
	ta.a = a
	if lo := a.LeftOut(); len(lo) != 1 || lo[0].Name != "old-m2" || !strings.Contains(lo[0].Err.Error(), "stale") {
		t.Fatalf("left out: %v", lo)
	}
	ta.verify("without the stale member")
}

func TestDirtyDegradedNeedsForce(t *testing.T) {
	lc := levelCases()[4] // raid5 on 4
	ta := newTestArray(t, lc.co, lc.n, 0, testMemberSize)
	ta.a.Flush()
	// Power cut: no Close, so the superblocks say dirty.
	var ms []Member
	for i, m := range ta.mems[1:] {
		ms = append(ms, Member{ta.names[i+1], blockdev.NewFaulty(m.Crash())})
	}
	u := ta.a.UUID()
	if _, err := Assemble(ms, AssembleOptions{UUID: &u}, testOptions(t, ta.clk, ta.rec)); err == nil || !strings.Contains(err.Error(), "dirty and degraded") {
		t.Fatalf("dirty degraded without force: %v", err)
	}
	o := testOptions(t, ta.clk, ta.rec)
	o.Force = true
	a, err := Assemble(ms, AssembleOptions{UUID: &u}, o)
	if err != nil {
		t.Fatal(err)
	}
	ta.a = a
	a.RunJobs()
	ta.verify("forced")
}

// After an unclean stop only the regions the bitmap marks are resynced.
func TestUncleanStopResyncsOnlyDirtyRegions(t *testing.T) {
	lc := levelCases()[6] // raid6 on 5
	ta := newTestArray(t, lc.co, lc.n, 0, 2*testMemberSize)
	ta.a.Flush()
	ta.clk.Advance(time.Second)
	ta.a.Flush()
	ta.write(make([]byte, 3000), 5*lc.co.Chunk+10)
	ta.a.Flush()
	if n := ta.a.DirtyRegions(); n != 1 {
		t.Fatalf("%d dirty regions", n)
	}
	var ms []Member
	for i, m := range ta.mems {
		ms = append(ms, Member{ta.names[i], blockdev.NewFaulty(m.Crash())})
	}
	ta.assemble(ms, nil)
	rs := ta.a.resync.Load()
	if rs == nil || rs.pending.count() != 1 || ta.a.Status().State != "resyncing" {
		t.Fatalf("after crash: resync %v, state %s", rs, ta.a.Status().State)
	}
	ta.a.RunJobs()
	if st := ta.a.Status(); st.State != "clean" {
		t.Fatalf("after resync: %s", st.State)
	}
	if res, _ := ta.a.Check(context.Background(), false); res.Mismatches != 0 || res.ChecksumErrors != 0 {
		t.Fatalf("check after resync: %+v", res)
	}
	ta.verify("after resync")
}

// rateLimitedRebuild assembles a RAID 1 of three members and a spare with
// background jobs on and the given rebuild rate, and fails m0: the spare's
// rebuild then waits on the fake clock.
func rateLimitedRebuild(t *testing.T, rate int64) (*testArray, *Array) {
	lc := levelCases()[2] // raid1 on 3
	ta := newTestArray(t, lc.co, lc.n, 1, testMemberSize)
	ta.a.Close()
	var ms []Member
	for i := range ta.mems {
		ms = append(ms, Member{ta.names[i], ta.faults[i]})
	}
	u := ta.a.UUID()
	o := testOptions(t, ta.clk, ta.rec)
	o.NoBackground = false
	o.ProgressEvery = 0.25
	o.RebuildRate = rate
	a, err := Assemble(ms, AssembleOptions{UUID: &u}, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	a.Fail("m0")
	return ta, a
}

func TestRebuildReportsProgressAndObeysTheRateLimit(t *testing.T) {
	// 1 MiB/s: the member's ~900 KiB take about a second of fake time.
	ta, a := rateLimitedRebuild(t, 1<<20)
	// The rebuild waits on the fake clock: advance until it finishes.
	sawMidway := false
	for i := 0; !parkedRebuild(t, ta.clk, a); i++ {
		if i > 10000 {
			t.Fatalf("rebuild did not finish: %+v", a.Status())
		}
		if p := a.Progress(); p != nil && p.Done > 0 && p.Limit != 1<<20 {
			t.Fatalf("progress limit %d", p.Limit)
		}
		if p := a.Progress(); p != nil && p.Done > 0 && p.Done < p.Total {
			// Under way at 1 MiB/s: a rate no higher than the limit (give or
			// take a window), and the ETA is what is left at that rate.
			if p.Rate <= 0 || p.Rate > 1.5*(1<<20) {
				t.Fatalf("rate %.0f B/s under a 1 MiB/s limit", p.Rate)
			}
			left := float64(p.Total-p.Done) / float64(p.Total) * float64(a.lay.MemberData) / p.Rate
			if eta := p.ETA.Seconds(); eta < left*0.5 || eta > left*1.5+0.1 {
				t.Fatalf("ETA %.2f s, %.2f s of work left at the rate", eta, left)
			}
			sawMidway = true
		}
		ta.clk.Advance(10 * time.Millisecond)
	}
	fin := ta.rec.OfKind(events.RaidRebuildFinished)
	start := ta.rec.OfKind(events.RaidRebuildStarted)
	if len(fin) != 1 || len(start) != 1 {
		t.Fatalf("started %d finished %d", len(start), len(fin))
	}
	took := fin[0].Time.Sub(start[0].Time)
	want := time.Duration(float64(a.lay.MemberData) / float64(1<<20) * float64(time.Second))
	if took < want*9/10 {
		t.Fatalf("rebuild of %d bytes took %v of fake time, limit allows no less than %v", a.lay.MemberData, took, want)
	}
	if n := len(ta.rec.OfKind(events.RaidRebuildProgress)); n < 2 {
		t.Fatalf("%d progress events", n)
	}
	if !sawMidway {
		t.Fatal("never saw the rebuild halfway")
	}
}

func TestPacing(t *testing.T) {
	if d := pacing(10<<20, time.Second, 0); d != 0 {
		t.Fatalf("unlimited waits %v", d)
	}
	if d := pacing(10<<20, time.Second, 5<<20); d != time.Second {
		t.Fatalf("10 MiB at 5 MiB/s after 1 s: wait %v", d)
	}
	if d := pacing(1<<20, time.Second, 5<<20); d > 0 {
		t.Fatalf("under the limit waits %v", d)
	}
}

func TestIOPastTheEnd(t *testing.T) {
	ta := newTestArray(t, levelCases()[0].co, 3, 0, testMemberSize)
	if _, err := ta.a.ReadAt(make([]byte, 2), ta.a.Size()-1); !errors.Is(err, blockdev.ErrOutOfRange) {
		t.Fatalf("read past end: %v", err)
	}
	if _, err := ta.a.WriteAt(make([]byte, 2), -1); !errors.Is(err, blockdev.ErrOutOfRange) {
		t.Fatalf("write at -1: %v", err)
	}
}

// TestRebuildRecordsItsPositionOnceASecond: a rebuild that runs longer
// than progressSaveEvery leaves its position in the superblocks before it
// finishes, so a crash does not send it back to the start.
func TestRebuildRecordsItsPositionOnceASecond(t *testing.T) {
	// 256 KiB/s: the member's ~900 KiB take about 3.5 s of fake time.
	ta, a := rateLimitedRebuild(t, 256<<10)
	recorded := int64(-1) // the largest position a superblock showed mid-rebuild
	for i := 0; !parkedRebuild(t, ta.clk, a); i++ {
		if i > 10000 {
			t.Fatalf("rebuild did not finish: %+v", a.Status())
		}
		sb, _, err := readSuperblock(ta.faults[1])
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range sb.Devices {
			if d.Role == 0 && d.Recovery > 0 {
				recorded = max(recorded, d.Recovery)
			}
		}
		ta.clk.Advance(10 * time.Millisecond)
	}
	if recorded <= 0 {
		t.Fatalf("no superblock recorded the rebuild's position before it finished")
	}
	if recorded >= a.geo.Stripes() {
		t.Fatalf("recorded position %d of %d stripes", recorded, a.geo.Stripes())
	}
}
