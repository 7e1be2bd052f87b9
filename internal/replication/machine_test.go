package replication

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// pair returns a model pair, a primary at epoch 1 (node a), connected and
// in sync, with no random faults: scenario tests script every step.
func pair(t *testing.T, mode Mode, tune ...func(*Config)) *sim {
	t.Helper()
	s := newSim(t, 1, mode)
	s.faults = false
	for _, f := range tune {
		f(&s.cfg)
		for i, n := range s.nodes {
			n.m = nil
			s.start(i)
		}
	}
	if err := s.nodes[0].m.Promote(s.now, 1, true); err != nil {
		t.Fatal(err)
	}
	s.epoch, s.holderEpoch = 1, 1
	s.drain()
	s.heal()
	s.resyncBytes = 0
	return s
}

// settle delivers every frame and completes every local operation, in
// order, until nothing is left.
func (s *sim) settle() { s.settleHolding(nil) }

// settleHolding is settle leaving the local operations hold picks in
// flight (nil: none).
func (s *sim) settleHolding(hold func(Action) bool) {
	for n := 0; n < 100000; n++ {
		switch {
		case len(s.wire[0]) > 0:
			s.deliver(0)
		case len(s.wire[1]) > 0:
			s.deliver(1)
		default:
			i, k := s.nextOp(hold)
			if i < 0 {
				return
			}
			s.complete(i, k)
		}
	}
	s.fail("does not settle")
}

// nextOp finds the first local operation in flight that hold does not
// pick, on a before b.
func (s *sim) nextOp(hold func(Action) bool) (node, k int) {
	for i, n := range s.nodes {
		if n.m == nil {
			continue
		}
		for k, a := range n.inflight {
			if hold == nil || !hold(a) {
				return i, k
			}
		}
	}
	return -1, -1
}

// write submits a write of blocks blocks at off through the primary.
func (s *sim) write(off int64, blocks int) uint64 { return s.writeTo(s.primary(), off, blocks) }

// writeTo submits a write through node p.
func (s *sim) writeTo(p int, off int64, blocks int) uint64 {
	s.nextReq++
	id := s.nextReq
	data := make([]byte, blocks*simBlock)
	for b := 0; b < blocks; b++ {
		data[b*simBlock] = byte(id)
		data[b*simBlock+1] = byte(id >> 8)
		s.blockWrites[int(off/simBlock)+b] = append(s.blockWrites[int(off/simBlock)+b], id)
	}
	s.writes[id] = &simWrite{id: id, off: off, blocks: blocks}
	s.reqs[id] = p
	s.nodes[p].m.Submit(s.now, Request{ID: id, Op: OpWrite, Off: off, Data: data})
	s.drain()
	return id
}

func (s *sim) flush() uint64 {
	s.nextReq++
	id := s.nextReq
	s.flushes[id] = &simFlush{submitted: s.step}
	p := s.primary()
	s.reqs[id] = p
	s.nodes[p].m.Submit(s.now, Request{ID: id, Op: OpFlush})
	s.drain()
	return id
}

