package replication

import (
	"math/rand/v2"
	"testing"
)

// ids for readable rows: A..F are generations, S a sync id.
const (
	idA GenID = 0xA0 + iota
	idB
	idC
	idD
	idE
	idF
	idS
)

func up(cur, bm, h0, h1 GenID) Side {
	return Side{GenIDs: GenIDs{Current: cur, Bitmap: bm, History: [2]GenID{h0, h1}}, Disk: UpToDate}
}

func (s Side) named(n string) Side     { s.Node = n; return s }
func (s Side) disk(d DiskState) Side   { s.Disk = d; return s }
func (s Side) primary() Side           { s.Role = Primary; return s }
func (s Side) crashed() Side           { s.CrashedPrimary = true; return s }
func (s Side) dirty(n int64) Side      { s.DirtyBytes = n; return s }
func (s Side) promotedAt(e Epoch) Side { s.PrimaryEpoch = e; return s }
func (s Side) discard() Side           { s.Discard = true; return s }

// TestDecideTable has one row per row of the decision table in
// docs/replication.md, in its order.
func TestDecideTable(t *testing.T) {
	jc := up(JustCreated, 0, 0, 0)
	rows := []struct {
		name       string
		self, peer Side
		want       Verdict
		full       bool
		rule       string
	}{
		{"diskless self", up(idA, 0, 0, 0).disk(Diskless), up(idB, 0, 0, 0), NoSync, false, "diskless"},
		{"diskless peer", up(idA, 0, 0, 0), up(idA, 0, 0, 0).disk(Diskless), NoSync, false, "diskless"},
		{"both just created", jc.disk(Inconsistent), jc.disk(Inconsistent), NoSync, false, "both-just-created"},
		{"self just created", jc, up(idA, 0, 0, 0), SyncTarget, true, "self-just-created"},
		{"self zero ids", up(0, 0, 0, 0), up(idA, 0, 0, 0), SyncTarget, true, "self-just-created"},
		{"peer just created", up(idA, 0, 0, 0), jc, SyncSource, true, "peer-just-created"},
		{"equal", up(idA, 0, idB, 0), up(idA, 0, idB, 0), NoSync, false, "equal"},
		{"equal, histories differ", up(idA, 0, idB, 0), up(idA, 0, idC, idD), NoSync, false, "equal"},
		{"self crashed primary", up(idA, 0, 0, 0).crashed().dirty(4096), up(idA, 0, 0, 0), SyncSource, false, "self-crashed-primary"},
		{"self crashed primary, nothing in flight", up(idA, 0, 0, 0).crashed(), up(idA, 0, 0, 0), SyncSource, false, "self-crashed-primary"},
		{"peer crashed primary", up(idA, 0, 0, 0), up(idA, 0, 0, 0).crashed(), SyncTarget, false, "peer-crashed-primary"},
		{"both crashed primary, self lower", up(idA, 0, 0, 0).crashed().named("a"), up(idA, 0, 0, 0).crashed().named("b"), SyncSource, false, "both-crashed-primary"},
		{"both crashed primary, self higher", up(idA, 0, 0, 0).crashed().named("b"), up(idA, 0, 0, 0).crashed().named("a"), SyncTarget, false, "both-crashed-primary"},
		{"equal, self holds a bitmap id", up(idA, idS, idB, 0), up(idA, 0, idS, idB), SyncSource, false, "equal-self-dirty"},
		{"primary awaiting the fencer holds writes", up(idA, 0, 0, 0).dirty(65536), up(idA, 0, 0, 0), SyncSource, false, "equal-self-dirty"},
		{"peer holds writes on the same generation", up(idA, 0, 0, 0), up(idA, 0, 0, 0).dirty(1), SyncTarget, false, "equal-peer-dirty"},
		{"both wrote on the same generation", up(idA, 0, 0, 0).dirty(1), up(idA, idS, 0, 0), SplitBrain, false, "equal-both-dirty"},
		{"dirty secondary facing a primary", up(idA, 0, 0, 0).dirty(1), up(idA, 0, 0, 0).primary(), SyncTarget, false, "equal-peer-primary"},
		{"primary facing a dirty secondary", up(idA, 0, 0, 0).primary(), up(idA, 0, 0, 0).dirty(1), SyncSource, false, "equal-self-primary"},
		{"self bitmap is peer current", up(idB, idA, 0, 0), up(idA, 0, 0, 0), SyncSource, false, "self-bitmap-is-peer-current"},
		{"interrupted resync, source side", up(idA, idS, idB, 0), up(idS, 0, idC, 0).disk(Inconsistent), SyncSource, false, "self-bitmap-is-peer-current"},
		{"peer bitmap is self current", up(idA, 0, 0, 0).disk(Outdated), up(idB, idA, 0, 0), SyncTarget, false, "peer-bitmap-is-self-current"},
		{"bitmaps crossed", up(idB, idA, 0, 0), up(idA, idB, 0, 0), SplitBrain, true, "bitmaps-crossed"},
		{"peer current in self history[0]", up(idC, 0, idB, idA), up(idB, 0, idA, 0), SyncSource, true, "peer-current-in-self-history"},
		{"peer current in self history[1]", up(idC, idD, idB, idA), up(idA, 0, 0, 0), SyncSource, true, "peer-current-in-self-history"},
		{"self current in peer history", up(idA, 0, 0, 0), up(idC, 0, idA, 0), SyncTarget, true, "self-current-in-peer-history"},
		{"resync end recorded on the source only", up(idC, idA, idS, 0), up(idS, 0, idB, 0).disk(Inconsistent), SyncSource, false, "resync-end-on-self-only"},
		{"resync end recorded on the peer only", up(idS, 0, idB, 0).disk(Inconsistent), up(idC, idA, idS, 0), SyncTarget, false, "resync-end-on-peer-only"},
		{"histories crossed", up(idA, 0, idB, 0), up(idB, 0, idA, 0), SplitBrain, true, "histories-crossed"},
		{"common bitmap: split brain", up(idB, idA, 0, 0), up(idC, idA, 0, 0), SplitBrain, false, "common-bitmap"},
		{"common history[0]: split brain", up(idB, idD, idA, 0), up(idC, idE, idA, 0), SplitBrain, true, "common-history"},
		{"common history, crossed positions", up(idB, idD, idA, idF), up(idC, idF, idE, 0), SplitBrain, true, "common-history"},
		{"initial sync the source never recorded", up(idA, idB, 0, 0), up(idS, 0, JustCreated, 0).disk(Inconsistent), SyncSource, true, "peer-initial-sync"},
		{"initial sync the peer never recorded", up(idS, 0, JustCreated, 0).disk(Inconsistent), up(idA, idB, 0, 0), SyncTarget, true, "self-initial-sync"},
		{"unrelated", up(idA, idB, idC, idD), up(idE, idF, idS, 0), Unrelated, false, "unrelated"},
		{"unrelated even if inconsistent", up(idA, 0, 0, 0).disk(Inconsistent), up(idB, 0, 0, 0), Unrelated, false, "unrelated"},
		{"self inconsistent overrides equal", up(idA, 0, 0, 0).disk(Inconsistent), up(idA, 0, 0, 0), SyncTarget, false, "self-inconsistent"},
		{"peer inconsistent overrides a full split brain", up(idB, idD, idA, 0), up(idC, idE, idA, 0).disk(Inconsistent), SyncSource, true, "peer-inconsistent"},
		{"inconsistent source refused", up(idB, idA, 0, 0).disk(Inconsistent), up(idA, 0, 0, 0).disk(Inconsistent), Refused, false, "self-bitmap-is-peer-current"},
		{"primary target refused", up(idA, 0, 0, 0).primary(), up(idB, idA, 0, 0), Refused, false, "peer-bitmap-is-self-current"},
		{"primary source allowed", up(idB, idA, 0, 0).primary(), up(idA, 0, 0, 0), SyncSource, false, "self-bitmap-is-peer-current"},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			r.self.Node, r.peer.Node = nameOr(r.self.Node, "a"), nameOr(r.peer.Node, "b")
			d := Decide(r.self, r.peer)
			if d.Verdict != r.want || d.Full != r.full || d.Rule != r.rule {
				t.Fatalf("Decide = %v; want %v full=%v rule %s", d, r.want, r.full, r.rule)
			}
			if d.Reason == "" {
				t.Fatal("no reason")
			}
			if m := Decide(r.peer, r.self); m.Verdict != d.Mirror().Verdict || m.Full != d.Full {
				t.Fatalf("mirror: Decide(peer, self) = %v, want %v", m, d.Mirror())
			}
		})
	}
}

