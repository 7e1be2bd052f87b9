package volume

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"tandem/internal/replication"
	"tandem/internal/replication/link"
	"tandem/internal/volume/meta"
)

// lazyFlush is how long bits cleared in the dirty bitmap may stay
// unwritten: a region left dirty on disk is only resynced once more.
const lazyFlush = time.Second

// keptEvents is how many recent events Status carries.
const keptEvents = 16

// The machine has one owner at a time: whichever goroutine holds v.mu
// runs a step (an input, then every action it leads to) and publishes the
// status. A step runs on the goroutine the input arrived on, instead of
// being handed to a loop goroutine and its answer handed back: on a busy
// two-core host each hand-off between goroutines cost tens of
// microseconds, and a replicated write and flush made a dozen of them on
// each node (tandem volume bench, docs/benchmarks.md).
//
// What a step cannot do under the lock, it leaves to its goroutine once
// the lock is released (followUp): frames to send and local I/O. A
// goroutine that may block on the link and the disk (a client's request,
// a local I/O's completion) sends the frames itself when no one else is
// sending, and runs the I/O itself; one that must not (the session's
// reader, which must go on reading whatever the peer sends; the loop,
// which keeps the timers) wakes the session's sender and starts a
// goroutine for each I/O. Frames go out in the order the machine queued
// them whoever sends them (session.drain); the machine orders the I/O
// itself (it issues an operation only once those it must follow are
// done), so carrying one out later or elsewhere changes nothing.

// origin says what the goroutine running a step may do after it.
type origin uint8

const (
	// mustNotBlock: the session's reader and the loop (timers, link
	// events, fencer answers, admin commands).
	mustNotBlock origin = iota
	// mayBlock: a client's request or a local I/O's completion.
	mayBlock
)

// inlineRounds bounds how many completions in a row one goroutine
// carries out itself: a client's goroutine is answered meanwhile, and
// under load it would otherwise go on serving others' I/O.
const inlineRounds = 4

// post runs fn as a step; false once the volume is closing.
func (v *Volume) post(fn func(time.Time)) bool { return v.step(mustNotBlock, fn) }

// step runs fn on the machine, carries out the actions under the lock,
// then what is left to its goroutine.
func (v *Volume) step(o origin, fn func(time.Time)) bool {
	ss, ios, ok := v.locked(fn)
	if ok {
		v.followUp(o, ss, ios)
	}
	return ok
}

// locked runs fn and the actions it leads to under v.mu, and returns the
// session with frames to send (nil if none) and the local I/O to do,
// counted in v.wg.
func (v *Volume) locked(fn func(time.Time)) (*session, []localIO, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.stopped {
		return nil, nil, false
	}
	now := v.clk.Now()
	fn(now)
	v.carryOut(now)
	if next := v.m.NextTick(now); !next.Equal(v.nextTick) || v.bmLazy && !v.lazyArmed {
		v.nextTick = next
		select {
		case v.rearm <- struct{}{}:
		default:
		}
	}
	v.publish()
	ss, ios := v.toSend, v.ios
	v.toSend, v.ios = nil, nil
	v.wg.Add(len(ios))
	return ss, ios, true
}

// followUp sends and does the I/O a step left, as its origin allows; for
// a goroutine that may block it goes on with the steps each completion
// leads to, up to inlineRounds.
func (v *Volume) followUp(o origin, ss *session, ios []localIO) {
	for round := 0; ; round++ {
		inline := o == mayBlock && round < inlineRounds
		if ss != nil {
			if inline {
				ss.drain(true)
			} else {
				ss.wake()
			}
		}
		if len(ios) == 0 {
			return
		}
		first := 0
		if inline {
			first = 1
		}
		for _, io := range ios[first:] {
			go func() {
				ss, ios := v.completedLocked(io.op(), io.after)
				v.followUp(mayBlock, ss, ios)
			}()
		}
		if !inline {
			return
		}
		ss, ios = v.completedLocked(ios[0].op(), ios[0].after)
	}
}

// localIO is a local operation and what runs once the machine has its
// completion.
type localIO struct {
	op    func() replication.Completion
	after func()
}

// completedLocked hands an I/O's completion to the machine (a step) and
// returns what to follow up with; the I/O is no longer counted in v.wg.
func (v *Volume) completedLocked(c replication.Completion, after func()) (*session, []localIO) {
	defer v.wg.Done()
	ss, ios, _ := v.locked(func(now time.Time) {
		v.m.Done(now, c)
		if after != nil {
			after()
		}
	})
	return ss, ios
}

