package link

import (
	"context"
	"fmt"
	"sync"
	"time"

	"tandem/internal/clock"
	"tandem/internal/replication"
)

// MemNetwork is the in-memory twin of the TCP link, for whole clusters in
// one test process: endpoints made on it behave as Links do (the hello's
// checks, one session at a time, ordered frames with backpressure, the
// epoch fence, the same events), and the test can partition them, cut one
// direction, delay frames, or break a session at any frame. Time is the
// clock's: with a fake clock, delays, timeouts and reconnects happen only
// on Advance.
type MemNetwork struct {
	clk     clock.Clock
	mu      sync.Mutex
	eps     []*MemEndpoint
	blocked map[[2]string]bool // from, to
	delay   time.Duration
	filter  func(from, to string, f Frame) bool
	drop    func(from, to string, f Frame) bool
	queued  []func() // events to emit once mu is released
}

// NewMemNetwork returns a network on clk (nil: the wall clock).
func NewMemNetwork(clk clock.Clock) *MemNetwork {
	if clk == nil {
		clk = clock.Real{}
	}
	return &MemNetwork{clk: clk, blocked: map[[2]string]bool{}}
}

// MemConfig is one node's end of one volume's in-memory link.
type MemConfig struct {
	Self, Peer string
	// Port tells the volumes between two nodes apart, as TCP ports do:
	// endpoints connect when their names and ports match, and only then
	// compare volume IDs and sizes. Empty: the volume ID.
	Port   string
	Volume replication.VolumeID
	Size   uint64
	Epoch  replication.Epoch
	// Window is how many frames one side may have on their way to the
	// other (sent, not yet taken by Recv) before Send blocks. 0: 4.
	Window int
	// Timeout: a session cut one way ends this long after the cut, as
	// keepalive would end it. 0: DefaultLimits().Timeout.
	Timeout time.Duration
	// Reconnect: after a session ends, the next starts this much later.
	// 0: DefaultLimits().ReconnectMin.
	Reconnect time.Duration
	OnEvent   func(Event)
	Fenced    func(Kind) bool // as Config.Fenced
}

// MemEndpoint is one node's Endpoint on a MemNetwork.
type MemEndpoint struct {
	n      *MemNetwork
	cfg    MemConfig
	fence  fence
	ready  chan *memSession
	gone   chan struct{} // closed by Close
	live   *memSession   // with n.mu
	closed bool          // with n.mu
}

// Endpoint adds cfg.Self's end of a link to the network and connects it
// to its peer's end, if that is there and reachable.
func (n *MemNetwork) Endpoint(cfg MemConfig) (*MemEndpoint, error) {
	if cfg.Self == "" || cfg.Peer == "" || cfg.Self == cfg.Peer {
		return nil, fmt.Errorf("link: mem endpoint: self %q, peer %q", cfg.Self, cfg.Peer)
	}
	if cfg.Port == "" {
		cfg.Port = cfg.Volume.String()
	}
	if cfg.Window <= 0 {
		cfg.Window = 4
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultLimits().Timeout
	}
	if cfg.Reconnect <= 0 {
		cfg.Reconnect = DefaultLimits().ReconnectMin
	}
	e := &MemEndpoint{n: n, cfg: cfg, ready: make(chan *memSession, 1), gone: make(chan struct{})}
	e.fence.observe(cfg.Epoch)
	n.mu.Lock()
	for _, o := range n.eps {
		if o.cfg.Self == cfg.Self && o.cfg.Peer == cfg.Peer && o.cfg.Port == cfg.Port {
			n.mu.Unlock()
			return nil, fmt.Errorf("link: mem endpoint %s→%s port %s exists already", cfg.Self, cfg.Peer, cfg.Port)
		}
	}
	n.eps = append(n.eps, e)
	n.connectLocked(e)
	n.unlock()
	return e, nil
}

// unlock releases mu and emits the events queued under it, so OnEvent may
// call back into the network.
func (n *MemNetwork) unlock() {
	q := n.queued
	n.queued = nil
	n.mu.Unlock()
	for _, f := range q {
		f()
	}
}

func (n *MemNetwork) emitLocked(e *MemEndpoint, ev Event) {
	ev.Volume = e.cfg.Volume
	if ev.Peer == "" {
		ev.Peer = e.cfg.Peer
	}
	if f := e.cfg.OnEvent; f != nil {
		n.queued = append(n.queued, func() { f(ev) })
	}
}

