package meta

import (
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"tandem/internal/blockdev"
	"tandem/internal/replication"
)

// Writers, a bitmap flusher and state updates at once (run with -race):
// every Begin is paired with an End, the log never holds more than its
// capacity, and a crash afterwards recovers.
func TestConcurrentWritePath(t *testing.T) {
	mem := blockdev.NewMem(crashDevSize)
	m := mustCreate(t, mem, small())
	al, bm, data := m.AL(), m.Bitmap(), m.Data()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			buf := make([]byte, 4096)
			for range 300 {
				off := rng.Int64N(data.Size()/4096) * 4096
				e := off / al.ExtentSize()
				for {
					_, err := al.Begin(e)
					if err == nil {
						break
					}
					if !IsALFull(err) {
						t.Error(err)
						return
					}
				}
				if rng.IntN(2) == 0 {
					bm.Set(off, 4096)
				}
				data.WriteAt(buf, off)
				if err := al.End(e); err != nil {
					t.Error(err)
				}
				if n := len(al.Hot()); n > al.Capacity() {
					t.Errorf("%d hot extents, capacity %d", n, al.Capacity())
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 30 {
			bm.Flush()
			m.SetEpoch(replication.Epoch(i))
			data.Flush()
		}
	}()
	wg.Wait()
	r := mustOpen(t, mem.Crash(), OpenOptions{})
	if _, err := r.AL().Recover(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if again := mustOpen(t, mem.Crash(), OpenOptions{}); again.Unclean() {
		t.Fatal("unclean after Close")
	}
}

// gatedFlush is a device whose flushes wait for the test's go-ahead once
// armed: a cold Begin stuck in its transaction's flush.
type gatedFlush struct {
	*blockdev.Mem
	armed   atomic.Bool
	entered chan struct{}
	gate    chan struct{}
}

func (g *gatedFlush) Flush() error {
	if g.armed.Load() {
		g.entered <- struct{}{}
		<-g.gate
	}
	return g.Mem.Flush()
}

func TestHotBeginDoesNotWaitForATransaction(t *testing.T) {
	dev := &gatedFlush{Mem: blockdev.NewMem(crashDevSize), entered: make(chan struct{}, 1), gate: make(chan struct{})}
	m := mustCreate(t, dev, small())
	al := m.AL()
	al.Begin(0)
	al.End(0)
	dev.armed.Store(true)
	cold := make(chan error)
	go func() {
		_, err := al.Begin(1)
		cold <- err
	}()
	<-dev.entered // the cold transaction is waiting on its flush
	if wrote, err := al.Begin(0); err != nil || wrote {
		t.Fatalf("hot Begin during a transaction: %v %v", wrote, err)
	}
	if err := al.End(0); err != nil {
		t.Fatal(err)
	}
	dev.armed.Store(false)
	close(dev.gate)
	if err := <-cold; err != nil {
		t.Fatal(err)
	}
	if got := al.Hot(); !slices.Equal(got, []int64{0, 1}) {
		t.Fatalf("hot %v", got)
	}
}