// loop keeps the machine's timer and the lazy bitmap write, and takes
// link events, until Close.
func (v *Volume) loop() {
	defer close(v.exited)
	timer := v.clk.NewTimer(time.Hour)
	defer timer.Stop()
	lazy := v.clk.NewTimer(time.Hour)
	defer lazy.Stop()
	for {
		select {
		case <-v.rearm:
		case <-timer.C():
			v.post(func(now time.Time) { v.m.Tick(now) })
		case e := <-v.linkEv:
			v.post(func(now time.Time) { v.linkEvent(now, e) })
		case <-lazy.C():
			v.post(func(time.Time) {
				v.bmLazy, v.lazyArmed = false, false
				if err := v.md.Bitmap().Flush(); err != nil {
					v.log.Warn("volume: writing the dirty bitmap", "err", err)
				}
			})
		case <-v.done:
			v.mu.Lock()
			v.stopped = true
			v.shutdown()
			v.mu.Unlock()
			return
		}
		v.mu.Lock()
		now := v.clk.Now()
		next := v.m.NextTick(now)
		if !next.IsZero() {
			timer.Reset(max(next.Sub(now), 0))
		} else {
			timer.Reset(time.Hour)
		}
		v.nextTick = next
		if v.bmLazy && !v.lazyArmed {
			v.lazyArmed = true
			lazy.Reset(lazyFlush)
		}
		v.mu.Unlock()
	}
}

// shutdown fails the requests still open and ends the session.
func (v *Volume) shutdown() {
	for id, ch := range v.waiters {
		ch <- replication.Complete{ID: id, Err: ErrClosed}
		delete(v.waiters, id)
	}
	if v.sess != nil {
		v.sess.end(ErrClosed)
	}
}

// carryOut does what the machine asked for, in order, until it asks for
// nothing more.
func (v *Volume) carryOut(now time.Time) {
	for {
		acts := v.m.Actions()
		if len(acts) == 0 {
			return
		}
		failed := false
		for _, a := range acts {
			failed = v.act(now, a, failed) || failed
		}
		if failed && v.metaErr != nil && v.m.Status().Disk != replication.Diskless {
			v.m.Detach(now)
		}
	}
}

// act carries out one action. afterFailure says a durable metadata write
// earlier in this batch failed: what follows it assumed it durable, so
// acknowledgements turn into errors and the session restarts (frames
// already sent may announce state that is not on disk). It reports
// whether a durable write failed.
func (v *Volume) act(now time.Time, a replication.Action, afterFailure bool) (failed bool) {
	switch a := a.(type) {
	case replication.WriteLocal:
		v.io(func() replication.Completion {
			_, err := v.dev.WriteAt(a.Data, a.Off)
			if err == nil && a.FUA {
				err = v.flusher.flush()
			}
			return replication.Completion{ID: a.ID, Err: err}
		}, func() { v.giveBack(a.Data) })
	case replication.FlushLocal:
		v.io(func() replication.Completion { return replication.Completion{ID: a.ID, Err: v.flusher.flush()} }, nil)
	case replication.ReadLocal:
		v.io(func() replication.Completion {
			if a.DigestEach > 0 { // only the digests leave: the buffer is reused
				b := v.bufs.get(int(a.Len))
				defer v.bufs.put(b)
				_, err := v.dev.ReadAt(b, a.Off)
				c := replication.Completion{ID: a.ID, Err: err}
				if err == nil {
					c.Digests = replication.RegionDigests(b, a.DigestEach)
				}
				return c
			}
			b := make([]byte, a.Len)
			_, err := v.dev.ReadAt(b, a.Off)
			c := replication.Completion{ID: a.ID, Err: err}
			if err == nil {
				c.Data = b
			}
			return c
		}, nil)
	case replication.Send:
		if afterFailure {
			if v.sess != nil {
				v.sess.end(fmt.Errorf("volume %s: metadata write failed: %w", v.name, v.metaErr))
			}
			return false
		}
		if v.sess != nil {
			f := a.Frame
			if f.Kind == replication.FrameData && v.cfg.Mode == replication.Async {
				// Async writes complete before the frame is sent: the
				// client may reuse its buffer meanwhile.
				f.Data = slices.Clone(f.Data)
			}
			v.sess.queue(f)
			v.toSend = v.sess
		}
	case replication.Complete:
		ch := v.waiters[a.ID]
		if ch == nil {
			return false
		}
		delete(v.waiters, a.ID)
		if afterFailure && a.Err == nil && a.Data == nil {
			a.Err = fmt.Errorf("%w: metadata write failed: %v", replication.ErrIO, v.metaErr)
		}
		ch <- a
	case replication.SetBits:
		bm := v.md.Bitmap()
		rs := bm.RegionSize()
		var err error
		for _, r := range a.Ranges {
			off := int64(r.First) * rs
			err = errors.Join(err, bm.Set(off, min(int64(r.N)*rs, v.cfg.Size-off)))
		}
		if err == nil {
			err = bm.Flush()
		}
		return v.durable("dirty bitmap", err)
	case replication.ClearBits:
		bm := v.md.Bitmap()
		rs := bm.RegionSize()
		for _, r := range a.Ranges {
			off := int64(r.First) * rs
			if err := bm.Clear(off, min(int64(r.N)*rs, v.cfg.Size-off)); err != nil {
				v.log.Warn("volume: clear dirty bits", "err", err)
			}
		}
		v.bmLazy = true
	case replication.ALBegin:
		var err error
		for _, e := range a.Extents {
			if _, berr := v.md.AL().Begin(int64(e)); berr != nil {
				err = errors.Join(err, berr)
			}
		}
		return v.durable("activity log", err)
	case replication.ALEnd:
		for _, e := range a.Extents {
			// After a crash the machine ends extents the log recovered
			// into the bitmap already: nothing to end then.
			v.md.AL().End(int64(e))
		}
	case replication.Persist:
		err := v.md.Update(func(st *meta.State) { applyMeta(st, a.Meta) })
		if err == nil {
			v.ep.Observe(a.Meta.Epoch)
		}
		return v.durable("superblock", err)
	case replication.Fence:
		v.fence(a.Epoch)
	case replication.Suspend:
		v.suspendWhy = a.Why
		v.log.Warn("volume: client I/O suspended", "why", a.Why)
	case replication.Resume:
		v.suspendWhy = ""
		v.log.Info("volume: client I/O resumed")
	case replication.DropLink:
		if v.sess != nil {
			v.sess.end(errors.New(a.Reason))
		}
	case replication.Event:
		v.machineEvent(now, a)
	}
	return false
}

