package replication

import (
	"bytes"
	"fmt"
	"testing"
)

// The resync's batching: the target writes regions without FUA, and a
// region's bit is cleared, on either side, only once a flush of both
// replicas issued after its data was read and sent has completed; a crash
// in between leaves it dirty, to be sent again.

// resyncPair returns a pair (chunks of two regions, a window of eight)
// whose primary a wrote one block in each of regions while cut off from
// b (outdated by the fencer), with the link back up and nothing
// delivered yet.
func resyncPair(t *testing.T, regions ...int) *sim {
	t.Helper()
	s := pair(t, Sync, func(c *Config) {
		c.ResyncChunk = 2 * c.RegionSize
		c.ResyncWindow = 8
	})
	s.linkDown("cut")
	s.resolveFence(0, true)
	for _, r := range regions {
		s.write(int64(r)*s.cfg.RegionSize, 1)
	}
	s.settle()
	s.sent = [2]map[FrameKind]int{{}, {}}
	s.linkUpNow()
	return s
}

// settleUnflushed delivers every frame and completes every local
// operation but flushes, until nothing else is left: each resync region
// is then read, sent and written, and no flush of either replica has
// completed since.
func (s *sim) settleUnflushed() {
	s.settleHolding(func(a Action) bool {
		_, flush := a.(FlushLocal)
		return flush
	})
}

func (s *sim) flushesInFlight(i int) int {
	n := 0
	for _, a := range s.nodes[i].inflight {
		if _, ok := a.(FlushLocal); ok {
			n++
		}
	}
	return n
}

// regionsEqual reports whether both replicas' live images agree on
// region r.
func (s *sim) regionsEqual(r int) bool {
	off, n := s.nodes[0].m.regionRange(r)
	return bytes.Equal(s.nodes[0].dev.Bytes()[off:off+n], s.nodes[1].dev.Bytes()[off:off+n])
}

// TestResyncWritesWithoutFUAAndClearsAfterFlush: the target writes the
// regions it receives without FUA; once they are all written, while no
// flush has completed, both sides still hold every bit and the source
// counts nothing moved; the flushes complete and the bits go. Regions
// travel in chunks of consecutive regions, and the target answers no
// region on its own.
func TestResyncWritesWithoutFUAAndClearsAfterFlush(t *testing.T) {
	regions := []int{1, 2, 3, 7}
	s := resyncPair(t, regions...)
	a, b := s.nodes[0], s.nodes[1]
	s.onAction = func(i int, act Action) {
		if w, ok := act.(WriteLocal); ok && i == 1 && w.FUA {
			s.fail("b writes %d bytes at %d with FUA during the resync", len(w.Data), w.Off)
		}
	}
	s.settleUnflushed()
	if st := a.m.Status(); st.Sync != "source" || st.ResyncDone != 0 {
		t.Fatalf("a before any flush: sync %q, %d bytes moved; want source, 0", st.Sync, st.ResyncDone)
	}
	for _, r := range regions {
		if !s.regionsEqual(r) {
			t.Fatalf("region %d not written on b", r)
		}
		if !a.bits[r] || !b.bits[r] {
			t.Fatalf("region %d cleared before a flush: a %v, b %v", r, a.bits[r], b.bits[r])
		}
	}
	if s.flushesInFlight(0) == 0 || s.flushesInFlight(1) == 0 {
		t.Fatalf("flushes in flight: a %d, b %d; want both asked", s.flushesInFlight(0), s.flushesInFlight(1))
	}
	// a's own flush completes: the data is durable on a, not yet on b.
	for i, k := s.flushIn(0); i >= 0; i, k = s.flushIn(0) {
		s.complete(i, k)
	}
	s.settleUnflushed()
	for _, r := range regions {
		if !a.bits[r] || !b.bits[r] {
			t.Fatalf("region %d cleared with only a's flush done: a %v, b %v", r, a.bits[r], b.bits[r])
		}
	}
	// b's flush completes; its answer is still on the wire.
	for i, k := s.flushIn(1); i >= 0; i, k = s.flushIn(1) {
		s.complete(i, k)
	}
	for _, r := range regions {
		if !a.bits[r] || b.bits[r] {
			t.Fatalf("region %d with b's flush done and its answer on the wire: bit on a %v (want set), on b %v (want clear)", r, a.bits[r], b.bits[r])
		}
	}
	s.settle()
	if !s.converged() {
		s.fail("not converged")
	}
	if want := int64(len(regions)) * s.cfg.RegionSize; s.resyncBytes != want {
		t.Fatalf("resync moved %d bytes, want %d", s.resyncBytes, want)
	}
	if got := s.sent[0][FrameResyncData]; got != 3 { // [1 2] [3] [7]
		t.Fatalf("%d resync-data frames, want 3 (chunks of two consecutive regions)", got)
	}
	for k, n := range s.sent[1] {
		switch k {
		case FrameHello, FrameBitmapAck, FrameFlushAck, FrameResyncDoneAck, FrameState:
		default:
			t.Fatalf("the target sent %d %v frames", n, k)
		}
	}
	if s.sent[0][FrameFlush] > s.sent[0][FrameResyncData] {
		t.Fatalf("%d flushes for %d resync-data frames", s.sent[0][FrameFlush], s.sent[0][FrameResyncData])
	}
	s.checkHealed()
}

