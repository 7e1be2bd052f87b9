package volume

import (
	"flag"
	"sync"
	"testing"
	"time"

	"tandem/internal/replication"
)

// Faults for the pair beyond the network's: a frozen engine, a crash at
// one instant, a takeover as the cluster does it.

var volumeSeed = flag.Uint64("volume.seed", 0, "random seed for the volume's randomized tests (0: from the clock)")

// testSeed returns the seed of a randomized test, logged so a failure can
// be run again with -volume.seed.
func testSeed(t *testing.T) uint64 {
	s := *volumeSeed
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (-volume.seed=%d runs it again)", s, s)
	return s
}

// freeze stops node i's engine as SIGSTOP would: a step that does not end
// holds the machine, which takes no input and issues nothing until thaw.
// Local I/O already issued completes, and frames already queued may still
// leave.
func (p *pair) freeze(i int) (thaw func()) {
	p.t.Helper()
	frozen, release, closed := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		if !p.vols[i].post(func(time.Time) { close(frozen); <-release }) {
			close(closed)
		}
	}()
	select {
	case <-frozen:
	case <-closed:
		p.t.Fatalf("freeze %s: closed", p.names[i])
	}
	var once sync.Once
	return func() { once.Do(func() { close(release) }) }
}

// crashFrozen crashes node i at one instant: its engine frozen, the
// frames on the wire lost (the two are partitioned until restart), its
// device keeps only what was flushed. With next >
// 0 the cluster, seeing i dead, makes the other node the holder at epoch
// next before i could ask the fencer anything.
func (p *pair) crashFrozen(i int, next replication.Epoch) {
	p.t.Helper()
	thaw := p.freeze(i)
	p.net.Partition(p.names[0], p.names[1])
	crashed := p.devs[i].Crash()
	if p.metas[i] != nil {
		p.metas[i] = p.metas[i].Crash()
	}
	if next > 0 {
		p.fencer.SetHolder(p.id, p.names[1-i], next)
	}
	thaw()
	p.vols[i].Close()
	p.vols[i], p.devs[i] = nil, crashed
}

// flushBitmap writes node i's dirty bitmap now, as the lazy timer would:
// bits cleared so far reach its meta device.
func (p *pair) flushBitmap(i int) {
	p.t.Helper()
	v, errc := p.vols[i], make(chan error, 1)
	if !v.post(func(time.Time) { errc <- v.md.Bitmap().Flush() }) {
		p.t.Fatalf("flush %s's bitmap: closed", p.names[i])
	}
	if err := <-errc; err != nil {
		p.t.Fatal(err)
	}
}

// restart brings node i back on its device, the network healed.
func (p *pair) restart(i int) {
	p.t.Helper()
	p.net.Heal(p.names[0], p.names[1])
	p.open(i)
}

// takeOver promotes node i at epoch once it has seen its peer go, as the
// cluster fails over.
func (p *pair) takeOver(i int, epoch replication.Epoch) {
	p.t.Helper()
	p.waitFor(p.names[i]+" sees its peer gone", func() bool { return p.vols[i].Status().Connection != "Connected" })
	p.promote(i, epoch)
}

// alone: node i is up and not connected.
func (p *pair) alone(i int) func() bool {
	return func() bool { return p.vols[i] != nil && p.vols[i].Status().Connection != "Connected" }
}

// split: both nodes are up, stand-alone after a split brain.
func (p *pair) split() bool {
	for _, v := range p.vols {
		if v == nil || v.Status().Connection != "StandAlone" {
			return false
		}
		sb := false
		for _, e := range v.Status().Events {
			sb = sb || e.Kind == "split_brain"
		}
		if !sb {
			return false
		}
	}
	return true
}