// durable records a failed durable write; the loop then detaches the disk.
func (v *Volume) durable(what string, err error) bool {
	if err == nil {
		return false
	}
	if v.metaErr == nil {
		v.log.Error("volume: metadata write failed: detaching the disk", "what", what, "err", err)
	}
	v.metaErr = fmt.Errorf("%s: %w", what, err)
	return true
}

// io leaves a local operation to the step's goroutine (followUp), and
// after to run once the machine has taken its completion.
func (v *Volume) io(op func() replication.Completion, after func()) {
	v.ios = append(v.ios, localIO{op: op, after: after})
}

// giveBack returns the pooled buffer of peer write data once the write
// that applied it completed: the machine has no use for it after.
func (v *Volume) giveBack(data []byte) {
	if len(data) == 0 {
		return
	}
	if _, ok := v.lent[&data[0]]; ok {
		delete(v.lent, &data[0])
		v.bufs.put(data)
	}
}

// fence asks the PeerFencer to outdate the peer, answering through the
// loop.
func (v *Volume) fence(epoch replication.Epoch) {
	peer := v.md.State().Peer
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		ctx, cancel := context.WithTimeout(v.ctx, v.fenceT)
		err := v.fencer.OutdatePeer(ctx, v.cfg.Volume, peer, epoch)
		cancel()
		why := fmt.Sprintf("%s outdated at epoch %d", peer, epoch)
		if err != nil {
			why = err.Error()
		}
		v.post(func(now time.Time) { v.m.FenceDone(now, err == nil, why) })
	}()
}

func (v *Volume) machineEvent(now time.Time, e replication.Event) {
	attrs := map[string]any{}
	if e.Decision.Rule != "" {
		attrs["decision"] = e.Decision.Rule
	}
	if e.Bytes != 0 {
		attrs["bytes"] = e.Bytes
	}
	switch e.Kind {
	case replication.EventSplitBrain:
		attrs["self_dirty_bytes"], attrs["peer_dirty_bytes"] = e.SelfDirty, e.PeerDirty
	case replication.EventConnected:
		if e.SelfDirty != 0 || e.PeerDirty != 0 {
			attrs["self_dirty_bytes"], attrs["peer_dirty_bytes"] = e.SelfDirty, e.PeerDirty
		}
		if e.Decision.Verdict == replication.SyncTarget && e.SelfDirty > 0 && e.Decision.ResolvedSplitBrain() {
			attrs["discarded_bytes"] = e.SelfDirty
		}
	case replication.EventVerifyFinished:
		attrs["mismatched_bytes"] = e.SelfDirty
	}
	if e.Kind == replication.EventVerifyMismatch {
		attrs["region"] = e.Region
	}
	if e.Full {
		attrs["full"] = true
	}
	if len(attrs) == 0 {
		attrs = nil
	}
	v.emit(Event{Time: now, Volume: v.name, Kind: e.Kind.String(), Message: e.Reason, Epoch: e.Epoch, Attrs: attrs})
}

func (v *Volume) emit(e Event) {
	v.log.Info("volume: "+e.Kind, "message", e.Message)
	v.lastEvents = append(v.lastEvents, e)
	if len(v.lastEvents) > keptEvents {
		v.lastEvents = v.lastEvents[len(v.lastEvents)-keptEvents:]
	}
	if v.event != nil {
		v.event(e)
	}
}

// LinkEvent reports a link event (link.Config.OnEvent): it never blocks;
// events beyond a small backlog are dropped from the volume's history
// (the link logs them itself).
func (v *Volume) LinkEvent(e link.Event) {
	if e.Kind == link.EventEpoch {
		return
	}
	select {
	case v.linkEv <- e:
	default:
	}
}

func (v *Volume) linkEvent(now time.Time, e link.Event) {
	msg := ""
	if e.Err != nil {
		msg = e.Err.Error()
	}
	v.emit(Event{Time: now, Volume: v.name, Kind: "link_" + e.Kind.String(), Message: msg, Epoch: e.Epoch,
		Attrs: map[string]any{"peer": e.Peer, "path": e.Path, "remote": e.Remote}})
}