func (n *MemNetwork) peerOf(e *MemEndpoint) *MemEndpoint {
	for _, o := range n.eps {
		if o.cfg.Self == e.cfg.Peer && o.cfg.Peer == e.cfg.Self && o.cfg.Port == e.cfg.Port && !o.closed {
			return o
		}
	}
	return nil
}

// connectLocked starts a session between e and its peer when both are
// there, idle, and can reach each other.
func (n *MemNetwork) connectLocked(e *MemEndpoint) {
	p := n.peerOf(e)
	if e.closed || p == nil || e.live != nil || p.live != nil ||
		n.blocked[[2]string{e.cfg.Self, p.cfg.Self}] || n.blocked[[2]string{p.cfg.Self, e.cfg.Self}] {
		return
	}
	he, hp := e.hello(), p.hello()
	// the side with the lower name dials, as on TCP: the other checks first
	dialer, listener, hd, hl := e, p, he, hp
	if p.cfg.Self < e.cfg.Self {
		dialer, listener, hd, hl = p, e, hp, he
	}
	if r := checkHello(&hl, &hd, listener.cfg.Peer); r != nil {
		n.emitLocked(listener, Event{Kind: EventRefused, Err: r})
		byPeer := *r
		byPeer.ByPeer = true
		n.emitLocked(dialer, Event{Kind: EventRefused, Err: &byPeer})
		return
	}
	e.noteEpochLocked(hp.Epoch)
	p.noteEpochLocked(he.Epoch)
	se, sp := newMemSession(e, hp), newMemSession(p, he)
	se.peer, sp.peer = sp, se
	for _, x := range []*memSession{se, sp} {
		x.ep.live = x
		select { // a session Next never took is over by now
		case <-x.ep.ready:
		default:
		}
		x.ep.ready <- x
		n.emitLocked(x.ep, Event{Kind: EventUp})
	}
}

func (e *MemEndpoint) hello() Hello {
	return Hello{Node: e.cfg.Self, Volume: e.cfg.Volume, Size: e.cfg.Size, Epoch: e.fence.get()}
}

func (e *MemEndpoint) noteEpochLocked(ep replication.Epoch) {
	if e.fence.observe(ep) {
		e.n.emitLocked(e, Event{Kind: EventEpoch, Epoch: ep})
	}
}

// endLocked ends s and its peer: s with err, the peer with what it hears.
func (n *MemNetwork) endLocked(s *memSession, err, peerErr error) {
	for _, x := range []struct {
		s   *memSession
		err error
	}{{s, err}, {s.peer, peerErr}} {
		if x.s.err != nil {
			continue
		}
		x.s.err = x.err
		close(x.s.done)
		if x.s.ep.live == x.s {
			x.s.ep.live = nil
		}
		n.emitLocked(x.s.ep, Event{Kind: EventDown, Err: x.err})
	}
	e := s.ep
	n.clk.AfterFunc(e.cfg.Reconnect, func() {
		n.mu.Lock()
		n.connectLocked(e)
		n.unlock()
	})
}

// Partition blocks both directions between a and b and ends their
// sessions at once (both sides see the connection reset).
func (n *MemNetwork) Partition(a, b string) {
	n.mu.Lock()
	defer n.unlock()
	n.blocked[[2]string{a, b}], n.blocked[[2]string{b, a}] = true, true
	for _, e := range n.eps {
		if s := e.live; s != nil && e.cfg.Self == a && e.cfg.Peer == b {
			err := fmt.Errorf("link (mem): partitioned from %s", b)
			n.endLocked(s, err, fmt.Errorf("link (mem): partitioned from %s", a))
		}
	}
}

// Cut blocks frames from one node to another: they are lost, and the
// sessions between the two end after Timeout, as keepalive ends them.
func (n *MemNetwork) Cut(from, to string) {
	n.mu.Lock()
	defer n.unlock()
	n.blocked[[2]string{from, to}] = true
	for _, e := range n.eps {
		s := e.live
		if s == nil || e.cfg.Self != to || e.cfg.Peer != from {
			continue
		}
		n.clk.AfterFunc(e.cfg.Timeout, func() {
			n.mu.Lock()
			defer n.unlock()
			if s.err == nil {
				n.endLocked(s, fmt.Errorf("%w: nothing from %s for %v (cut)", ErrTimeout, from, e.cfg.Timeout),
					fmt.Errorf("link (mem): %s reset the connection", to))
			}
		})
	}
}

