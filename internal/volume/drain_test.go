package volume

import (
	"context"
	"sync"
	"testing"
	"time"

	"tandem/internal/replication"
	"tandem/internal/replication/link"
)

// Frames are queued in the machine's order (under the step's lock) and
// sent by whichever goroutine drains first: the step's own, or the
// session's sender when that goroutine must not block. Many goroutines
// queueing and draining at once, some sending themselves and some waking
// the sender, deliver every frame exactly once and in queue order (the
// link refuses a sequence number that does not rise, which ends the
// session: the count would then fall short).
func TestFramesLeaveInQueueOrderWhoeverSends(t *testing.T) {
	n := link.NewMemNetwork(nil)
	var id replication.VolumeID
	id[0] = 9
	mk := func(self, peer string) link.Session {
		ep, err := n.Endpoint(link.MemConfig{Self: self, Peer: peer, Volume: id, Size: 1 << 20, Window: 4,
			Timeout: 10 * time.Second, Reconnect: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ep.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := ep.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	var sa, sb link.Session
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); sb = mk("b", "a") }()
	sa = mk("a", "b")
	wg.Wait()

	v := &Volume{ctx: context.Background()}
	ss := &session{v: v, s: sa, more: make(chan struct{}, 1)}
	ss.sender.Add(1)
	go ss.send()
	defer func() { ss.end(nil); ss.sender.Wait() }()

	const workers, each = 8, 200
	got := make(chan uint64, workers*each)
	go func() {
		for {
			f, err := sb.Recv(context.Background())
			if err != nil {
				close(got)
				return
			}
			m, err := link.DecodeMessage(f)
			if err != nil {
				t.Error(err)
			}
			got <- m.Seq
		}
	}()
	var step sync.Mutex // the machine's lock: queue order is seq order
	seq := uint64(0)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				step.Lock()
				seq++
				ss.queue(replication.Frame{Kind: replication.FrameFlush, Volume: id, Seq: seq})
				step.Unlock()
				if w%2 == 0 {
					ss.drain(true)
				} else {
					ss.wake()
				}
			}
		}()
	}
	wg.Wait()
	want := uint64(1)
	deadline := time.After(20 * time.Second)
	for want <= workers*each {
		select {
		case s, ok := <-got:
			if !ok {
				t.Fatalf("the session ended after %d of %d frames: %v", want-1, workers*each, sa.Err())
			}
			if s != want {
				t.Fatalf("frame %d arrived where %d was due", s, want)
			}
			want++
		case <-deadline:
			t.Fatalf("%d of %d frames arrived", want-1, workers*each)
		}
	}
}