// TestResyncCrashBetweenWriteAndFlush: a crash after the target wrote
// the resync's regions and before a flush covered them, of the target
// (its device keeping none, all or some of those writes), of the source,
// or of the source after the target's flush completed and before its
// answer arrived: the regions are still dirty where they must be, the
// next resync sends them again, and the replicas end equal holding every
// acknowledged write.
func TestResyncCrashBetweenWriteAndFlush(t *testing.T) {
	regions := []int{0, 1, 2, 5, 6, 9, 15}
	for _, c := range []struct {
		name  string
		crash func(s *sim)
	}{
		{"target keeps none", func(s *sim) { s.crashKeeping(1, func(int) bool { return false }) }},
		{"target keeps all", func(s *sim) { s.crashKeeping(1, func(int) bool { return true }) }},
		{"target keeps some", func(s *sim) { s.crashKeeping(1, func(k int) bool { return k%2 == 0 }) }},
		{"source", func(s *sim) { s.crashKeeping(0, func(int) bool { return false }) }},
		{"source after the target flushed", func(s *sim) {
			for i, k := s.flushIn(1); i >= 0; i, k = s.flushIn(1) {
				s.complete(i, k) // b's flush-ack goes on the wire, never delivered
			}
			s.crashKeeping(0, func(int) bool { return false })
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := resyncPair(t, regions...)
			s.settleUnflushed()
			c.crash(s)
			for i, n := range s.nodes {
				if n.m == nil {
					s.start(i)
				}
			}
			for _, r := range regions {
				if !s.nodes[0].bits[r] && !s.nodes[1].bits[r] && !s.regionsEqual(r) {
					t.Fatalf("after the crash region %d differs and is clear on both", r)
				}
			}
			s.heal()
			s.checkHealed()
			if !s.regionsEqual(15) || s.resyncBytes < s.cfg.RegionSize {
				t.Fatalf("resync after the crash moved %d bytes", s.resyncBytes)
			}
		})
	}
}

// flushIn finds a flush in flight on node i.
func (s *sim) flushIn(i int) (node, k int) {
	for k, a := range s.nodes[i].inflight {
		if _, ok := a.(FlushLocal); ok {
			return i, k
		}
	}
	return -1, -1
}

// TestResyncWindowBoundsRegionsNotYetDurable: with no flush completing,
// the source reads at most a window of regions; each completed flush of
// both replicas lets more go.
func TestResyncWindowBoundsRegionsNotYetDurable(t *testing.T) {
	s := pair(t, Sync, func(c *Config) {
		c.ResyncChunk = 2 * c.RegionSize
		c.ResyncWindow = 4
	})
	s.linkDown("cut")
	s.resolveFence(0, true)
	for r := 0; r < 16; r++ {
		s.write(int64(r)*s.cfg.RegionSize, 1)
	}
	s.settle()
	s.sent = [2]map[FrameKind]int{{}, {}}
	s.linkUpNow()
	s.settleUnflushed()
	if got := s.sent[0][FrameResyncData]; got != 2 {
		t.Fatalf("%d resync-data frames sent with no flush done, want 2 (a window of 4 regions in chunks of 2)", got)
	}
	for rounds := 0; s.nodes[0].m.Status().Sync != ""; rounds++ {
		if rounds > 20 {
			t.Fatal("resync does not finish")
		}
		s.settle()
	}
	if got := s.sent[0][FrameResyncData]; got != 8 {
		t.Fatalf("%d resync-data frames, want 8", got)
	}
	s.checkHealed()
}

