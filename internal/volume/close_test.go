package volume

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tandem/internal/replication"
)

// TestCloseAnswersEveryRequest: requests racing Close all return: those
// the loop took fail with ErrClosed, and so do those handed to it as it
// stopped (they waited forever: a request posted once Close began could
// still enter the loop's queue, which nothing read any more).
func TestCloseAnswersEveryRequest(t *testing.T) {
	for round := range 5 {
		p := newPair(t, replication.Sync, clean(), replication.UpToDate)
		p.waitFor("connected", p.inSync)
		p.promote(0, 1)
		v := p.vols[0]
		var wg sync.WaitGroup
		var answered atomic.Int64
		stop := make(chan struct{})
		for c := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 4096)
				for i := 0; ; i++ {
					var err error
					if (i+c)%2 == 0 {
						_, err = v.WriteAt(buf, int64(c)*4096)
					} else {
						_, err = v.ReadAt(buf, int64(c)*4096)
					}
					answered.Add(1)
					if err != nil {
						if !errors.Is(err, ErrClosed) {
							t.Errorf("round %d: %v", round, err)
						}
						select {
						case <-stop:
							return
						default:
						}
					}
				}
			}()
		}
		p.waitFor("requests answered", func() bool { return answered.Load() > 200 })
		v.Close()
		close(stop)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: requests racing Close never returned", round)
		}
	}
}
