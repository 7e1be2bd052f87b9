package volume

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"tandem/internal/replication"
)

// Bad input at the engine: frames of an old epoch, promotions the rules
// refuse, a verify during a resync.

// block returns n bytes of v.
func block(v byte, n int) []byte { return bytes.Repeat([]byte{v}, n) }

// verifyClean runs an online verify from node i and fails unless it
// finds the replicas equal.
func (p *pair) verifyClean(i int) {
	p.t.Helper()
	before := 0
	for _, e := range p.vols[i].Status().Events {
		if e.Kind == "verify_finished" {
			before++
		}
	}
	if err := p.vols[i].Verify(false); err != nil {
		p.t.Fatal(err)
	}
	var done Event
	p.waitFor("verify finished", func() bool {
		n := 0
		for _, e := range p.vols[i].Status().Events {
			if e.Kind == "verify_finished" {
				n++
				done = e
			}
		}
		return n > before
	})
	if bad, _ := done.Attrs["mismatched_bytes"].(int64); bad != 0 {
		p.t.Fatalf("verify: %s", done.Message)
	}
}

// TestOldEpochFramesRefusedWhileConnected: the cluster moved the volume
// to b at epoch 2 and told b first; a, still primary at epoch 1 on the
// same connection, writes. b refuses the write's frame (stale epoch), a
// learns it was deposed and fails the write, and b's data does not
// change. Once b is promoted, the write a made on its own disk is undone
// by a resync from b: the replicas end equal.
func TestOldEpochFramesRefusedWhileConnected(t *testing.T) {
	p := newPair(t, replication.Sync, clean(), replication.UpToDate)
	p.waitFor("connected", p.inSync)
	p.promote(0, 1)
	a, b := p.vols[0], p.vols[1]
	if _, err := a.WriteAt(block(1, 64<<10), 0); err != nil {
		t.Fatal(err)
	}
	before := p.data(1)

	b.Observe(2)
	p.fencer.SetHolder(p.id, "b", 2)
	_, err := a.WriteAt(block(2, 64<<10), 1<<20)
	if err == nil {
		t.Fatal("a deposed primary's write succeeded")
	}
	if !replication.IsStaleEpoch(err) && !errors.Is(err, replication.ErrNotPrimary) {
		t.Fatalf("the deposed primary's write failed with %v, want a stale epoch", err)
	}
	t.Logf("a's write: %v", err)
	if _, err := a.WriteAt(block(3, 4096), 2<<20); !errors.Is(err, replication.ErrNotPrimary) {
		t.Fatalf("a deposed primary took a write: %v", err)
	}
	if !bytes.Equal(p.data(1), before) {
		t.Fatal("b's data changed under a deposed primary's write")
	}
	stale := false
	for _, e := range a.Status().Events {
		stale = stale || e.Kind == "deposed" || e.Kind == "stale_frame"
	}
	if !stale {
		t.Fatalf("a reported nothing of its deposition: %+v", a.Status().Events)
	}

	// The deposed primary carried epoch 2 back to b: a promotion takes
	// an epoch no replica has seen yet (equal to the newest seen, it
	// could be a second primary's), so the cluster gives b the next.
	p.waitFor("b sees a secondary", func() bool { return b.Status().PeerRole == "Secondary" })
	p.fencer.SetHolder(p.id, "b", 3)
	if err := b.Promote(3, false); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WriteAt(block(4, 64<<10), 3<<20); err != nil {
		t.Fatal(err)
	}
	p.waitFor("a resynced from b", p.inSync)
	if !bytes.Equal(p.data(0), p.data(1)) {
		t.Fatal("the replicas differ: a kept what it wrote as a deposed primary")
	}
	if got := p.data(1)[1<<20]; got != 0 {
		t.Fatalf("b holds the deposed primary's write (%d)", got)
	}
	p.verifyClean(1)
}

// TestFrozenPrimaryThawedAfterTakeover: a freezes (its engine stops, as
// under SIGSTOP) with a write on its way; the cluster gives the volume to
// b at epoch 2 and b writes. Thawed and reconnected, a fails its write,
// changes nothing on b, and resyncs from b.
func TestFrozenPrimaryThawedAfterTakeover(t *testing.T) {
	p := newPair(t, replication.Sync, clean(), replication.UpToDate)
	p.waitFor("connected", p.inSync)
	p.promote(0, 1)
	a, b := p.vols[0], p.vols[1]
	if _, err := a.WriteAt(block(1, 64<<10), 0); err != nil {
		t.Fatal(err)
	}
	thaw := p.freeze(0)
	defer thaw()
	frozenWrite := make(chan error, 1)
	go func() {
		_, err := a.WriteAt(block(2, 64<<10), 1<<20)
		frozenWrite <- err
	}()
	// b's keepalive gives a up; the cluster chooses b.
	p.net.Partition("a", "b")
	p.fencer.SetHolder(p.id, "b", 2)
	p.takeOver(1, 2)
	if _, err := b.WriteAt(block(3, 64<<10), 2<<20); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	want := p.data(1)

	p.net.Heal("a", "b")
	thaw()
	if err := <-frozenWrite; err == nil {
		t.Fatal("the thawed primary acknowledged a write after its successor took over")
	} else {
		t.Logf("a's write after the thaw: %v", err)
	}
	if _, err := a.WriteAt(block(4, 4096), 3<<20); err == nil {
		t.Fatal("the thawed primary took a new write")
	}
	p.waitFor("a resynced from b", p.inSync)
	if s := a.Status(); s.Role != "Secondary" || p.vols[1].Status().Role != "Primary" {
		t.Fatalf("roles after the thaw: a %s, b %s", s.Role, p.vols[1].Status().Role)
	}
	if !bytes.Equal(p.data(1), want) {
		t.Fatal("the thawed primary changed the new primary's data")
	}
	if !bytes.Equal(p.data(0), want) {
		t.Fatal("a did not resync from b")
	}
	p.verifyClean(1)
}

