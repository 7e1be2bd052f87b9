package volume

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"tandem/internal/replication"
	"tandem/internal/replication/link"
)

// A fault at every step of a resync: a wrote regions alone (b outdated by
// the fencer) and flushed them; the link comes back and, right after the
// k-th frame of the reconnect, the link breaks, the source crashes, or
// the target crashes silently (every frame after the k-th is lost, and a
// runs on, unanswered, until the partition a crash amounts to). The
// target writes the regions it receives without FUA and a flush of both
// replicas later makes them durable, so a crash between the two loses
// them from its device: every region where its durable image differs
// from the source must then still be dirty on both sides (the source
// clears a bit only after the target's flush answered; the target only
// after its own flush, and volume/meta writes cleared bits only after
// flushing the data, so there the rule holds twice). The metadata is on
// devices of its own and the
// crashing node's bitmap is written just before the crash (the lazy write
// of cleared bits, which on a shared device would flush the data too), so
// a bit cleared too early reaches the disk. Then the crashed node
// restarts, the resync completes, and the replicas must be equal byte for
// byte, holding every acknowledged write.

// resyncCut loses frames from the k-th of the reconnect on: the first
// one only (the link breaks, ending the session), or every one, the
// session alive (a node crashed silently).
type resyncCut struct {
	k      int
	silent bool
	mu     sync.Mutex
	frames int
	hit    chan struct{} // closed at the k-th frame
}

func (c *resyncCut) lose(from, to string, f link.Frame) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.frames
	c.frames++
	if c.k < 0 || n < c.k || n > c.k && !c.silent {
		return false
	}
	if n == c.k {
		close(c.hit)
	}
	return true
}

func (c *resyncCut) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frames
}

// resyncStepRun runs one such resync with fault after frame k (k < 0:
// none) and returns how many frames the reconnect carried.
func resyncStepRun(t *testing.T, fault stepFault, k int, seed uint64) int {
	p := newPairWith(t, replication.Sync, clean(), replication.UpToDate, pairOptions{size: stepSize, extent: stepExtent, metaApart: true,
		tune: func(c *replication.Config) {
			// Chunks of two regions, four chunks a window: the resync takes
			// several chunks and several flushes.
			c.ResyncChunk, c.ResyncWindow = 128<<10, 8
		}})
	p.waitFor("connected", p.inSync)
	p.promote(0, 1)
	ws := stepScript(seed, 6)
	if n := stepClient(p.vols[0], ws); n != len(ws) || !ws[n-1].acked {
		t.Fatalf("write %d of %d failed while connected", n, len(ws))
	}
	p.net.Partition("a", "b")
	p.waitFor("a alone", p.alone(0))
	alone := stepScript(seed+1, 10)
	if n := stepClient(p.vols[0], alone); n != len(alone) || !alone[n-1].acked {
		t.Fatalf("write %d of %d failed while alone", n, len(alone))
	}
	if err := p.vols[0].Flush(); err != nil {
		t.Fatal(err)
	}
	ws = append(ws, alone...)
	cut := &resyncCut{k: k, silent: fault == secondaryCrashes, hit: make(chan struct{})}
	if fault == secondaryCrashes {
		p.net.SetDrop(cut.lose)
	} else {
		p.net.SetFilter(func(from, to string, f link.Frame) bool { return !cut.lose(from, to, f) })
	}
	p.net.Heal("a", "b")
	deadline := time.Now().Add(20 * time.Second)
	fired := false
	for !fired && !p.inSync() {
		select {
		case <-cut.hit:
			fired = true
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("neither resynced nor cut: a=%s b=%s", p.brief(0), p.brief(1))
		}
	}
	switch {
	case fired && fault == secondaryCrashes:
		p.flushBitmap(1)
		p.crashFrozen(1, 0)
		p.net.SetDrop(nil)
		p.checkDirtyCovers(0, p.data(1)) // a, which ran on
		p.open(1)                        // still partitioned
		if p.vols[1].Status().Disk == "Inconsistent" {
			// b took the source's bitmap: from then on its own bits cover
			// what it lacks too.
			p.checkDirtyCovers(1, p.data(0))
		}
		p.net.Heal("a", "b")
	case fired && fault == primaryCrashes:
		// b is the Inconsistent target: nobody takes over; a restarts as
		// a crashed primary and resyncs b again.
		p.flushBitmap(0)
		p.crashFrozen(0, 0)
		p.net.SetFilter(nil)
		p.restart(0)
	}
	p.waitFor("resynced", p.inSync)
	imgs := [2][]byte{p.data(0), p.data(1)}
	if !bytes.Equal(imgs[0], imgs[1]) {
		t.Fatal("the replicas differ after the resync")
	}
	checkHolds(t, "a at the end", imgs[0], ws)
	return cut.count()
}

// checkDirtyCovers fails unless node i's dirty bitmap counts at least as
// many bytes as the regions where its data differs from other's (a
// region differing and clear would never be resynced).
func (p *pair) checkDirtyCovers(i int, other []byte) {
	p.t.Helper()
	const region = 64 << 10
	mine := p.data(i)
	var differ int64
	for off := 0; off < len(mine); off += region {
		if !bytes.Equal(mine[off:off+region], other[off:off+region]) {
			differ += region
		}
	}
	if oos := p.vols[i].Status().OutOfSync; oos < differ {
		p.t.Fatalf("%s: %d bytes dirty, but %d bytes of regions differ from the peer's durable data", p.names[i], oos, differ)
	}
}

func TestFaultAtEveryStepOfAResync(t *testing.T) {
	seed := testSeed(t)
	total := resyncStepRun(t, linkBreaks, -1, seed)
	t.Logf("the reconnect and resync take %d frames", total)
	atEveryStep(t, seed, total, func(t *testing.T, fault stepFault, k int) { resyncStepRun(t, fault, k, seed) })
}
