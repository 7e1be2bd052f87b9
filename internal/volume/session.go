package volume

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"tandem/internal/replication"
	"tandem/internal/replication/link"
)

// session is one link session as the volume sees it: frames queued in the
// machine's order, sent by whichever goroutine drains the queue (one at a
// time): a step's own goroutine when it may block, else the session's
// sender. The queue is not bounded here: the machine bounds what it sends
// by the client requests it holds (the NBD server bounds those) and its
// resync and verify windows.
type session struct {
	v  *Volume
	s  link.Session
	mu sync.Mutex
	// q holds frames not yet handed to the link; more wakes the sender.
	q       []replication.Frame
	more    chan struct{}
	ended   bool
	sending bool   // a goroutine is draining q
	buf     []byte // the drainer's encoding buffer
	sender  sync.WaitGroup
	// frames carries the peer's frames from the reader to the goroutine
	// that hands them to the machine (applyFrames).
	frames chan func(time.Time)
	apply  sync.WaitGroup
}

// framesAhead bounds the frames read and not yet taken by the machine.
// The reader never waits for the machine (a step may be writing metadata
// durably): a node that left what its peer sent in its socket while busy
// had the peer's death reset the connection and lose it (an async
// primary's outdate frame, e2e TestVolumeOutdatedPromotion). That costs
// one hand-off per frame received.
const framesAhead = 256

// applyFrames hands the reader's frames to the machine, in order.
func (ss *session) applyFrames() {
	defer ss.apply.Done()
	for fn := range ss.frames {
		ss.v.post(fn)
	}
}

// sessions takes each session the endpoint hands out, in turn: it tells
// the machine the link is up, reads frames into the loop, and once the
// session is over (and its sender stopped) tells the machine it is down.
func (v *Volume) sessions() {
	defer v.wg.Done()
	for {
		s, err := v.ep.Next(v.ctx)
		if err != nil {
			if v.ctx.Err() == nil && !errors.Is(err, link.ErrClosed) {
				v.log.Error("volume: link stopped", "err", err)
			}
			return
		}
		ss := &session{v: v, s: s, more: make(chan struct{}, 1), frames: make(chan func(time.Time), framesAhead)}
		ss.sender.Add(1)
		go ss.send()
		if !v.post(func(now time.Time) {
			v.sess = ss
			v.m.LinkUp(now)
		}) {
			ss.end(ErrClosed)
			ss.sender.Wait()
			return
		}
		ss.apply.Add(1)
		go ss.applyFrames()
		ss.read()
		close(ss.frames)
		ss.apply.Wait()
		<-s.Done()
		ss.end(s.Err())
		ss.sender.Wait()
		why := "link down"
		if err := s.Err(); err != nil {
			why = err.Error()
		}
		if !v.post(func(now time.Time) {
			if v.sess == ss {
				v.sess = nil
			}
			// Data lent in this session and dropped unwritten is left
			// to the collector (what is still being written too).
			clear(v.lent)
			v.m.LinkDown(now, why)
		}) {
			return
		}
	}
}

// read hands every frame of the session to the loop, in order, until the
// session ends. A frame that does not decode ends the session: the peer
// is broken or hostile, and nothing it sent after can be trusted.
func (ss *session) read() {
	v := ss.v
	for {
		f, err := ss.s.Recv(v.ctx)
		if err != nil {
			return
		}
		var m replication.Frame
		if f.Kind == link.KindStale {
			se, err := link.DecodeStale(f)
			if err != nil {
				ss.s.Close(err)
				return
			}
			m = replication.Frame{Kind: replication.FrameStale, Volume: f.Volume, Epoch: se.Newest, Ack: se.Seq}
		} else {
			m, err = link.DecodeMessage(f)
			if err != nil {
				v.log.Warn("volume: bad frame from the peer: dropping the link", "err", err)
				ss.s.Close(err)
				return
			}
		}
		// m.Data aliases the link's buffer: copy it out, into a pooled
		// buffer when it is write data the loop returns once written.
		pooled := len(m.Data) >= pooledMin && (m.Kind == replication.FrameData || m.Kind == replication.FrameResyncData)
		if pooled {
			d := v.bufs.get(len(m.Data))
			copy(d, m.Data)
			m.Data = d
		} else {
			m.Data = slices.Clone(m.Data)
		}
		fn := func(now time.Time) {
			if v.sess != ss {
				if pooled {
					v.bufs.put(m.Data)
				}
				return
			}
			if pooled && len(v.lent) < maxLent {
				v.lent[&m.Data[0]] = struct{}{}
			}
			v.m.Receive(now, m)
		}
		select {
		case ss.frames <- fn:
		case <-v.done:
			return
		}
	}
}

// queue adds a frame to send (from a step); the step's goroutine sends
// it or wakes the sender once the step is over.
func (ss *session) queue(f replication.Frame) {
	ss.mu.Lock()
	if !ss.ended {
		ss.q = append(ss.q, f)
	}
	ss.mu.Unlock()
}

// wake has the sender drain the queue.
func (ss *session) wake() {
	select {
	case ss.more <- struct{}{}:
	default:
	}
}

// end closes the session (from any goroutine); the sender stops.
func (ss *session) end(why error) {
	ss.mu.Lock()
	first := !ss.ended
	ss.ended, ss.q = true, nil
	ss.mu.Unlock()
	if first {
		ss.s.Close(why)
		select {
		case ss.more <- struct{}{}:
		default:
		}
	}
}

// stopSending is the link session's end as the sender sees it: nothing
// more is queued or sent, but the session is not closed: after a write
// error its reader drains what the peer sent before (an async primary's
// outdate frame, e2e TestVolumeOutdatedPromotion), and sessions closes it
// once read has taken that.
func (ss *session) stopSending() {
	ss.mu.Lock()
	ss.ended, ss.q = true, nil
	ss.mu.Unlock()
}

// send drains the queue whenever woken, until the session ends.
func (ss *session) send() {
	defer ss.sender.Done()
	for {
		select {
		case <-ss.more:
		case <-ss.s.Done():
			ss.stopSending()
			return
		}
		ss.mu.Lock()
		ended := ss.ended
		ss.mu.Unlock()
		if ended {
			return
		}
		ss.drain(false)
	}
}

// drain sends the queued frames in order unless another goroutine is at
// it (which then sends these too): until none is left, or with once only
// what was queued when it began, waking the sender for the rest (a
// client's goroutine has its own request to answer).
func (ss *session) drain(once bool) {
	ss.mu.Lock()
	if ss.sending || ss.ended {
		ss.mu.Unlock()
		return
	}
	ss.sending = true
	for {
		batch := ss.q
		ss.q = nil
		if len(batch) == 0 || ss.ended {
			ss.sending = false
			ss.mu.Unlock()
			return
		}
		ss.mu.Unlock()
		for i := range batch {
			lf, err := link.EncodeMessage(&batch[i], ss.buf)
			if err == nil {
				ss.buf = lf.Payload[:0]
				_, err = ss.s.Send(ss.v.ctx, lf)
			}
			if err != nil {
				ss.mu.Lock()
				ss.sending = false
				ss.mu.Unlock()
				select {
				case <-ss.s.Done(): // the link's own end: let its reader drain
					ss.stopSending()
				default:
					ss.end(fmt.Errorf("send %v: %w", batch[i].Kind, err))
				}
				return
			}
		}
		ss.mu.Lock()
		if once && len(ss.q) > 0 {
			ss.sending = false
			ss.mu.Unlock()
			ss.wake()
			return
		}
	}
}