// TestVerifyDigestsChunksOfRegions: a verify reads and digests chunks of
// consecutive regions, one digest frame each, at most its window in
// flight, and a bit flipped in one region of a chunk marks that region
// alone.
func TestVerifyDigestsChunksOfRegions(t *testing.T) {
	s := pair(t, Sync, func(c *Config) {
		c.ResyncChunk = 4 * c.RegionSize
		c.VerifyWindow = 8
	})
	s.write(0, 64)
	s.settle()
	s.nodes[1].dev.FlipBit(6*s.cfg.RegionSize+5, 1)
	s.sent = [2]map[FrameKind]int{{}, {}}
	if err := s.nodes[0].m.Verify(s.now, true); err != nil {
		t.Fatal(err)
	}
	s.drain()
	if reads := len(s.nodes[0].inflight); reads != 2 {
		t.Fatalf("%d reads at the start, want 2 (a window of 8 regions in chunks of 4)", reads)
	}
	s.settle()
	if got, want := s.sent[0][FrameVerifyDigest], s.cfg.Regions()/4; got != want {
		t.Fatalf("%d digest frames, want %d", got, want)
	}
	if got, want := s.sent[1][FrameVerifyResult], s.cfg.Regions()/4; got != want {
		t.Fatalf("%d result frames, want %d", got, want)
	}
	mm := s.eventsOf(0, EventVerifyMismatch)
	if len(mm) != 1 || mm[0].Region != 6 {
		t.Fatalf("mismatches %v, want region 6 alone", mm)
	}
	fin := s.eventsOf(0, EventVerifyFinished)
	if len(fin) != 1 || fin[0].Bytes != s.cfg.Size || fin[0].SelfDirty != s.cfg.RegionSize {
		t.Fatalf("verify finished: %v", fin)
	}
	if s.resyncBytes != s.cfg.RegionSize {
		t.Fatalf("repair moved %d bytes, want one region", s.resyncBytes)
	}
	s.checkHealed()
}

// TestResyncAndVerifyFramesOutOfPlaceRefused: region data that does not
// cover whole regions of the volume, and digests of regions past its end,
// drop the link.
func TestResyncAndVerifyFramesOutOfPlaceRefused(t *testing.T) {
	for _, c := range []struct {
		name string
		f    func(cfg Config) Frame
	}{
		{"resync data of part of a region", func(cfg Config) Frame {
			return Frame{Kind: FrameResyncData, Region: 1, Data: make([]byte, cfg.RegionSize+1)}
		}},
		{"resync data past the end", func(cfg Config) Frame {
			return Frame{Kind: FrameResyncData, Region: cfg.Regions() - 1, Data: make([]byte, 2*cfg.RegionSize)}
		}},
		{"digests past the end", func(cfg Config) Frame {
			return Frame{Kind: FrameVerifyDigest, Region: cfg.Regions() - 1, Digests: make([]Digest, 2)}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := resyncPair(t, 3)
			for len(s.wire[0])+len(s.wire[1]) > 0 && s.nodes[1].m.sync != syncTarget {
				if len(s.wire[0]) > 0 {
					s.deliver(0)
				} else {
					s.deliver(1)
				}
			}
			f := c.f(s.cfg)
			f.Volume, f.Epoch, f.Seq = s.cfg.Volume, s.nodes[0].m.meta.Epoch, 1<<40
			s.nodes[1].m.Receive(s.now, f)
			s.drain()
			if s.linkUp {
				t.Fatal(fmt.Sprintf("%v accepted", f.Kind))
			}
		})
	}
}

// TestTargetAwaitingTheBitmapSaysTarget: from the handshake's decision
// until the source's bitmap arrives the target is a resync target already
// and its status says so. It said "connected, in sync" (no resync yet, no
// bits of its own), the agent recorded both replicas UpToDate from that,
// and the cluster placed a group on the target whose promotion was then
// refused (e2e TestStorageGroupComesBackWhenItsLastNodeIsBanned).
func TestTargetAwaitingTheBitmapSaysTarget(t *testing.T) {
	s := resyncPair(t, 3)
	a, b := s.nodes[0], s.nodes[1]
	s.deliver(0) // a's hello: b decides, before a has b's hello
	st := b.m.Status()
	if st.Connection != "Connected" {
		t.Fatalf("b after a's hello: %s; want Connected (decided)", st.Connection)
	}
	if st.Sync != "target" {
		t.Fatalf("b decided to be the resync target, waiting for the bitmap: sync %q, %d bytes out of sync; want target", st.Sync, st.OutOfSync)
	}
	s.deliver(1) // b's hello: a decides and sends the bitmap
	if st := a.m.Status(); st.Sync != "source" {
		t.Fatalf("a after b's hello: sync %q; want source", st.Sync)
	}
	if st := b.m.Status(); st.Sync != "target" {
		t.Fatalf("b with the bitmap on the wire: sync %q; want target", st.Sync)
	}
	s.settle()
	if st := b.m.Status(); st.Sync != "" || st.Disk != UpToDate {
		t.Fatalf("b after the resync: sync %q, disk %v; want none, UpToDate", st.Sync, st.Disk)
	}
}
