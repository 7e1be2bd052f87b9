package volume

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"tandem/internal/replication"
	"tandem/internal/replication/link"
)

// A fault at every step of a write: one client writes a fixed sequence
// through the primary while the link carries frames one by one; the
// primary crashes, the secondary crashes, or the link breaks right after
// the k-th frame, for every k the sequence takes. Then the cluster does
// what it would (the secondary takes over at a newer epoch; the crashed
// node restarts; the link comes back), the replicas resync, and they
// must be equal byte for byte, holding every acknowledged write.

type stepFault uint8

const (
	linkBreaks       stepFault = iota // the k-th frame is lost and the session with it
	primaryCrashes                    // nothing after the k-th frame arrives; the primary crashes
	secondaryCrashes                  // the same, the secondary
)

func (f stepFault) String() string {
	return [...]string{"link breaks", "primary crashes", "secondary crashes"}[f]
}

// stepWrite is one write of the client's sequence.
type stepWrite struct {
	off   int64
	data  []byte
	acked bool // false: failed, or never answered (may be there or not)
}

// The step tests' volume: small, as every run copies both replicas a few
// times, with 8 extents for the activity log's 4.
const stepSize, stepExtent = 2 << 20, 256 << 10

// stepScript is the client's sequence: writes of 4–64 KiB anywhere on
// the volume (some overlap or share a region; they touch more
// activity-log extents than the log holds, so extents retire mid-way), a
// flush after every fourth.
func stepScript(seed uint64, n int) []stepWrite {
	rng := rand.New(rand.NewPCG(seed, 99))
	ws := make([]stepWrite, n)
	for i := range ws {
		ws[i].off = int64(rng.IntN((stepSize-64<<10)/4096)) * 4096
		ws[i].data = make([]byte, 4096*(1+rng.IntN(16)))
		for j := range ws[i].data {
			ws[i].data[j] = byte(rng.Uint32())
		}
	}
	return ws
}

// stepClient writes ws in order through v, a flush after every fourth,
// and stops at the first error; it reports how many writes it issued.
func stepClient(v *Volume, ws []stepWrite) int {
	for i := range ws {
		if _, err := v.WriteAt(ws[i].data, ws[i].off); err != nil {
			return i + 1
		}
		ws[i].acked = true
		if i%4 == 3 {
			if err := v.Flush(); err != nil {
				return i + 1
			}
		}
	}
	return len(ws)
}

// checkHolds fails unless img holds every acknowledged write of ws (in
// order) not overwritten by a later one; where a later write was not
// acknowledged, either may be there. Bytes no write touched are zero.
func checkHolds(t *testing.T, what string, img []byte, ws []stepWrite) {
	t.Helper()
	const chunk = 4096
	covering := map[int64][]int{} // chunk offset -> writes, in order
	for i, w := range ws {
		for off := w.off; off < w.off+int64(len(w.data)); off += chunk {
			covering[off] = append(covering[off], i)
		}
	}
	zero := make([]byte, chunk)
	for off := int64(0); off < int64(len(img)); off += chunk {
		got := img[off : off+chunk]
		idx := covering[off]
		last := -1
		for k, i := range idx {
			if ws[i].acked {
				last = k
			}
		}
		want := zero
		if last >= 0 {
			w := ws[idx[last]]
			want = w.data[off-w.off : off-w.off+chunk]
		}
		if bytes.Equal(got, want) {
			continue
		}
		ok := false
		for _, i := range idx[last+1:] {
			w := ws[i]
			if bytes.Equal(got, w.data[off-w.off:off-w.off+chunk]) {
				ok = true
				break
			}
		}
		if !ok {
			if last >= 0 {
				t.Fatalf("%s: the 4 KiB at %d lack acknowledged write %d", what, off, idx[last])
			}
			t.Fatalf("%s: the 4 KiB at %d hold data no write may have left there", what, off)
		}
	}
}

// stepCut is the filter that breaks the link after frame k.
type stepCut struct {
	k      int64
	fault  stepFault
	p      *pair
	mu     sync.Mutex
	frames int64
	armed  bool
	fired  bool
	hit    chan struct{} // closed when it fires
}

func (c *stepCut) filter(from, to string, f link.Frame) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.frames
	c.frames++
	if !c.armed || n < c.k || c.fault == linkBreaks && c.fired {
		return true
	}
	if !c.fired {
		c.fired = true
		close(c.hit)
		if c.fault == primaryCrashes {
			// The cluster sees the primary gone and chooses b before a
			// could outdate it.
			c.p.fencer.SetHolder(c.p.id, "b", 2)
		}
	}
	return false // a crashed node sends and receives nothing more
}

