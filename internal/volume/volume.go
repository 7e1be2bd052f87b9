package volume

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"tandem/internal/blockdev"
	"tandem/internal/clock"
	"tandem/internal/replication"
	"tandem/internal/replication/link"
	"tandem/internal/volume/meta"
)

// ErrClosed is returned by a Volume used after Close.
var ErrClosed = errors.New("volume: closed")

// Options open a Volume.
type Options struct {
	// Name names the volume in messages, events and status.
	Name string
	// Meta is the replica, opened; the Volume owns it from Open on (Close
	// closes it, also when Open fails).
	Meta *meta.Meta
	// Link is this node's end of the volume's link; the Volume owns it.
	Link link.Endpoint
	// Fencer outdates the peer when a sync primary loses it.
	Fencer replication.PeerFencer
	// Replication: Mode, MaxLag*, OnLag, SplitBrain, ResyncRate,
	// ResyncWindow, VerifyWindow, ResyncChunk, FenceRetry. Volume, Node, Size, RegionSize and the
	// activity log's geometry come from Meta; NewGenID defaults to
	// crypto/rand.
	Replication replication.Config
	// FenceTimeout bounds one call of the fencer. Default 10 s.
	FenceTimeout time.Duration
	Clock        clock.Clock // nil: the wall clock
	// Logger names the volume already (its caller's records do too, so
	// the volume does not add the key again); nil: discard.
	Logger *slog.Logger
	// OnEvent receives every event, on the loop's goroutine: it must not
	// block or call back into the Volume.
	OnEvent func(Event)
}

// Event is one transition of the volume, for the audit log: the machine's
// events (replication.EventKind names) and the link's (link_up,
// link_down, link_switched, link_refused, link_stale).
type Event struct {
	Time    time.Time
	Volume  string
	Kind    string
	Message string
	Epoch   replication.Epoch
	Attrs   map[string]any
}

// Volume is one node's replica of a replicated volume, running.
type Volume struct {
	name string
	md   *meta.Meta
	dev  blockdev.Device
	// flusher shares the device's flushes between concurrent FUA writes
	// and flushes.
	flusher *groupFlush
	ep      link.Endpoint
	fencer  replication.PeerFencer
	clk     clock.Clock
	log     *slog.Logger
	cfg     replication.Config
	fenceT  time.Duration
	event   func(Event)

	linkEv   chan link.Event
	rearm    chan struct{} // a step changed the next tick or left bits to write
	done     chan struct{} // closed when Close begins
	exited   chan struct{} // closed when the loop returned
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup // I/O, fencing and session goroutines
	nextReq  atomic.Uint64
	status   atomic.Pointer[Status]
	closeMu  sync.Mutex
	closeErr error
	closed   bool

	// mu is held by the goroutine running a step (loop.go); what
	// follows is the step's.
	mu         sync.Mutex
	stopped    bool // Close began: no more steps
	m          *replication.Machine
	waiters    map[uint64]chan replication.Complete
	sess       *session
	lent       lent // pooled buffers of peer write data, until written
	suspendWhy string
	metaErr    error // a durable metadata write failed: the disk is detached
	bmLazy     bool  // bits cleared and not yet written
	lat        latency
	lastEvents []Event
	rateLimit  int64
	rsStart    time.Time // when the resync rate's measurement began
	rsDone0    int64
	nextTick   time.Time // as the loop's timer was last set, or a step found it
	lazyArmed  bool      // the lazy bitmap write is due
	toSend     *session  // frames were queued by this step
	ios        []localIO // local I/O this step left to its goroutine

	bufs bufPools

	sessMu  sync.Mutex
	sessPub *session // v.sess as of the last publish, for Status
}