// eventsOf lists node i's events of kind k.
func (s *sim) eventsOf(i int, k EventKind) []Event {
	var out []Event
	for _, e := range s.nodes[i].events {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

func (s *sim) reconnect() {
	s.linkUpNow()
	s.settle()
	if !s.converged() {
		s.fail("not converged after reconnect")
	}
}

// TestResyncMovesOnlyDirtyRegions: after a disconnect during which writes
// touched K regions, the resync moves exactly K regions, whatever the
// number of writes.
func TestResyncMovesOnlyDirtyRegions(t *testing.T) {
	s := pair(t, Sync)
	s.linkDown("cut")
	s.resolveFence(0, true)
	regions := map[int64]bool{}
	for k := 0; k < 12; k++ {
		off := int64(k%5) * 3 * s.cfg.RegionSize // five regions, several writes each
		s.write(off, 1)
		regions[off/s.cfg.RegionSize] = true
	}
	s.settle()
	for id, w := range s.writes {
		if !w.acked {
			t.Fatalf("write %d not acknowledged with the peer outdated", id)
		}
	}
	s.reconnect()
	if want := int64(len(regions)) * s.cfg.RegionSize; s.resyncBytes != want {
		t.Fatalf("resync moved %d bytes, want %d (%d regions)", s.resyncBytes, want, len(regions))
	}
	s.checkHealed()
}

// TestCrashedPrimaryResyncsOnlyItsActivityLog: after a primary crash, the
// regions resynced are those of the activity-log extents, not the volume.
func TestCrashedPrimaryResyncsOnlyItsActivityLog(t *testing.T) {
	s := pair(t, Sync)
	s.write(0, 1)
	s.write(10*s.cfg.RegionSize, 1)
	s.settle()
	al := len(s.nodes[0].al)
	if al == 0 {
		t.Fatal("no activity-log extent active after writes")
	}
	s.write(int64(5)*s.cfg.RegionSize, 1) // in flight at the crash
	s.crash(0)
	s.start(0)
	if !s.nodes[0].m.crashedPrimary {
		t.Fatal("not a crashed primary")
	}
	s.reconnect()
	if max := int64(len(s.nodes[0].al)+al+1) * int64(s.cfg.ExtentRegions) * s.cfg.RegionSize; s.resyncBytes == 0 || s.resyncBytes > max {
		t.Fatalf("resync after a primary crash moved %d bytes, want 1..%d", s.resyncBytes, max)
	}
	s.checkHealed()
}

// TestSyncAcksWaitForPeerThenFencer: in sync mode a write completes only
// once the peer acknowledged it; cut off, only once the fencer outdated
// the peer; while the fencer fails, I/O stays suspended and it is asked
// again.
func TestSyncAcksWaitForPeerThenFencer(t *testing.T) {
	s := pair(t, Sync)
	a := s.nodes[0]
	id := s.write(0, 1)
	for len(a.inflight) > 0 {
		s.complete(0, 0)
	}
	if s.writes[id].acked {
		t.Fatal("acknowledged before the peer")
	}
	s.settle()
	if !s.writes[id].acked {
		t.Fatal("not acknowledged once on both")
	}
	id = s.write(s.cfg.RegionSize, 1)
	s.linkDown("cut")
	s.settle()
	if s.writes[id].acked || !a.fence || !a.m.suspended {
		t.Fatalf("cut off: acked=%v fence=%v suspended=%v", s.writes[id].acked, a.fence, a.m.suspended)
	}
	later := s.write(2*s.cfg.RegionSize, 1)
	s.resolveFence(0, false)
	s.settle()
	if s.writes[id].acked || s.writes[later].acked || len(s.eventsOf(0, EventFenceFailed)) != 1 {
		t.Fatal("acknowledged although the fencer failed")
	}
	if a.fence {
		t.Fatal("fencer asked again at once")
	}
	s.now = s.now.Add(s.cfg.FenceRetry)
	a.m.Tick(s.now)
	s.drain()
	if !a.fence {
		t.Fatal("fencer not asked again after FenceRetry")
	}
	s.resolveFence(0, true)
	s.settle()
	if !s.writes[id].acked || !s.writes[later].acked || a.m.suspended {
		t.Fatal("not acknowledged once the peer is outdated")
	}
	if err := s.nodes[1].m.Promote(s.now, 9, false); !errors.Is(err, ErrNotUpToDate) {
		t.Fatalf("outdated peer promoted: %v", err)
	}
	s.reconnect()
	s.checkHealed()
}

// TestReconnectBeforeFencerResumes: a cut-off primary whose fencer has not
// answered and whose link comes back resumes once connected, its
// in-flight writes resynced.
func TestReconnectBeforeFencerResumes(t *testing.T) {
	s := pair(t, Sync)
	id := s.write(0, 1)
	s.complete(0, 0)
	s.linkDown("cut")
	s.resolveFence(0, false)
	s.reconnect()
	if !s.writes[id].acked {
		t.Fatal("write not acknowledged after reconnecting")
	}
	s.checkHealed()
}

// TestStaleEpochRefused: a frame that changes data, from an epoch older
// than the newest the receiver has seen, is refused and the sender told;
// a primary told of a newer epoch is deposed.
func TestStaleEpochRefused(t *testing.T) {
	s := pair(t, Sync)
	b := s.nodes[1]
	b.m.seeEpoch(7)
	s.drain()
	b.m.Receive(s.now, Frame{Kind: FrameData, Volume: s.cfg.Volume, Epoch: 1, Seq: 99, Off: 0, Data: make([]byte, simBlock)})
	s.drain()
	if len(b.inflight) != 0 {
		t.Fatal("stale write applied")
	}
	if len(s.wire[1]) != 1 || s.wire[1][0].Kind != FrameStale || s.wire[1][0].Epoch != 7 {
		t.Fatalf("no refusal sent: %+v", s.wire[1])
	}
	pending := s.write(0, 1)
	s.deliver(1)
	a := s.nodes[0]
	if a.m.role == Primary || len(s.eventsOf(0, EventDeposed)) != 1 {
		t.Fatalf("primary of epoch 1 not deposed by epoch 7: %v", a.m)
	}
	if _, open := s.reqs[pending]; open || s.writes[pending].acked {
		t.Fatal("request of a deposed primary not failed")
	}
	if err := a.m.Promote(s.now, 6, false); !IsStaleEpoch(err) {
		t.Fatalf("promotion at an old epoch: %v", err)
	}
}

// TestDeposedPrimaryResyncsFromItsSuccessor: a primary deposed while
// connected (the peer refused its write as stale) holds that write on its
// own disk; once the peer is primary, the regions come from it: the
// replicas end equal. They stayed different, the deposed side's dirty
// bits never cleared (found by the volume's old-epoch test).
func TestDeposedPrimaryResyncsFromItsSuccessor(t *testing.T) {
	s := pair(t, Sync)
	a, b := s.nodes[0], s.nodes[1]
	b.m.seeEpoch(2) // the cluster told b of the next epoch first
	s.drain()
	w := s.write(0, 1)
	s.settle()
	if a.m.role == Primary || s.writes[w].acked {
		t.Fatalf("a not deposed by b's refusal: %v, write acked %v", a.m, s.writes[w].acked)
	}
	if img := a.dev.Bytes(); img[0] != byte(w) {
		t.Fatal("the scenario needs the refused write on a's disk")
	}
	s.epoch, s.holderEpoch = 3, 3
	if err := b.m.Promote(s.now, 3, false); err != nil {
		t.Fatal(err)
	}
	s.drain()
	s.write(2*simBlock, 1)
	s.settle()
	if !s.converged() {
		t.Fatal("not converged")
	}
	if img := a.dev.Bytes(); img[0] == byte(w) {
		t.Fatal("a still holds the write its successor refused")
	}
	s.checkHealed()
}

// TestPromotionRules: an Outdated replica is promoted only with force; a
// sync target never; a secondary never while the peer is primary.
func TestPromotionRules(t *testing.T) {
	s := pair(t, Sync)
	b := s.nodes[1].m
	if err := b.Promote(s.now, 2, false); !errors.Is(err, ErrPeerPrimary) {
		t.Fatalf("promoted beside a connected primary: %v", err)
	}
	s.linkDown("cut")
	s.resolveFence(0, true)
	if err := b.Promote(s.now, 2, false); !errors.Is(err, ErrNotUpToDate) {
		t.Fatalf("outdated promoted: %v", err)
	}
	s.write(0, 1)
	s.settle()
	s.nodes[0].m.Demote(s.now)
	s.drain()
	s.settle()
	s.linkUpNow()
	for len(s.wire[0])+len(s.wire[1]) > 0 && b.sync != syncTarget {
		s.deliver(0)
		s.deliver(1)
	}
	if b.sync != syncTarget {
		t.Fatalf("not a sync target: %v", b)
	}
	if err := b.Promote(s.now, 3, true); !errors.Is(err, ErrNotUpToDate) {
		t.Fatalf("sync target promoted with force: %v", err)
	}
	s.settle()
	if err := b.Promote(s.now, 4, false); err != nil {
		t.Fatalf("up-to-date secondary not promoted: %v", err)
	}
	s.drain()
}

// TestForcedPromotionOfOutdated: force promotes an Outdated replica; its
// old peer's later writes then meet it as a split brain.
func TestForcedPromotionOfOutdated(t *testing.T) {
	s := pair(t, Sync)
	s.linkDown("cut")
	s.resolveFence(0, true)
	s.write(0, 1)
	s.settle()
	if err := s.nodes[1].m.Promote(s.now, 5, true); err != nil {
		t.Fatal(err)
	}
	s.drain()
	s.nodes[0].m.Demote(s.now)
	s.drain()
	s.settle()
	s.resolveFence(1, true)
	s.linkUpNow()
	s.settle()
	if len(s.eventsOf(0, EventSplitBrain)) != 1 || len(s.eventsOf(1, EventSplitBrain)) != 1 {
		s.fail("no split brain reported on both sides")
	}
}

// splitBrain makes a split brain in async mode: the link is cut, a and b
// both write as primaries at epochs 1 and 2, a stops.
func splitBrain(t *testing.T, policy SplitBrainPolicy, aWrites bool) *sim {
	s := pair(t, Async, func(c *Config) { c.SplitBrain = policy })
	s.linkDown("cut")
	if aWrites {
		s.write(0, 1)
	}
	s.promote(1)
	s.writeTo(1, 4*s.cfg.RegionSize, 2)
	s.settle()
	for _, n := range s.nodes {
		n.m.Demote(s.now)
		s.drain()
	}
	s.settle()
	s.linkUpNow()
	s.settle()
	return s
}

func TestSplitBrainDisconnectsAndReports(t *testing.T) {
	s := splitBrain(t, Disconnect, true)
	for i := range s.nodes {
		sb := s.eventsOf(i, EventSplitBrain)
		if len(sb) != 1 || s.nodes[i].m.conn != connStandAlone {
			s.fail("%s: split brain events %v, connection %v", s.nodes[i].name, sb, s.nodes[i].m.conn)
		}
	}
	e := s.eventsOf(0, EventSplitBrain)[0]
	if e.SelfDirty != s.cfg.RegionSize || e.PeerDirty != s.cfg.RegionSize {
		t.Fatalf("what each side wrote: %d here, %d there; want a region each", e.SelfDirty, e.PeerDirty)
	}
	// resolve --discard a, given on b only.
	if err := s.nodes[1].m.Resolve(s.now, "a"); err != nil {
		t.Fatal(err)
	}
	s.nodes[0].m.Connect(s.now)
	s.nodes[1].m.Connect(s.now)
	s.reconnect()
	if s.resyncBytes != 2*s.cfg.RegionSize {
		t.Fatalf("resolution moved %d bytes, want both sides' regions (%d)", s.resyncBytes, 2*s.cfg.RegionSize)
	}
	s.checkHealed()
	img := s.nodes[0].dev.Bytes()
	if img[0] != 0 || img[4*s.cfg.RegionSize] != 2 {
		t.Fatalf("after discarding a: block 0 holds write %d (want none), region 4 write %d (want b's, 2)", img[0], img[4*s.cfg.RegionSize])
	}
}

func TestSplitBrainPolicies(t *testing.T) {
	for _, c := range []struct {
		policy  SplitBrainPolicy
		aWrites bool
		victim  int // -1: stays split
	}{
		{DiscardZeroChanges, false, 0},
		{DiscardZeroChanges, true, -1},
		{DiscardOlderPrimary, true, 0},
		{DiscardYoungerPrimary, true, 1},
	} {
		t.Run(c.policy.String(), func(t *testing.T) {
			s := splitBrain(t, c.policy, c.aWrites)
			if c.victim < 0 {
				if s.nodes[0].m.conn != connStandAlone {
					t.Fatal("resolved although both sides wrote")
				}
				return
			}
			if !s.converged() {
				t.Fatalf("not resolved: %v / %v", s.nodes[0].m, s.nodes[1].m)
			}
			if rs := s.eventsOf(c.victim, EventResyncStarted); rs[len(rs)-1].Reason != "sync target" {
				t.Fatalf("%s is not the target: %v", s.nodes[c.victim].name, rs)
			}
			// The victim's connected event says what it discards.
			cs := s.eventsOf(c.victim, EventConnected)
			wrote := c.victim == 1 || c.aWrites // b always writes
			if e := cs[len(cs)-1]; !e.Decision.ResolvedSplitBrain() || wrote != (e.SelfDirty > 0) {
				t.Fatalf("%s's connected event: %+v", s.nodes[c.victim].name, e)
			}
			s.checkHealed()
		})
	}
}

// TestVerifyRepairsWithoutChangingThePrimary: a flipped bit on the
// secondary is found by a verify started on the secondary (run by the
// primary), repaired onto the secondary, and the primary is unchanged.
func TestVerifyRepairsWithoutChangingThePrimary(t *testing.T) {
	s := pair(t, Sync)
	s.write(0, 3)
	s.settle()
	s.nodes[1].dev.FlipBit(3*s.cfg.RegionSize+100, 2)
	before := s.nodes[0].dev.Bytes()
	if err := s.nodes[1].m.Verify(s.now, true); err != nil {
		t.Fatal(err)
	}
	s.drain()
	s.settle()
	if err := s.nodes[1].m.Verify(s.now, true); err == nil && s.nodes[1].m.sync != syncNone {
		t.Fatal("verify allowed during a resync")
	}
	s.settle()
	mm := s.eventsOf(0, EventVerifyMismatch)
	if len(mm) != 1 || mm[0].Region != 3 {
		t.Fatalf("mismatches %v, want region 3", mm)
	}
	if !bytes.Equal(before, s.nodes[0].dev.Bytes()) {
		t.Fatal("verify changed the primary")
	}
	if s.resyncBytes != s.cfg.RegionSize {
		t.Fatalf("repair moved %d bytes, want one region", s.resyncBytes)
	}
	s.checkHealed()
}

// TestAsyncThrottle: past max_lag an async primary stops taking writes
// until the peer acknowledges.
func TestAsyncThrottle(t *testing.T) {
	s := pair(t, Async)
	a := s.nodes[0]
	var ids []uint64
	for k := 0; k < 8; k++ { // 8 x 2 blocks = 16 KiB = max_lag
		ids = append(ids, s.write(int64(k)*2*simBlock, 2))
	}
	// One block more would make the peer trail by more than max_lag (the
	// volume's test lost max_lag + 4 KiB at a crash when the check let a
	// write in while the lag was at most max_lag, before adding it).
	over := s.write(20*simBlock, 1)
	for len(a.inflight) > 0 {
		s.complete(0, 0)
	}
	for _, id := range ids {
		if !s.writes[id].acked {
			t.Fatal("async write within max_lag waits for the peer")
		}
	}
	if s.writes[over].acked || len(a.m.queue) != 1 {
		t.Fatalf("write past max_lag not held (queue %d)", len(a.m.queue))
	}
	if lag := a.m.Status().LagBytes; lag > s.cfg.MaxLagBytes {
		t.Fatalf("the peer trails by %d bytes, max_lag %d", lag, s.cfg.MaxLagBytes)
	}
	s.settle()
	if !s.writes[over].acked {
		t.Fatal("held write not released once the peer caught up")
	}
	s.checkHealed()
}

// TestAsyncAhead: with GoAhead the primary stops sending past max_lag and
// tells the peer it is Outdated; the writes it keeps to itself are
// acknowledged once the peer is known Outdated (here by the fencer, before
// the outdate frame gets through), never before: a primary that died right
// after acknowledging them left a peer that never read the frame,
// UpToDate and promotable (found by the e2e suite). Once the link drains
// it resyncs them.
func TestAsyncAhead(t *testing.T) {
	s := pair(t, Async, func(c *Config) { c.OnLag = GoAhead })
	a := s.nodes[0]
	for k := 0; k < 12; k++ {
		s.write(int64(k)*2*simBlock, 2)
	}
	for len(a.inflight) > 0 {
		s.complete(0, 0)
	}
	if !a.m.ahead || len(s.eventsOf(0, EventAhead)) != 1 {
		t.Fatal("did not go ahead")
	}
	held := 0
	for _, w := range s.writes {
		if !w.acked {
			held++
		}
	}
	if held == 0 || !a.fence {
		t.Fatalf("writes that went ahead acknowledged before the peer was known Outdated (%d held, fence asked: %v)", held, a.fence)
	}
	s.resolveFence(0, true)
	for len(a.inflight) > 0 {
		s.complete(0, 0)
	}
	for id, w := range s.writes {
		if !w.acked {
			t.Fatalf("write %d held once the peer was outdated", id)
		}
	}
	s.settle()
	if len(s.eventsOf(1, EventOutdated)) != 1 {
		t.Fatal("peer not outdated while behind")
	}
	if s.resyncBytes == 0 {
		t.Fatal("no resync after catching up")
	}
	s.checkHealed()
}

// TestPrimaryDiskErrorDetaches: a write error on the primary's disk
// detaches it; reads and writes go on through the peer.
func TestPrimaryDiskErrorDetaches(t *testing.T) {
	s := pair(t, Sync)
	a := s.nodes[0]
	early := s.write(0, 1)
	s.settle()
	a.failIO = true
	id := s.write(simBlock, 1)
	s.settle()
	if a.m.disk != Diskless || len(s.eventsOf(0, EventDiskDetached)) != 1 {
		t.Fatalf("not detached: %v", a.m)
	}
	if a.meta.Disk != Inconsistent {
		t.Fatalf("durable disk state %v, want Inconsistent", a.meta.Disk)
	}
	if !s.writes[id].acked {
		t.Fatal("write that failed locally not completed from the peer")
	}
	id2 := s.write(2*simBlock, 1)
	s.settle()
	if !s.writes[id2].acked {
		t.Fatal("write on a diskless primary not completed")
	}
	s.nextReq++
	rid := s.nextReq
	s.reqs[rid] = 0
	var got []byte
	a.m.Submit(s.now, Request{ID: rid, Op: OpRead, Off: 0, Len: 3 * simBlock})
	for _, act := range a.m.Actions() {
		s.apply(0, act)
	}
	for len(s.wire[0])+len(s.wire[1]) > 0 {
		for _, i := range []int{0, 1} {
			if len(s.wire[i]) > 0 {
				f := s.wire[i][0]
				s.wire[i] = s.wire[i][1:]
				s.nodes[1-i].m.Receive(s.now, f)
				for _, act := range s.nodes[1-i].m.Actions() {
					if c, ok := act.(Complete); ok && c.ID == rid {
						got = c.Data
					}
					s.apply(1-i, act)
				}
			}
		}
		for len(s.nodes[1].inflight) > 0 {
			s.complete(1, 0)
		}
	}
	if len(got) != 3*simBlock || got[0] != byte(early) || got[simBlock] != byte(id) || got[2*simBlock] != byte(id2) {
		t.Fatalf("read through the peer: %d bytes, stamps %d %d %d", len(got), got[0], got[simBlock], got[2*simBlock])
	}
}

// TestSecondaryDiskErrorMarksItInconsistent: a write error on the
// secondary detaches its disk, recorded Inconsistent; the primary goes on
// alone and the peer can no longer be promoted.
func TestSecondaryDiskErrorMarksItInconsistent(t *testing.T) {
	s := pair(t, Sync)
	b := s.nodes[1]
	b.failIO = true
	id := s.write(0, 1)
	s.settle()
	if !s.writes[id].acked {
		t.Fatal("write not completed with the peer detached")
	}
	if b.meta.Disk != Inconsistent || s.nodes[0].m.peerDisk != Diskless || len(s.eventsOf(0, EventPeerDetached)) != 1 {
		t.Fatalf("peer disk %v / %v", b.meta.Disk, s.nodes[0].m.peerDisk)
	}
	if err := b.m.Promote(s.now, 3, false); err == nil {
		t.Fatal("detached secondary promoted")
	}
}

// TestSizeMismatchRefused: replicas of different sizes never connect.
func TestSizeMismatchRefused(t *testing.T) {
	s := newSim(t, 1, Sync)
	s.faults = false
	cfg := s.cfg
	cfg.Node, cfg.Size = "b", cfg.Size/2
	m, err := New(cfg, Persisted{Meta: s.nodes[1].meta}, s.now)
	if err != nil {
		t.Fatal(err)
	}
	s.nodes[1].m = m
	s.linkUpNow()
	s.settle()
	if s.nodes[0].m.conn != connStandAlone || len(s.eventsOf(0, EventConnectRefused)) == 0 {
		t.Fatalf("sizes differ, yet %v", s.nodes[0].m)
	}
}

// TestOverlappingWritesKeepOrder: overlapping writes submitted together
// reach both disks one after the other, in submission order.
func TestOverlappingWritesKeepOrder(t *testing.T) {
	s := pair(t, Sync)
	first := s.write(0, 2)
	second := s.write(simBlock, 2)
	if n := len(s.nodes[0].inflight); n != 1 {
		t.Fatalf("%d writes in flight locally, want 1 (they overlap)", n)
	}
	s.settle()
	for _, n := range s.nodes {
		img := n.dev.Bytes()
		if img[0] != byte(first) || img[simBlock] != byte(second) || img[2*simBlock] != byte(second) {
			t.Fatalf("%s: blocks hold %d %d %d", n.name, img[0], img[simBlock], img[2*simBlock])
		}
	}
}

// TestReadWaitsForOverlappingWriteToBeAcknowledged: in sync mode a read
// of blocks that a write has reached here but not yet the peer waits for
// the write's acknowledgement. Returning the data early shows the client
// a write that a failover to the peer undoes (found by the volume's
// linearizability test: a read returned a write in flight at a primary
// crash, and a read on the new primary then returned the older value).
func TestReadWaitsForOverlappingWriteToBeAcknowledged(t *testing.T) {
	s := pair(t, Sync)
	a := s.nodes[0]
	w := s.write(0, 2)
	for len(a.inflight) > 0 {
		s.complete(0, 0)
	}
	if s.writes[w].acked {
		t.Fatal("acknowledged before the peer")
	}
	read := func(off int64) uint64 {
		s.nextReq++
		s.reqs[s.nextReq] = 0
		a.m.Submit(s.now, Request{ID: s.nextReq, Op: OpRead, Off: off, Len: simBlock})
		s.drain()
		return s.nextReq
	}
	reading := func(off int64) bool {
		for _, op := range a.inflight {
			if r, ok := op.(ReadLocal); ok && r.Off == off {
				return true
			}
		}
		return false
	}
	held := read(simBlock)
	elsewhere := read(4 * simBlock)
	if reading(simBlock) {
		t.Fatal("a read of a block written here and not yet on the peer went to the disk before the write was acknowledged")
	}
	if !reading(4 * simBlock) {
		t.Fatal("a read of another block waits too")
	}
	s.settle()
	if _, open := s.reqs[held]; open || !s.writes[w].acked {
		t.Fatal("the read did not complete once the write was acknowledged")
	}
	if _, open := s.reqs[elsewhere]; open {
		t.Fatal("the other read did not complete")
	}
}

// TestSecondaryKeepsWriteOrderAcrossLinkLoss: the writes a secondary
// received before the link dropped are all applied, in order, even one
// still waiting for an earlier overlapping write: dropping it while a
// later write (issued after it was acknowledged) reached the disk leaves
// a replica that is no prefix of the primary's writes, and an async
// failover shows the later write without the earlier one.
func TestSecondaryKeepsWriteOrderAcrossLinkLoss(t *testing.T) {
	s := pair(t, Async)
	a, b := s.nodes[0], s.nodes[1]
	written := func() {
		for len(a.inflight) > 0 {
			s.complete(0, 0)
		}
	}
	s.write(0, 1)
	written()
	second := s.write(0, 1) // overlaps the first
	written()
	third := s.write(4*simBlock, 1)
	written()
	if !s.writes[second].acked || !s.writes[third].acked {
		t.Fatal("async writes not acknowledged once written locally")
	}
	for len(s.wire[0]) > 0 { // b starts the first and the third; the second waits
		s.deliver(0)
	}
	s.linkDown("cut")
	for len(b.inflight) > 0 {
		s.complete(1, 0)
	}
	if img := b.dev.Bytes(); img[4*simBlock] == byte(third) && img[0] != byte(second) {
		t.Fatalf("the secondary holds write %d but not write %d, acknowledged before it was issued", third, second)
	}
}

// TestReadInFlightAtLinkLossGetsItsData: a client read waiting for the
// local disk when the link drops is answered by its read, with the data;
// the link loss completed it at once, with no data and no error (the
// volume's async linearizability test read another block's contents: the
// client's buffer as it was).
func TestReadInFlightAtLinkLossGetsItsData(t *testing.T) {
	s := pair(t, Async)
	a := s.nodes[0]
	s.write(0, 1)
	s.settle()
	var got *Complete
	s.nextReq++
	id := s.nextReq
	a.m.Submit(s.now, Request{ID: id, Op: OpRead, Off: 0, Len: simBlock})
	collect := func() {
		for _, act := range a.m.Actions() {
			if c, ok := act.(Complete); ok && c.ID == id {
				got = &c
				continue
			}
			s.apply(0, act)
		}
	}
	collect()
	s.linkUp, s.wire = false, [2][]Frame{}
	a.m.LinkDown(s.now, "cut")
	collect()
	s.nodes[1].m.LinkDown(s.now, "cut")
	s.drain()
	if got != nil {
		t.Fatalf("the read completed at the link loss, before its local read (err %v, %d bytes)", got.Err, len(got.Data))
	}
	for i, op := range a.inflight {
		if r, ok := op.(ReadLocal); ok && r.Off == 0 {
			b := make([]byte, r.Len)
			a.dev.ReadAt(b, r.Off)
			a.inflight = append(a.inflight[:i], a.inflight[i+1:]...)
			a.m.Done(s.now, Completion{ID: r.ID, Data: b})
			break
		}
	}
	collect()
	if got == nil || got.Err != nil || len(got.Data) != simBlock {
		t.Fatalf("the read's answer: %+v", got)
	}
}

// TestResyncRateLimit: a resync moves at most the rate (after a burst of
// a tenth of a second at the rate, at least one region) and asks for a
// tick when the limiter allows more.
func TestResyncRateLimit(t *testing.T) {
	s := pair(t, Sync)
	a := s.nodes[0]
	s.linkDown("cut")
	s.resolveFence(0, true)
	for r := 0; r < 8; r++ {
		s.write(int64(r)*s.cfg.RegionSize, 1)
	}
	s.settle()
	a.m.SetRate(s.now, s.cfg.RegionSize) // one region a second
	s.drain()
	s.linkUpNow()
	s.settle()
	st := a.m.Status()
	if st.Sync != "source" || st.ResyncDone != s.cfg.RegionSize {
		t.Fatalf("after the burst: %+v, want one region moved", st)
	}
	next := a.m.NextTick(s.now)
	if d := next.Sub(s.now); d <= 0 || d > time.Second {
		t.Fatalf("next tick in %v, want within a second", d)
	}
	for i := 0; i < 8 && a.m.Status().Sync != ""; i++ {
		s.now = s.now.Add(time.Second)
		a.m.Tick(s.now)
		s.drain()
		s.settle()
		if moved := a.m.Status().ResyncDone; a.m.Status().Sync != "" && moved != int64(i+2)*s.cfg.RegionSize {
			t.Fatalf("after %d s: %d bytes moved", i+1, moved)
		}
	}
	if a.m.Status().Sync != "" {
		t.Fatal("resync not done after 8 s at one region a second")
	}
	s.checkHealed()
}

// TestStatus: what `tandem volume status` reads while connected and in a
// resync.
func TestStatus(t *testing.T) {
	s := pair(t, Async)
	st := s.nodes[0].m.Status()
	if st.Role != Primary || st.Disk != UpToDate || st.PeerDisk != UpToDate || st.Connection != "Connected" || st.OutOfSync != 0 || st.Epoch != 1 {
		t.Fatalf("connected primary: %+v", st)
	}
	s.linkDown("cut")
	s.write(0, 1)
	s.settle()
	st = s.nodes[0].m.Status()
	if st.Connection != "Connecting" || st.OutOfSync != s.cfg.RegionSize {
		t.Fatalf("cut off after a write: %+v", st)
	}
	if st := s.nodes[1].m.Status(); st.Role != Secondary || st.Disk != UpToDate {
		t.Fatalf("secondary: %+v", st)
	}
}

// TestWrongVolumeRefused: a frame for another volume drops the link for
// good.
func TestWrongVolumeRefused(t *testing.T) {
	s := pair(t, Sync)
	b := s.nodes[1]
	b.m.Receive(s.now, Frame{Kind: FrameData, Volume: VolumeID{7}, Epoch: 1, Data: make([]byte, simBlock)})
	s.drain()
	if b.m.conn != connStandAlone || len(b.inflight) != 0 || len(s.eventsOf(1, EventConnectRefused)) != 1 {
		t.Fatalf("frame of another volume: %v", b.m)
	}
}

// TestConfigValidate reports every problem at once.
func TestConfigValidate(t *testing.T) {
	c := Config{RegionSize: 3000, ResyncWindow: -1, VerifyWindow: -1, ResyncChunk: MaxChunk + 1}
	err := c.Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"node", "size", "region size", "resync window", "verify window", "resync chunk", "NewGenID"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
	d := DefaultConfig()
	if d.RegionSize != 64<<10 || d.ALExtents != 64 || d.ExtentRegions != 64 || d.ResyncWindow != 512 || d.VerifyWindow != 128 || d.ResyncChunk != MaxChunk {
		t.Fatalf("defaults: %+v", d)
	}
}

// TestForcedPromotionWhileConnectedStartsTheInitialSync: two new replicas
// connect first (neither has data: nothing to sync), then one is forced
// primary, as `tandem volume primary --force` does for a new volume: the
// peer must receive all of the data and end UpToDate, not stay an
// Inconsistent replica that only gets the writes from now on.
func TestForcedPromotionWhileConnectedStartsTheInitialSync(t *testing.T) {
	s := newSim(t, 1, Sync)
	s.faults = false
	s.linkUpNow()
	s.settle()
	if st := s.nodes[1].m.Status(); st.Connection != "Connected" || st.Disk != Inconsistent {
		s.fail("before promotion: %+v", st)
	}
	if err := s.nodes[0].m.Promote(s.now, 1, true); err != nil {
		t.Fatal(err)
	}
	s.epoch, s.holderEpoch = 1, 1
	s.drain()
	s.write(0, 1)
	s.settle()
	for i := range 2 {
		if st := s.nodes[i].m.Status(); st.Disk != UpToDate || st.PeerDisk != UpToDate || st.Sync != "" {
			s.fail("node %d after the initial sync: %+v", i, st)
		}
	}
	if len(s.eventsOf(0, EventResyncStarted)) != 1 || !s.eventsOf(0, EventResyncStarted)[0].Full {
		s.fail("no full sync started: %v", s.nodes[0].events)
	}
}

// TestDeposeStepsDownAPrimaryWithWritesInFlight: told by the cluster that
// the group went to the peer at a newer epoch, a sync primary whose write
// waits for the peer's acknowledgement fails it at once and steps down: it
// does not wait for the link to show the epoch (a link slow to break held
// a deposed holder's export, and its group, 220 ms into its successor's
// lease: storage seed 44102). It records no epoch, and refuses a
// promotion at an older one.
func TestDeposeStepsDownAPrimaryWithWritesInFlight(t *testing.T) {
	s := pair(t, Sync)
	a := s.nodes[0]
	id := s.write(0, 1)
	if _, open := s.reqs[id]; !open {
		t.Fatal("the write was answered with the peer's acknowledgement still on the wire")
	}
	a.m.Depose(s.now, 1) // not newer: nothing happens
	s.drain()
	if _, open := s.reqs[id]; !open || a.m.Status().Role != Primary {
		t.Fatalf("an epoch not newer deposed the primary (role %v, write open %v)", a.m.Status().Role, open)
	}
	a.m.Depose(s.now, 2)
	s.drain()
	if _, open := s.reqs[id]; open {
		t.Fatal("the deposed primary's write is still open")
	}
	if s.writes[id].acked {
		t.Fatal("the deposed primary acknowledged the write")
	}
	if st := a.m.Status(); st.Role != Secondary || a.m.meta.Epoch != 1 {
		t.Fatalf("deposed: %v with epoch %d recorded; want Secondary, epoch 1", st.Role, a.m.meta.Epoch)
	}
	if len(s.eventsOf(0, EventDeposed)) != 1 {
		t.Fatalf("deposed events: %v", s.eventsOf(0, EventDeposed))
	}
	s.settle()
	if err := a.m.Promote(s.now, 1, false); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("promoted again at the superseded epoch: %v", err)
	}
	// The successor's promotion goes through, and the pair converges.
	s.epoch = 2
	s.promote(1)
	s.write(0, 1)
	s.settle()
	if !s.converged() {
		t.Fatal("not converged under the successor")
	}
}

// TestDeposeLeavesTheSuccessorsEpochToTheSuccessor: the cluster's word
// reaches a secondary (the replica of a node the group is not on) before
// the new holder promoted. It must record nothing: a secondary that took
// the epoch as seen carried it to the holder in the next handshake, whose
// promotion at that epoch was then refused as already seen, and the group
// ran nowhere (storage seed 45021).
func TestDeposeLeavesTheSuccessorsEpochToTheSuccessor(t *testing.T) {
	s := pair(t, Sync)
	a, b := s.nodes[0], s.nodes[1]
	a.m.Demote(s.now)
	s.settle()
	s.linkDown("cut")
	b.m.Depose(s.now, 2) // the group goes to a at epoch 2: b is not primary
	if b.m.meta.Epoch != 1 || b.m.Status().Role != Secondary {
		t.Fatalf("the secondary recorded epoch %d, role %v", b.m.meta.Epoch, b.m.Status().Role)
	}
	s.linkUpNow()
	s.settle()
	if err := a.m.Promote(s.now, 2, false); err != nil {
		t.Fatalf("the successor's promotion at the cluster's epoch: %v", err)
	}
	s.epoch, s.holderEpoch = 2, 2
	s.drain()
	id := s.write(0, 1)
	s.settle()
	if !s.writes[id].acked {
		t.Fatal("the successor's write was not acknowledged")
	}
}
