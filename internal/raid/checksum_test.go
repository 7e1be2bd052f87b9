package raid

import (
	"context"
	"errors"
	"testing"

	"tandem/internal/events"
)

// memberOffsetOf returns where array offset off lives on member memb, and
// that member's index.
func (ta *testArray) dataLoc(off int64) (int, int64) {
	g := ta.a.geo
	s, d, in := g.Locate(off)
	l := g.DataLocs(s, d, nil)[0]
	return l.Member, ta.a.lay.DataOff + l.Off + in
}

func TestBitFlipIsRepairedOnRead(t *testing.T) {
	for _, lc := range levelCases() {
		t.Run(lc.name, func(t *testing.T) {
			ta := newTestArray(t, lc.co, lc.n, 0, testMemberSize)
			ta.a.Flush()
			off := 7*lc.co.Chunk + 123
			m, moff := ta.dataLoc(off)
			ta.mems[m].FlipBit(moff, 3)
			got := make([]byte, 100)
			_, err := ta.a.ReadAt(got, off)
			if lc.co.Level == Raid0 {
				if !errors.Is(err, ErrUnrecoverable) {
					t.Fatalf("raid0 read of flipped block: %v", err)
				}
				return
			}
			if err != nil || string(got) != string(ta.ref[off:off+100]) {
				t.Fatalf("read after flip: %v", err)
			}
			if n := len(ta.rec.OfKind(events.RaidChecksumRepaired)); n != 1 {
				t.Fatalf("%d ChecksumRepaired events", n)
			}
			if b := ta.mems[m].Bytes()[moff]; b != ta.ref[off] {
				t.Fatalf("block not rewritten on m%d", m)
			}
			ta.verify("after repair")
		})
	}
}

func TestFlakyReadIsServedFromRedundancy(t *testing.T) {
	lc := levelCases()[5] // raid6 on 4
	ta := newTestArray(t, lc.co, lc.n, 0, testMemberSize)
	off := 3 * lc.co.Chunk
	m, moff := ta.dataLoc(off)
	ta.faults[m].FlipOnRead(moff+10, 0)
	ta.verify("flaky member")
}

func TestCheckFindsAndRepairFixes(t *testing.T) {
	for _, lc := range levelCases() {
		if lc.co.Level == Raid0 {
			continue
		}
		t.Run(lc.name, func(t *testing.T) {
			ta := newTestArray(t, lc.co, lc.n, 0, testMemberSize)
			ta.a.Flush()
			// A flipped bit on every member, in different stripes.
			for i := range ta.mems {
				ta.mems[i].FlipBit(ta.a.lay.DataOff+int64(i+2)*lc.co.Chunk*2+int64(i)*BlockSize+5, 1)
			}
			res, err := ta.a.Check(context.Background(), false)
			if err != nil {
				t.Fatal(err)
			}
			if res.ChecksumErrors != int64(lc.n) || res.Repaired != 0 {
				t.Fatalf("check: %+v", res)
			}
			if len(ta.rec.OfKind(events.RaidMismatchesFound)) != 1 {
				t.Fatal("no MismatchesFound event")
			}
			res, err = ta.a.Check(context.Background(), true)
			if err != nil || res.Repaired < int64(lc.n) || res.Unrecoverable != 0 {
				t.Fatalf("repair: %+v %v", res, err)
			}
			res, _ = ta.a.Check(context.Background(), false)
			if res.ChecksumErrors != 0 || res.Mismatches != 0 {
				t.Fatalf("after repair: %+v", res)
			}
			ta.verify("after repair")
		})
	}
}

// Without checksums a scrub still finds redundancy that disagrees with the
// data and recomputes it (md's repair).
func TestCheckWithoutChecksumsFindsParityMismatch(t *testing.T) {
	for _, lc := range []levelCase{levelCases()[4], levelCases()[1]} { // raid5-4, raid1-2
		t.Run(lc.name, func(t *testing.T) {
			co := lc.co
			co.NoChecksums = true
			ta := newTestArray(t, co, lc.n, 0, testMemberSize)
			g := ta.a.geo
			s := int64(4)
			slot := 1
			if p, _ := g.ParityMembers(s); p >= 0 {
				slot = p
			}
			ta.mems[slot].FlipBit(ta.a.lay.DataOff+s*g.Chunk+77, 2)
			res, _ := ta.a.Check(context.Background(), false)
			if res.Mismatches != 1 {
				t.Fatalf("check: %+v", res)
			}
			if st := ta.a.Status(); st.Mismatches != 1 {
				t.Fatalf("status mismatches %d", st.Mismatches)
			}
			ta.a.Check(context.Background(), true)
			if res, _ := ta.a.Check(context.Background(), false); res.Mismatches != 0 {
				t.Fatalf("after repair: %+v", res)
			}
		})
	}
}