func nameOr(n, def string) string {
	if n == "" {
		return def
	}
	return n
}

func TestResolveTable(t *testing.T) {
	sbBitmap := Decision{Verdict: SplitBrain, Rule: "common-bitmap", Reason: "x"}
	sbFull := Decision{Verdict: SplitBrain, Full: true, Rule: "common-history", Reason: "x"}
	a, b := up(idB, idA, 0, 0).named("a"), up(idC, idA, 0, 0).named("b")
	rows := []struct {
		name       string
		d          Decision
		self, peer Side
		policy     SplitBrainPolicy
		want       Verdict
	}{
		{"not a split brain passes", Decision{Verdict: SyncSource}, a, b, Disconnect, SyncSource},
		{"disconnect keeps it", sbBitmap, a.dirty(1), b, Disconnect, SplitBrain},
		{"discard self", sbBitmap, a.discard(), b, Disconnect, SyncTarget},
		{"discard peer", sbBitmap, a, b.discard(), Disconnect, SyncSource},
		{"discard peer, full", sbFull, a, b.discard(), Disconnect, SyncSource},
		{"both told to discard", sbBitmap, a.discard(), b.discard(), Disconnect, SplitBrain},
		{"discard a primary refused", sbBitmap, a.discard().primary(), b, Disconnect, SplitBrain},
		{"zero changes: self wrote nothing", sbBitmap, a, b.dirty(10), DiscardZeroChanges, SyncTarget},
		{"zero changes: peer wrote nothing", sbBitmap, a.dirty(10), b, DiscardZeroChanges, SyncSource},
		{"zero changes: neither wrote, lower name is source", sbBitmap, a, b, DiscardZeroChanges, SyncSource},
		{"zero changes: both wrote", sbBitmap, a.dirty(1), b.dirty(1), DiscardZeroChanges, SplitBrain},
		{"zero changes: victim is primary", sbBitmap, a.primary(), b.dirty(10), DiscardZeroChanges, SplitBrain},
		{"zero changes never applies without a common bitmap", sbFull, a, b.dirty(10), DiscardZeroChanges, SplitBrain},
		{"younger primary: self younger", sbBitmap, a.promotedAt(7), b.promotedAt(5), DiscardYoungerPrimary, SyncTarget},
		{"younger primary: peer younger", sbBitmap, a.promotedAt(5), b.promotedAt(7), DiscardYoungerPrimary, SyncSource},
		{"younger primary: same epoch", sbBitmap, a.promotedAt(5), b.promotedAt(5), DiscardYoungerPrimary, SplitBrain},
		{"older primary: self older", sbBitmap, a.promotedAt(5), b.promotedAt(7), DiscardOlderPrimary, SyncTarget},
		{"older primary: peer older", sbBitmap, a.promotedAt(7), b.promotedAt(5), DiscardOlderPrimary, SyncSource},
		{"older primary: same epoch", sbBitmap, a.promotedAt(5), b.promotedAt(5), DiscardOlderPrimary, SplitBrain},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			d := Resolve(r.d, r.self, r.peer, r.policy)
			if d.Verdict != r.want {
				t.Fatalf("Resolve = %v; want %v", d, r.want)
			}
			if m := Resolve(r.d.Mirror(), r.peer, r.self, r.policy); m.Verdict != d.Mirror().Verdict {
				t.Fatalf("mirror: %v, want %v", m, d.Mirror())
			}
		})
	}
}