// Heal unblocks both directions between a and b and connects their
// endpoints again.
func (n *MemNetwork) Heal(a, b string) {
	n.mu.Lock()
	defer n.unlock()
	delete(n.blocked, [2]string{a, b})
	delete(n.blocked, [2]string{b, a})
	for _, e := range n.eps {
		if e.cfg.Self == a && e.cfg.Peer == b {
			n.connectLocked(e)
		}
	}
}

// SetDelay delays every frame sent from now on by d (order is kept).
func (n *MemNetwork) SetDelay(d time.Duration) {
	n.mu.Lock()
	n.delay = d
	n.mu.Unlock()
}

// SetFilter calls f for each data frame sent; when it returns false the
// frame is lost and its session ends there, on both sides, as a broken
// connection ends it (a way to disconnect at every step of a protocol).
// nil removes the filter. f runs with the network locked: it must not
// call the network.
func (n *MemNetwork) SetFilter(f func(from, to string, fr Frame) bool) {
	n.mu.Lock()
	n.filter = f
	n.mu.Unlock()
}

// SetDrop calls f for each data frame sent; when it returns true the
// frame is lost without a word and the session goes on: a peer that
// crashed silently, noticed only by keepalive or a partition (a way to
// let the survivor run on, unanswered, at every step of a protocol). nil
// removes it. f runs with the network locked: it must not call the
// network.
func (n *MemNetwork) SetDrop(f func(from, to string, fr Frame) bool) {
	n.mu.Lock()
	n.drop = f
	n.mu.Unlock()
}

func (e *MemEndpoint) Next(ctx context.Context) (Session, error) {
	select {
	case s := <-e.ready:
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-e.gone:
		return nil, ErrClosed
	}
}

func (e *MemEndpoint) Observe(ep replication.Epoch) {
	e.n.mu.Lock()
	e.noteEpochLocked(ep)
	e.n.unlock()
}

func (e *MemEndpoint) Newest() replication.Epoch { return e.fence.get() }

func (e *MemEndpoint) Close() error {
	n := e.n
	n.mu.Lock()
	defer n.unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	close(e.gone)
	if s := e.live; s != nil {
		r := &RefusedError{Code: RefuseClosed, Msg: "closed by " + e.cfg.Self + ": link closed"}
		n.endLocked(s, r, &RefusedError{Code: r.Code, Msg: r.Msg, ByPeer: true})
	}
	for i, o := range n.eps {
		if o == e {
			n.eps = append(n.eps[:i], n.eps[i+1:]...)
			break
		}
	}
	return nil
}

var _ Endpoint = (*MemEndpoint)(nil)

// memSession is one side of an in-memory session.
type memSession struct {
	ep    *MemEndpoint
	peer  *memSession
	hello Hello // the peer's
	since time.Time

	slots   chan struct{} // frames of ours on their way to the peer
	inbox   chan Frame    // frames for our Recv
	pending []timedFrame  // ours, delayed, with n.mu
	lastDue time.Time     // with n.mu

	sendSeq, recvSeq    uint64 // with n.mu
	bytesIn, bytesOut   uint64 // with n.mu
	framesIn, framesOut uint64 // with n.mu

	done chan struct{}
	err  error // with n.mu
}

type timedFrame struct {
	f   Frame
	due time.Time
}

func newMemSession(e *MemEndpoint, peer Hello) *memSession {
	w := e.cfg.Window
	return &memSession{
		ep: e, hello: peer, since: e.n.clk.Now(),
		slots: make(chan struct{}, w),
		inbox: make(chan Frame, 2*w), // the peer's frames, and room for stale notices
		done:  make(chan struct{}),
	}
}