// disarm stops a cut that has not fired; it reports whether it did (a
// crash's cut goes on dropping every frame until release).
func (c *stepCut) disarm() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.fired {
		c.armed = false
	}
	return c.fired
}

// release lets every frame through from now on (the crashed node is cut
// off by a partition).
func (c *stepCut) release() {
	c.mu.Lock()
	c.armed = false
	c.mu.Unlock()
}

func (c *stepCut) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int(c.frames)
}

// stepRun runs the sequence with fault after frame k (k < 0: none) and
// returns how many frames the link carried.
func stepRun(t *testing.T, mode replication.Mode, fault stepFault, k int, seed uint64) int {
	p := newPairWith(t, mode, clean(), replication.UpToDate, pairOptions{size: stepSize, extent: stepExtent})
	p.waitFor("connected", p.inSync)
	p.promote(0, 1)
	cut := &stepCut{k: int64(k), fault: fault, p: p, armed: k >= 0, hit: make(chan struct{})}
	p.net.SetFilter(cut.filter)
	ws := stepScript(seed, 12)
	issued := make(chan int, 1)
	v := p.vols[0]
	go func() { issued <- stepClient(v, ws) }()
	n := -1
	select {
	case n = <-issued:
	case <-cut.hit:
	}
	// A crash happens if the cut fired; else, disarmed, it only counts.
	fired := cut.disarm()
	final := 0
	switch {
	case fired && fault == primaryCrashes:
		p.crashFrozen(0, 2)
		cut.release()
		if n < 0 {
			n = <-issued
		}
		p.takeOver(1, 2)
		if mode == replication.Async {
			for i := range ws { // lost up to max_lag: the test of that is TestAsyncLossWithinMaxLag
				ws[i].acked = false
			}
		}
		checkHolds(t, "b at its takeover", p.data(1), ws[:n])
		more := stepScript(seed+1, 6)
		if got := stepClient(p.vols[1], more); got != len(more) || !more[len(more)-1].acked {
			t.Fatalf("b, primary alone, failed write %d of %d", got, len(more))
		}
		ws = append(ws[:n], more...)
		n = len(ws)
		p.restart(0)
		final = 1
	case fired && fault == secondaryCrashes:
		p.crashFrozen(1, 0)
		cut.release()
		p.restart(1)
	}
	if n < 0 {
		n = <-issued
	}
	if n != len(ws) || !ws[n-1].acked {
		t.Fatalf("the primary failed write %d of %d", n, len(ws))
	}
	if fired && fault == primaryCrashes && mode == replication.Async {
		// An async primary goes on alone as soon as the link breaks (it
		// waits for no fencer): if it did before it crashed, the two
		// split, and the operator discards what a wrote alone.
		p.waitFor("resynced or split", func() bool { return p.inSync() || p.split() })
		if !p.inSync() {
			t.Logf("split brain (a wrote alone before it crashed): resolved by discarding a")
			if err := p.vols[0].Resolve("a"); err != nil {
				t.Fatal(err)
			}
			for _, v := range p.vols {
				if err := v.Connect(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	p.waitFor("resynced", func() bool { return p.inSync() && p.vols[final].Status().LagBytes == 0 })
	imgs := [2][]byte{p.data(0), p.data(1)}
	if !bytes.Equal(imgs[0], imgs[1]) {
		t.Fatal("the replicas differ after the resync")
	}
	checkHolds(t, "the primary at the end", imgs[final], ws[:n])
	return cut.count()
}

func TestFaultAtEveryStepOfAWrite(t *testing.T) {
	seed := testSeed(t)
	for _, mode := range []replication.Mode{replication.Sync, replication.Async} {
		t.Run(mode.String(), func(t *testing.T) {
			total := stepRun(t, mode, linkBreaks, -1, seed)
			t.Logf("the sequence takes %d frames", total)
			atEveryStep(t, seed, total, func(t *testing.T, fault stepFault, k int) { stepRun(t, mode, fault, k, seed) })
		})
	}
}

// atEveryStep runs each fault after each of total frames, as a subtest.
// With -race every k costs a second: a third of them, a different third
// for each seed.
func atEveryStep(t *testing.T, seed uint64, total int, run func(t *testing.T, fault stepFault, k int)) {
	every, first := 1, 0
	if raceEnabled {
		every, first = 3, int(seed%3)
	}
	for _, fault := range []stepFault{linkBreaks, primaryCrashes, secondaryCrashes} {
		for k := first; k < total; k += every {
			t.Run(fmt.Sprintf("%v after frame %d", fault, k), func(t *testing.T) { run(t, fault, k) })
		}
	}
}
