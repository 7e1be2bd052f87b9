package volume

import (
	"bytes"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"tandem/internal/blockdev"
	"tandem/internal/replication"
	"tandem/internal/replication/link"
	"tandem/internal/volume/meta"
)

func TestBufPoolsClasses(t *testing.T) {
	var p bufPools
	for _, n := range []int{1, 4096, pooledMin - 1, pooledMin, pooledMin + 1, 64 << 10, 1 << 20, 1<<20 + 9} {
		b := p.get(n)
		if len(b) != n {
			t.Fatalf("get(%d): len %d", n, len(b))
		}
		if n >= pooledMin && cap(b)&(cap(b)-1) != 0 {
			t.Fatalf("get(%d): cap %d is not a class", n, cap(b))
		}
		p.put(b)
	}
	b := p.get(100 << 10)
	p.put(b[:10]) // put takes any length of a pooled buffer
	// A buffer that did not come from get is never pooled: its capacity
	// is not a class.
	p.put(make([]byte, 100<<10))
}

// Concurrent writes of every size, overlapping, through the primary: the
// secondary applies them from pooled buffers that it reuses once written,
// so any early reuse would show as replicas that differ.
func TestPooledPeerDataKeepsReplicasIdentical(t *testing.T) {
	p := newPair(t, replication.Sync, clean(), replication.UpToDate)
	p.waitFor("connected", p.inSync)
	// b's writes take a while after reading their data, so a buffer
	// handed out again too early is overwritten before it is written.
	p.vols[1].Close()
	p.reopenOver(1, func(d blockdev.Device) blockdev.Device { return slowWrites{d} })
	p.waitFor("connected", p.inSync)
	p.promote(0, 1)
	sizes := []int{4 << 10, pooledMin - 4096, pooledMin, 64 << 10, 200 << 10, 512 << 10}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			buf := make([]byte, 512<<10)
			for range 60 {
				n := sizes[rng.IntN(len(sizes))]
				for j := range buf[:n] {
					buf[j] = byte(rng.Uint32())
				}
				off := int64(rng.IntN((pairSize-n)/4096)) * 4096
				if _, err := p.vols[0].WriteAt(buf[:n], off); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := p.vols[0].Flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.data(0), p.data(1)) {
		t.Fatal("replicas differ")
	}
	// Every lent buffer came back once written.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var n int
		p.vols[1].call(func(time.Time) error { n = len(p.vols[1].lent); return nil })
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d buffers still lent after every write was acknowledged", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// slowWrites waits before each write.
type slowWrites struct{ blockdev.Device }

func (s slowWrites) WriteAt(p []byte, off int64) (int, error) {
	time.Sleep(500 * time.Microsecond)
	return s.Device.WriteAt(p, off)
}

// reopenOver opens node i's volume again, its data device wrapped.
func (p *pair) reopenOver(i int, wrap func(blockdev.Device) blockdev.Device) {
	md, err := meta.Open(wrap(p.devs[i]), meta.OpenOptions{})
	if err != nil {
		p.t.Fatal(err)
	}
	ep, err := p.net.Endpoint(link.MemConfig{Self: p.names[i], Peer: p.names[1-i], Volume: p.id, Size: uint64(md.DataSize()),
		Epoch: md.State().Epoch, Window: 16, Reconnect: 20 * time.Millisecond, Timeout: time.Second, Fenced: link.MessageFenced})
	if err != nil {
		p.t.Fatal(err)
	}
	v, err := Open(Options{Name: "v", Meta: md, Link: ep, Fencer: p.fencer, Replication: replication.Config{Mode: p.mode, FenceRetry: 50 * time.Millisecond}})
	if err != nil {
		p.t.Fatal(err)
	}
	p.vols[i] = v
}