// TestPromotionOfOutdatedRefused: a goes on alone and the cluster marks b
// Outdated; b refuses to become primary, also after a restart, unless
// forced.
func TestPromotionOfOutdatedRefused(t *testing.T) {
	p := newPair(t, replication.Sync, clean(), replication.UpToDate)
	p.waitFor("connected", p.inSync)
	p.promote(0, 1)
	p.net.Partition("a", "b")
	p.waitFor("a alone", p.alone(0))
	if _, err := p.vols[0].WriteAt(block(1, 64<<10), 0); err != nil {
		t.Fatal(err)
	}
	if !p.fencer.Outdated(p.id, "b") {
		t.Fatal("a wrote alone without outdating b")
	}
	if err := p.vols[1].Outdate(); err != nil {
		t.Fatal(err)
	}
	// a dies; b is all there is.
	p.crashFrozen(0, 0)
	for restarted := range 2 {
		b := p.vols[1]
		err := b.Promote(2, false)
		if !errors.Is(err, replication.ErrNotUpToDate) || !strings.Contains(err.Error(), "Outdated") {
			t.Fatalf("promotion of an Outdated replica (restarted: %d): %v", restarted, err)
		}
		t.Logf("refused: %v", err)
		if s := b.Status(); s.Role != "Secondary" || s.Disk != "Outdated" {
			t.Fatalf("after the refusal: %s/%s", s.Role, s.Disk)
		}
		if restarted == 0 {
			b.Close()
			p.open(1)
		}
	}
	p.fencer.SetHolder(p.id, "b", 2) // the operator's choice
	if err := p.vols[1].Promote(2, true); err != nil {
		t.Fatalf("forced promotion: %v", err)
	}
	if _, err := p.vols[1].WriteAt(block(2, 4096), 0); err != nil {
		t.Fatal(err)
	}
}

// slowResync leaves a with 2 MiB b lacks and starts the resync at 64
// KiB/s: b is its Inconsistent target for half a minute.
func slowResync(t *testing.T) *pair {
	p := newPair(t, replication.Sync, clean(), replication.UpToDate)
	p.waitFor("connected", p.inSync)
	p.promote(0, 1)
	p.net.Partition("a", "b")
	p.waitFor("a alone", p.alone(0))
	for i := range 32 {
		if _, err := p.vols[0].WriteAt(block(byte(i+1), 4096), int64(i)*(64<<10)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.vols[0].SetRate(64 << 10); err != nil {
		t.Fatal(err)
	}
	p.net.Heal("a", "b")
	p.waitFor("resyncing", func() bool {
		s := p.vols[1].Status()
		return s.Sync == "target" && s.Disk == "Inconsistent"
	})
	return p
}

// TestPromotionOfInconsistentRefused: a resync target refuses to become
// primary, forced or not; its source crashed, and again once restarted
// alone, it refuses unless forced.
func TestPromotionOfInconsistentRefused(t *testing.T) {
	p := slowResync(t)
	if err := p.vols[0].Demote(); err != nil { // the peer's role is refused first
		t.Fatal(err)
	}
	p.waitFor("a secondary", func() bool { return p.vols[1].Status().PeerRole == "Secondary" })
	p.fencer.SetHolder(p.id, "b", 2)
	for _, force := range []bool{false, true} {
		err := p.vols[1].Promote(2, force)
		if !errors.Is(err, replication.ErrNotUpToDate) {
			t.Fatalf("promotion of a resync target (force %v): %v", force, err)
		}
		t.Logf("refused (force %v): %v", force, err)
	}
	p.crashFrozen(0, 0)
	p.waitFor("b alone", p.alone(1))
	for restarted := range 2 {
		b := p.vols[1]
		if s := b.Status(); s.Disk != "Inconsistent" {
			t.Fatalf("b (restarted: %d) is %s", restarted, s.Disk)
		}
		err := b.Promote(2, false)
		if !errors.Is(err, replication.ErrNotUpToDate) || !strings.Contains(err.Error(), "Inconsistent") {
			t.Fatalf("promotion of an Inconsistent replica (restarted: %d): %v", restarted, err)
		}
		t.Logf("refused: %v", err)
		if s := b.Status(); s.Role != "Secondary" {
			t.Fatalf("after the refusal b is %s", s.Role)
		}
		if restarted == 0 {
			b.Close()
			p.open(1)
		}
	}
}

// TestVerifyDuringResyncRefused: verify on either side while a resync
// runs fails at once, saying why; once the resync is over it runs and
// finds the replicas equal.
func TestVerifyDuringResyncRefused(t *testing.T) {
	p := slowResync(t)
	for i, v := range p.vols {
		err := v.Verify(false)
		if !replication.IsBusy(err) || !strings.Contains(err.Error(), "resync") {
			t.Fatalf("verify on %s during a resync: %v", p.names[i], err)
		}
		t.Logf("refused on %s: %v", p.names[i], err)
	}
	if s := p.vols[0].Status(); s.Verifying || s.Sync != "source" {
		t.Fatalf("a after the refused verifies: verifying %v, sync %q", s.Verifying, s.Sync)
	}
	if err := p.vols[0].SetRate(0); err != nil {
		t.Fatal(err)
	}
	p.waitFor("resynced", p.inSync)
	p.verifyClean(0)
	if !bytes.Equal(p.data(0), p.data(1)) {
		t.Fatal("the replicas differ")
	}
}