// Open starts the volume: the machine from the metadata, the loop, and
// the link (sessions are taken as the endpoint hands them out). The
// replica starts secondary.
func Open(o Options) (*Volume, error) {
	fail := func(err error) (*Volume, error) {
		if o.Link != nil {
			o.Link.Close()
		}
		if o.Meta != nil {
			o.Meta.Close()
		}
		return nil, err
	}
	if o.Meta == nil || o.Link == nil || o.Fencer == nil {
		return fail(fmt.Errorf("volume %s: Meta, Link and Fencer are required", o.Name))
	}
	p, err := persisted(o.Meta)
	if err != nil {
		return fail(fmt.Errorf("volume %s: %w", o.Name, err))
	}
	st := o.Meta.State()
	cfg := o.Replication
	cfg.Volume, cfg.Node, cfg.Size = o.Meta.ID(), st.Node, o.Meta.DataSize()
	cfg.RegionSize = o.Meta.Bitmap().RegionSize()
	cfg.ExtentRegions = int(o.Meta.AL().ExtentSize() / cfg.RegionSize)
	cfg.ALExtents = o.Meta.AL().Capacity()
	if cfg.NewGenID == nil {
		cfg.NewGenID = randomGenID
	}
	clk := o.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	m, err := replication.New(cfg, p, clk.Now())
	if err != nil {
		return fail(fmt.Errorf("volume %s: %w", o.Name, err))
	}
	v := &Volume{
		name: o.Name, md: o.Meta, dev: o.Meta.Data(), flusher: &groupFlush{dev: o.Meta.Data()}, ep: o.Link, fencer: o.Fencer, clk: clk,
		log: o.Logger, cfg: cfg, fenceT: o.FenceTimeout, event: o.OnEvent,
		linkEv: make(chan link.Event, 64), rearm: make(chan struct{}, 1), done: make(chan struct{}), exited: make(chan struct{}),
		m: m, waiters: map[uint64]chan replication.Complete{}, rateLimit: cfg.ResyncRate, lent: lent{},
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	if v.fenceT <= 0 {
		v.fenceT = 10 * time.Second
	}
	v.ctx, v.cancel = context.WithCancel(context.Background())
	v.ep.Observe(st.Epoch)
	v.mu.Lock()
	v.publish()
	v.mu.Unlock()
	go v.loop()
	v.wg.Add(1)
	go v.sessions()
	return v, nil
}

func randomGenID() replication.GenID {
	var b [8]byte
	for {
		rand.Read(b[:])
		if g := replication.GenID(binary.LittleEndian.Uint64(b[:])); g > replication.JustCreated {
			return g
		}
	}
}

// call runs fn as a step. The status is published before the answer: a
// caller that promoted reads Primary from Status.
func (v *Volume) call(fn func(now time.Time) error) error {
	var err error
	if !v.post(func(now time.Time) { err = fn(now) }) {
		return ErrClosed
	}
	return err
}

// Promote makes this replica primary at epoch; force promotes an Outdated
// or Inconsistent replica (the operator accepts what it lacks).
func (v *Volume) Promote(epoch replication.Epoch, force bool) error {
	return v.call(func(now time.Time) error {
		if err := v.m.Promote(now, epoch, force); err != nil {
			return fmt.Errorf("volume %s: %w", v.name, err)
		}
		v.ep.Observe(epoch)
		return nil
	})
}

// Demote makes this replica secondary; requests still open fail.
func (v *Volume) Demote() error {
	return v.call(func(now time.Time) error { v.m.Demote(now); return nil })
}

// Connect leaves stand-alone (after Disconnect, a split brain or
// unrelated data): the link is taken up again.
func (v *Volume) Connect() error {
	return v.call(func(now time.Time) error { v.m.Connect(now); return nil })
}

// Disconnect drops the link and stays stand-alone until Connect.
func (v *Volume) Disconnect() error {
	return v.call(func(now time.Time) error { v.m.Disconnect(now); return nil })
}

// Resolve settles a split brain by hand: the replica of node discard
// throws away what it wrote since the split and resyncs from the other.
func (v *Volume) Resolve(discard string) error {
	return v.call(func(now time.Time) error { return v.m.Resolve(now, discard) })
}

// Verify starts an online verify (the primary's data is the reference);
// repair marks mismatched regions for resync.
func (v *Volume) Verify(repair bool) error {
	return v.call(func(now time.Time) error { return v.m.Verify(now, repair) })
}

// SetRate changes the resync and verify rate limit live (0: unlimited).
func (v *Volume) SetRate(bytesPerSecond int64) error {
	return v.call(func(now time.Time) error {
		v.m.SetRate(now, bytesPerSecond)
		v.rateLimit = bytesPerSecond
		return nil
	})
}

// Outdate marks this (secondary) replica Outdated, as a cluster does for a
// replica it knows misses writes.
func (v *Volume) Outdate() error {
	return v.call(func(now time.Time) error { return v.m.Outdate(now) })
}

// Observe tells the volume of a newer epoch (the cluster's): frames of
// older epochs are refused from then on, and a primary of an older epoch
// learns it was deposed.
func (v *Volume) Observe(e replication.Epoch) {
	v.ep.Observe(e)
}

// Depose tells the volume that the cluster gave its group to the peer at
// epoch e: a primary of an older epoch steps down at once
// (replication.Machine.Depose). Nothing is recorded: frames of epoch e
// are still taken.
func (v *Volume) Depose(e replication.Epoch) {
	v.post(func(now time.Time) { v.m.Depose(now, e) })
}

// Close stops the volume: open requests fail, the link closes, the
// metadata is written clean. A primary is not demoted first: found
// Primary at the next Open, its activity log's extents are resynced.
func (v *Volume) Close() error {
	v.closeMu.Lock()
	defer v.closeMu.Unlock()
	if v.closed {
		return v.closeErr
	}
	v.closed = true
	close(v.done)
	<-v.exited
	v.cancel()
	v.ep.Close()
	v.wg.Wait()
	var errs []error
	if err := v.md.Bitmap().Flush(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, v.md.Close())
	v.closeErr = errors.Join(errs...)
	return v.closeErr
}

// Name is the volume's name.
func (v *Volume) Name() string { return v.name }

// ID is the volume's UUID.
func (v *Volume) ID() replication.VolumeID { return v.cfg.Volume }