// randomSide draws sides from a small pool of ids so that every row of the
// table is reached.
func randomSide(rng *rand.Rand, name string) Side {
	pool := []GenID{0, JustCreated, idA, idB, idC, idD}
	g := func() GenID { return pool[rng.IntN(len(pool))] }
	return Side{
		Node:           name,
		GenIDs:         GenIDs{Current: g(), Bitmap: g(), History: [2]GenID{g(), g()}},
		Disk:           DiskState(rng.IntN(4)),
		Role:           Role(rng.IntN(2)),
		CrashedPrimary: rng.IntN(4) == 0,
		DirtyBytes:     int64(rng.IntN(3)),
		PrimaryEpoch:   Epoch(rng.IntN(3)),
		Discard:        rng.IntN(5) == 0,
	}
}

// TestDecideIsSymmetric: both sides of a connection decide the same thing
// from their own view, whatever they hold, and no decision ever makes an
// Inconsistent replica a source or a primary a target.
func TestDecideIsSymmetric(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	rules := map[string]bool{}
	for i := 0; i < 50000; i++ {
		a, b := randomSide(rng, "a"), randomSide(rng, "b")
		for _, p := range []SplitBrainPolicy{Disconnect, DiscardZeroChanges, DiscardYoungerPrimary, DiscardOlderPrimary} {
			da := Resolve(Decide(a, b), a, b, p)
			db := Resolve(Decide(b, a), b, a, p)
			if da.Verdict != db.Mirror().Verdict || da.Full != db.Full {
				t.Fatalf("a=%+v\nb=%+v\npolicy %v: a decides %v, b decides %v", a, b, p, da, db)
			}
			for _, x := range []struct {
				s Side
				d Decision
			}{{a, da}, {b, db}} {
				if x.d.Verdict == SyncSource && x.s.Disk == Inconsistent {
					t.Fatalf("%+v: Inconsistent source: %v", x.s, x.d)
				}
				if x.d.Verdict == SyncTarget && x.s.Role == Primary {
					t.Fatalf("%+v: primary target: %v", x.s, x.d)
				}
			}
			rules[da.Rule] = true
		}
	}
	if len(rules) < 20 {
		t.Fatalf("only %d rules reached: %v", len(rules), rules)
	}
}

