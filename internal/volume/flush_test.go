package volume

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tandem/internal/blockdev"
)

// flushCounter records, at the start of each flush, how many writes had
// completed: those are durable once it returns.
type flushCounter struct {
	blockdev.Device
	written atomic.Int64
	durable atomic.Int64
	flushes atomic.Int64
}

func (f *flushCounter) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.Device.WriteAt(p, off)
	f.written.Add(1)
	return n, err
}

func (f *flushCounter) Flush() error {
	upTo := f.written.Load()
	f.flushes.Add(1)
	time.Sleep(200 * time.Microsecond)
	err := f.Device.Flush()
	for {
		d := f.durable.Load()
		if d >= upTo || f.durable.CompareAndSwap(d, upTo) {
			return err
		}
	}
}

func TestGroupFlushCoversEveryEarlierWrite(t *testing.T) {
	dev := &flushCounter{Device: blockdev.NewMem(1 << 20)}
	g := &groupFlush{dev: dev}
	var wg sync.WaitGroup
	const callers, rounds = 16, 50
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				dev.WriteAt(make([]byte, 512), int64(c*rounds+r)*512)
				mine := dev.written.Load() // at least this many completed before we ask
				if err := g.flush(); err != nil {
					t.Error(err)
					return
				}
				if d := dev.durable.Load(); d < mine {
					t.Errorf("flush returned with %d writes durable, %d had completed before it was asked", d, mine)
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d flush calls, %d device flushes", callers*rounds, dev.flushes.Load())
	if dev.flushes.Load() >= callers*rounds {
		t.Errorf("no flush was shared: %d device flushes for %d calls", dev.flushes.Load(), callers*rounds)
	}
}

// BenchmarkGroupFlushAlone: one caller at a time, as a flush at queue
// depth 1 is: what sharing costs when there is nothing to share.
func BenchmarkGroupFlushAlone(b *testing.B) {
	g := &groupFlush{dev: blockdev.NewMem(4096)}
	for b.Loop() {
		if err := g.flush(); err != nil {
			b.Fatal(err)
		}
	}
}
