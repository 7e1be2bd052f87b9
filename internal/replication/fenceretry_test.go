package replication

import "testing"

// A fence that failed in an earlier primary term held back the fence of
// the next one by FenceRetry. Seen in e2e
// (TestPostgresFailoverLosesNoCommittedTransaction, "cut off node1"):
// node2, deposed after a freeze, had its fence refused as a stale epoch
// (fence_failed at 20.476); promoted again 265 ms later with node1 cut
// off, its I/O stayed suspended until 21.480, when the retry timer of the
// refused fence ran out, although the new fence would have been granted
// at once: 740 ms of the takeover's mount_ms (787). Here: a primary cut
// off, its fencer refuses, it is demoted, then promoted again at a newer
// epoch with the link still down: it must ask the fencer at once.
func TestFenceOfANewTermDoesNotWaitForTheOldRetry(t *testing.T) {
	s := pair(t, Sync)
	a := s.nodes[0]
	s.linkDown("cut")
	s.settle()
	if !a.fence {
		t.Fatal("the cut-off primary did not ask its fencer")
	}
	s.resolveFence(0, false) // refused: the retry timer starts
	a.m.Demote(s.now)
	s.drain()
	s.settle()
	s.epoch, s.holderEpoch = 3, 3
	if err := a.m.Promote(s.now, 3, false); err != nil {
		t.Fatal(err)
	}
	s.drain()
	if !a.fence {
		suspended := a.m.suspended
		s.now = s.now.Add(s.cfg.FenceRetry)
		a.m.Tick(s.now)
		s.drain()
		t.Fatalf("promoted at epoch 3 with the peer unreachable, the new primary did not ask its fencer (suspended %v); it asked %v later: %v, when the retry of the fence refused at epoch 1 was due", suspended, s.cfg.FenceRetry, a.fence)
	}
}
