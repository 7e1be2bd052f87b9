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

// post hands fn to the loop; false once the volume is closing.
func (v *Volume) post(fn func(time.Time)) bool {
	select {
	case v.in <- fn:
		return true
	case <-v.done:
		return false
	}
}

// loop owns the machine until Close.
func (v *Volume) loop() {
	defer close(v.exited)
	timer := v.clk.NewTimer(time.Hour)
	defer timer.Stop()
	lazy := v.clk.NewTimer(time.Hour)
	defer lazy.Stop()
	for {
		select {
		case fn := <-v.in:
			now := v.clk.Now()
			fn(now)
			v.carryOut(now)
		case <-timer.C():
			now := v.clk.Now()
			v.m.Tick(now)
			v.carryOut(now)
		case e := <-v.linkEv:
			v.linkEvent(v.clk.Now(), e)
		case <-lazy.C():
			v.bmLazy = false
			if err := v.md.Bitmap().Flush(); err != nil {
				v.log.Warn("volume: writing the dirty bitmap", "volume", v.name, "err", err)
			}
		case <-v.done:
			v.shutdown()
			return
		}
		now := v.clk.Now()
		if next := v.m.NextTick(now); !next.IsZero() {
			timer.Reset(max(next.Sub(now), 0))
		} else {
			timer.Reset(time.Hour)
		}
		if v.bmLazy {
			lazy.Reset(lazyFlush)
		}
		v.publish()
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
		v.ioThen(func() replication.Completion {
			_, err := v.dev.WriteAt(a.Data, a.Off)
			if err == nil && a.FUA {
				err = v.flusher.flush()
			}
			return replication.Completion{ID: a.ID, Err: err}
		}, func() { v.giveBack(a.Data) })
	case replication.FlushLocal:
		v.io(func() replication.Completion { return replication.Completion{ID: a.ID, Err: v.flusher.flush()} })
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
		})
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
				v.log.Warn("volume: clear dirty bits", "volume", v.name, "err", err)
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
		v.log.Warn("volume: client I/O suspended", "volume", v.name, "why", a.Why)
	case replication.Resume:
		v.suspendWhy = ""
		v.log.Info("volume: client I/O resumed", "volume", v.name)
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
		v.log.Error("volume: metadata write failed: detaching the disk", "volume", v.name, "what", what, "err", err)
	}
	v.metaErr = fmt.Errorf("%s: %w", what, err)
	return true
}

// io runs a local operation on its own goroutine; its completion comes
// back through the loop.
func (v *Volume) io(op func() replication.Completion) { v.ioThen(op, nil) }

// ioThen is io, then runs after in the loop once the machine has taken
// the completion.
func (v *Volume) ioThen(op func() replication.Completion, after func()) {
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		c := op()
		v.post(func(now time.Time) {
			v.m.Done(now, c)
			if after != nil {
				after()
			}
		})
	}()
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
	v.log.Info("volume: "+e.Kind, "volume", v.name, "message", e.Message)
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