func (s *memSession) Send(ctx context.Context, f Frame) (uint64, error) {
	if err := checkSend(&f); err != nil {
		return 0, err
	}
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-s.done:
		return 0, s.Err()
	}
	n := s.ep.n
	n.mu.Lock()
	defer n.unlock()
	if s.err != nil {
		<-s.slots
		return 0, s.err
	}
	seq, err := nextSeq(s.sendSeq, f.Seq)
	if err != nil {
		return 0, err
	}
	s.sendSeq = seq
	f.Seq, f.Volume = seq, s.ep.cfg.Volume
	f.Payload = append(append(make([]byte, 0, f.size()), f.Payload...), f.Tail...)
	f.Tail = nil
	s.framesOut++
	s.bytesOut += uint64(HeaderSize + len(f.Payload))
	from, to := s.ep.cfg.Self, s.peer.ep.cfg.Self
	if n.filter != nil && !n.filter(from, to, f) {
		err := fmt.Errorf("link (mem): fault injected: the connection broke at frame %d (%v) from %s", f.Seq, f.Kind, from)
		n.endLocked(s, err, err)
		return 0, err
	}
	if n.blocked[[2]string{from, to}] || n.drop != nil && n.drop(from, to, f) {
		<-s.slots // lost in the cut
		return f.Seq, nil
	}
	due := n.clk.Now().Add(n.delay)
	if due.Before(s.lastDue) {
		due = s.lastDue
	}
	s.lastDue = due
	s.pending = append(s.pending, timedFrame{f, due})
	if n.delay == 0 {
		n.deliverLocked(s)
	} else {
		n.clk.AfterFunc(due.Sub(n.clk.Now()), func() {
			n.mu.Lock()
			n.deliverLocked(s)
			n.unlock()
		})
	}
	return f.Seq, nil
}

// deliverLocked moves s's frames that are due to the peer, in order,
// through the peer's epoch fence.
func (n *MemNetwork) deliverLocked(s *memSession) {
	now := n.clk.Now()
	p := s.peer
	for len(s.pending) > 0 && !s.pending[0].due.After(now) {
		f := s.pending[0].f
		s.pending = s.pending[1:]
		if p.err != nil {
			return
		}
		h := f.header()
		stale, raised := p.ep.fence.admit(&h, fencedBy(p.ep.cfg.Fenced, h.Kind))
		if stale != nil {
			<-s.slots
			n.emitLocked(p.ep, Event{Kind: EventStale, Epoch: stale.Newest, Err: stale})
			n.emitLocked(s.ep, Event{Kind: EventStale, Epoch: stale.Newest, Err: stale})
			s.ep.noteEpochLocked(stale.Newest)
			select {
			case s.inbox <- stale.frame(s.ep.cfg.Volume):
			default: // Recv is far behind: the first notices tell it
			}
			continue
		}
		if raised {
			n.emitLocked(p.ep, Event{Kind: EventEpoch, Epoch: h.Epoch})
		}
		p.recvSeq = f.Seq
		p.framesIn++
		p.bytesIn += uint64(HeaderSize + len(f.Payload))
		p.inbox <- f // never blocks: a slot was taken for it
	}
}

func (s *memSession) Recv(ctx context.Context) (Frame, error) {
	f, err := take(ctx, s.inbox, s.done, s.Err)
	if err != nil {
		return Frame{}, err
	}
	if f.Kind != KindStale {
		select {
		case <-s.peer.slots:
		default:
		}
	}
	return f, nil
}

func (s *memSession) Close(reason error) {
	n := s.ep.n
	n.mu.Lock()
	defer n.unlock()
	msg := "closed by " + s.ep.cfg.Self
	if reason != nil {
		msg += ": " + reason.Error()
	}
	n.endLocked(s, &RefusedError{Code: RefuseClosed, Msg: msg}, &RefusedError{Code: RefuseClosed, Msg: msg, ByPeer: true})
}

func (s *memSession) Done() <-chan struct{} { return s.done }

func (s *memSession) Err() error {
	s.ep.n.mu.Lock()
	defer s.ep.n.mu.Unlock()
	return s.err
}

func (s *memSession) Peer() Hello { return s.hello }

func (s *memSession) State() State {
	n := s.ep.n
	n.mu.Lock()
	defer n.mu.Unlock()
	return State{
		Peer: s.hello.Node, Since: s.since, RTT: 2 * n.delay,
		BytesIn: s.bytesIn, BytesOut: s.bytesOut, FramesIn: s.framesIn, FramesOut: s.framesOut,
		Newest: s.ep.fence.get(),
	}
}

var _ Session = (*memSession)(nil)