func TestGenerationTransitions(t *testing.T) {
	g := GenIDs{Current: idA}
	// A primary loses its peer: the old generation is the bitmap id.
	p := g.NewCurrent(idB)
	if p != (GenIDs{Current: idB, Bitmap: idA}) {
		t.Fatalf("NewCurrent: %+v", p)
	}
	if p.NewCurrent(idC) != p {
		t.Fatal("NewCurrent with a bitmap id changed the ids")
	}
	peer := Side{Node: "b", GenIDs: g, Disk: Outdated}
	self := Side{Node: "a", GenIDs: p, Disk: UpToDate, Role: Primary}
	if d := Decide(self, peer); d.Verdict != SyncSource || d.Full {
		t.Fatalf("after a disconnect: %v", d)
	}
	// A bitmap resync starts under the bitmap id the target is at.
	if s := p.StartSyncSource(idS, g.Current); s != p {
		t.Fatalf("bitmap resync start: %+v", s)
	}
	// A full one (the target is older than the bitmap) under a fresh id.
	src := p.StartSyncSource(idS, idF)
	tgt := GenIDs{Current: idF}.StartSyncTarget(src.Bitmap, true)
	if src != (GenIDs{Current: idB, Bitmap: idS, History: [2]GenID{idA}}) || tgt.Current != idS {
		t.Fatalf("start: %+v %+v", src, tgt)
	}
	// Interrupted, found again, any number of times, under the same id.
	for i := 0; i < 5; i++ {
		if d := Decide(Side{Node: "a", GenIDs: src, Disk: UpToDate}, Side{Node: "b", GenIDs: tgt, Disk: Inconsistent}); d.Verdict != SyncSource || d.Full {
			t.Fatalf("interrupted %d times: %v", i+1, d)
		}
		src = src.StartSyncSource(GenID(100+i), tgt.Current)
		tgt = tgt.StartSyncTarget(src.Bitmap, false)
	}
	// Finish: the source records first, then the target.
	fin := src.FinishSyncSource()
	if fin != (GenIDs{Current: idB, History: [2]GenID{idS, idA}}) {
		t.Fatalf("finish: %+v", fin)
	}
	if d := Decide(Side{Node: "a", GenIDs: fin, Disk: UpToDate}, Side{Node: "b", GenIDs: tgt, Disk: Inconsistent}); d.Verdict != SyncSource || d.Full {
		t.Fatalf("finish recorded on the source only: %v", d)
	}
	if d := Decide(Side{Node: "a", GenIDs: fin, Disk: UpToDate}, Side{Node: "b", GenIDs: fin, Disk: UpToDate}); d.Verdict != NoSync {
		t.Fatalf("finished: %v", d)
	}
	// Both promoted apart from the same generation: split brain with a
	// common ancestor.
	x, y := fin.NewCurrent(idC), fin.NewCurrent(idD)
	if d := Decide(Side{Node: "a", GenIDs: x, Disk: UpToDate}, Side{Node: "b", GenIDs: y, Disk: UpToDate}); d.Verdict != SplitBrain || d.Full {
		t.Fatalf("split: %v", d)
	}
}
