package link

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"tandem/internal/clock"
	"tandem/internal/peerid"
	"tandem/internal/replication"
)

// identityDomain names the link's TLS keys (package peerid): distinct from
// raft's, so a connection meant for one transport is refused by the other.
const identityDomain = "tandem/replication-link/v1 node"

// Link is the TCP Endpoint: it listens on every path's local address and,
// on the node whose name sorts first, dials the peer over the paths in
// preference order, moving the session back to a better path when that
// answers again.
type Link struct {
	cfg   Config
	clk   clock.Clock
	log   *slog.Logger
	ids   *peerid.Set
	fence fence
	stats linkStats

	listeners []net.Listener
	closed    chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu      sync.Mutex
	live    *tcpSession
	ready   chan *tcpSession // the newest session not yet taken by Next
	pending map[string]int   // accepted connections in handshake, by source address
	shaking map[net.Conn]struct{}
	// refusals: the last refusal reported per path and source address
	refusals map[string]string
}

// Handshake slots: a connection holds one from accept until its hello is
// checked (at most HandshakeTimeout). The peer's own addresses have their
// own slots, so a flood from elsewhere cannot lock the peer out.
const (
	maxHandshakesPerPeerAddr = 4
	maxHandshakesOthers      = 8
)

// Start listens on every path and, if this node dials, starts dialling.
func Start(cfg Config) (*Link, error) {
	if cfg.Limits == (Limits{}) {
		cfg.Limits = DefaultLimits()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ids, err := peerid.New(cfg.Key, identityDomain, cfg.Self, []string{cfg.Self, cfg.Peer})
	if err != nil {
		return nil, fmt.Errorf("link: %w", err)
	}
	l := &Link{
		cfg: cfg, clk: cfg.clock(), ids: ids,
		log:      cfg.logger().With("volume", cfg.Volume.String(), "peer", cfg.Peer),
		closed:   make(chan struct{}),
		ready:    make(chan *tcpSession, 1),
		pending:  map[string]int{},
		shaking:  map[net.Conn]struct{}{},
		refusals: map[string]string{},
	}
	l.fence.observe(cfg.Epoch)
	for i, p := range cfg.Paths {
		ln, err := net.Listen("tcp", p.Local.String())
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("link: path %d: listen %s: %w", i, p.Local, err)
		}
		l.listeners = append(l.listeners, ln)
	}
	for i, ln := range l.listeners {
		l.wg.Add(1)
		go l.acceptLoop(i, ln)
	}
	if cfg.dials() {
		l.wg.Add(1)
		go l.dialLoop()
	}
	return l, nil
}

// Addr is the address path i listens on (useful with port 0).
func (l *Link) Addr(i int) netip.AddrPort {
	return netip.MustParseAddrPort(l.listeners[i].Addr().String())
}

func (l *Link) Next(ctx context.Context) (Session, error) {
	for {
		select {
		case s := <-l.ready:
			return s, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-l.closed:
			return nil, ErrClosed
		}
	}
}

func (l *Link) Observe(e replication.Epoch) { l.noteEpoch(e) }

func (l *Link) Newest() replication.Epoch { return l.fence.get() }

func (l *Link) noteEpoch(e replication.Epoch) {
	if l.fence.observe(e) {
		l.emit(Event{Kind: EventEpoch, Peer: l.cfg.Peer, Epoch: e})
	}
}

// Close stops listening and dialling and ends the session.
func (l *Link) Close() error {
	l.closeOnce.Do(func() {
		close(l.closed)
		for _, ln := range l.listeners {
			ln.Close()
		}
		l.mu.Lock()
		s := l.live
		for c := range l.shaking {
			c.Close()
		}
		l.mu.Unlock()
		if s != nil {
			s.Close(errors.New("link closed"))
		}
	})
	l.wg.Wait()
	return nil
}

// State is the live session's state, or the zero State.
func (l *Link) State() (State, bool) {
	l.mu.Lock()
	s := l.live
	l.mu.Unlock()
	if s == nil {
		return State{Newest: l.fence.get()}, false
	}
	return s.State(), true
}

func (l *Link) emit(e Event) {
	l.stats.count(e.Kind)
	e.Volume = l.cfg.Volume
	if e.Peer == "" {
		e.Peer = l.cfg.Peer
	}
	attrs := []any{"event", e.Kind.String(), "path", e.Path}
	if e.Remote != "" {
		attrs = append(attrs, "remote", e.Remote)
	}
	if e.Err != nil {
		attrs = append(attrs, "err", e.Err)
	}
	if e.Kind == EventEpoch {
		attrs = append(attrs, "epoch", uint64(e.Epoch))
	}
	level := slog.LevelInfo
	if e.Kind == EventDialFailed {
		level = slog.LevelDebug
	}
	l.log.Log(context.Background(), level, "link "+e.Kind.String(), attrs...)
	if l.cfg.OnEvent != nil {
		l.cfg.OnEvent(e)
	}
}

// ended is called once by a session that ended.
func (l *Link) ended(s *tcpSession) {
	st := s.State()
	l.mu.Lock()
	if l.live == s {
		l.live = nil
	}
	l.stats.sessionEnded(st)
	l.mu.Unlock()
	l.emit(Event{Kind: EventDown, Path: st.Path, Remote: st.Remote.String(), Err: s.Err()})
}

// establish makes s the live session unless one is live already.
func (l *Link) establish(s *tcpSession) *RefusedError {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.closed:
		return &RefusedError{Code: RefuseClosed, Msg: l.cfg.Self + " is shutting its link down"}
	default:
	}
	if live := l.live; live != nil {
		st := live.State()
		return &RefusedError{Code: RefuseBusy, Msg: fmt.Sprintf("%s has a live session with %s for volume %v on path %d (%v) since %s; only one connection per volume",
			l.cfg.Self, live.peer.Node, l.cfg.Volume, st.Path, st.Remote, st.Since.Format(time.RFC3339))}
	}
	l.live = s
	clear(l.refusals)
	return nil
}

// publish hands the started session s to Next, unless it is no longer the
// live one (it ended and another began meanwhile).
func (l *Link) publish(s *tcpSession) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.live != s {
		return
	}
	select { // a session Next never took is over by now
	case <-l.ready:
	default:
	}
	l.ready <- s
}

func (l *Link) hello(id SessionID, sw bool) Hello {
	return Hello{Node: l.cfg.Self, Volume: l.cfg.Volume, Size: l.cfg.Size, Epoch: l.fence.get(), Session: id, Switch: sw}
}

func (l *Link) tlsConfig(cfg *tls.Config) *tls.Config {
	cfg.DynamicRecordSizingDisabled = true // full 16 KiB records from the first byte
	return cfg
}

func (l *Link) acceptLoop(path int, ln net.Listener) {
	defer l.wg.Done()
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) { // Close, or a test closing one path
			return
		}
		if err != nil {
			time.Sleep(10 * time.Millisecond) // out of descriptors: let some close
			continue
		}
		src := addrPort(c.RemoteAddr()).Addr().String()
		if !l.admit(src, c) {
			c.Close()
			continue
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer l.release(src, c)
			l.serve(path, c)
		}()
	}
}

// slot names the handshake budget a source address draws on.
func (l *Link) slot(src string) (key string, limit int) {
	for _, p := range l.cfg.Paths {
		if p.Peer.Addr().String() == src {
			return src, maxHandshakesPerPeerAddr
		}
	}
	return "others", maxHandshakesOthers
}

func (l *Link) admit(src string, c net.Conn) bool {
	key, limit := l.slot(src)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending[key] >= limit {
		return false
	}
	l.pending[key]++
	l.shaking[c] = struct{}{}
	return true
}

func (l *Link) release(src string, c net.Conn) {
	key, _ := l.slot(src)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending[key]--; l.pending[key] <= 0 {
		delete(l.pending, key)
	}
	delete(l.shaking, c)
}

// serve authenticates an accepted connection, checks the dialler's hello
// and answers it: a new session, a move of the live session to this path,
// or a refusal that says why.
func (l *Link) serve(path int, raw net.Conn) {
	remote := addrPort(raw.RemoteAddr())
	refused := func(err error) {
		raw.Close()
		if l.newRefusal(path, remote.Addr(), err) {
			l.emit(Event{Kind: EventRefused, Path: path, Remote: remote.String(), Err: err})
		}
	}
	raw.SetDeadline(time.Now().Add(l.cfg.Limits.HandshakeTimeout))
	bc := newBufConn(raw)
	tc := tls.Server(bc, l.tlsConfig(l.ids.Server()))
	if err := tc.Handshake(); err != nil {
		refused(fmt.Errorf("link: TLS handshake with %v: %w", remote.Addr(), err))
		return
	}
	name, err := l.ids.PeerName(tc)
	if err != nil {
		refused(err)
		return
	}
	f, err := NewFrameReader(tc, maxHandshakePayload).Read()
	if err == nil && f.Kind != kindHello {
		err = fmt.Errorf("%w: %v frame before hello", ErrFrame, f.Kind)
	}
	var peer Hello
	if err == nil {
		peer, err = parseHello(f)
	}
	if err != nil {
		refused(fmt.Errorf("link: hello from %s at %v: %w", name, remote.Addr(), err))
		return
	}
	refuse := func(r *RefusedError) {
		rf := r.frame(l.cfg.Volume)
		b, _ := AppendFrame(nil, &rf)
		tc.Write(b)
		refused(r)
	}
	if peer.Node != name {
		refuse(&RefusedError{Code: RefusePeer, Msg: fmt.Sprintf("the hello claims %s, the certificate is %s's", peer.Node, name)})
		return
	}
	self := l.hello(peer.Session, peer.Switch)
	if r := checkHello(&self, &peer, l.cfg.Peer); r != nil {
		refuse(r)
		return
	}
	l.noteEpoch(peer.Epoch)
	self.Epoch = l.fence.get()
	pc := &pathConn{Conn: tc, buf: bc, path: path, local: addrPort(raw.LocalAddr()), remote: remote}
	reply := func() bool {
		hf := self.frame()
		b, _ := AppendFrame(nil, &hf)
		if _, err := tc.Write(b); err != nil {
			refused(fmt.Errorf("link: hello to %s at %v: %w", name, remote.Addr(), err))
			return false
		}
		raw.SetDeadline(time.Time{})
		return true
	}
	if peer.Switch {
		l.mu.Lock()
		s := l.live
		l.mu.Unlock()
		if s == nil || s.id != peer.Session {
			refuse(&RefusedError{Code: RefuseSession, Msg: fmt.Sprintf("%s has no live session %x to move to path %d", l.cfg.Self, peer.Session[:4], path)})
			return
		}
		if reply() {
			s.switchTo(pc)
		}
		return
	}
	s := newSession(l, peer.Session, peer, pc)
	if r := l.establish(s); r != nil {
		refuse(r)
		return
	}
	if !reply() {
		s.fail(fmt.Errorf("link: hello to %s: the connection failed", name))
		s.start()
		return
	}
	s.start()
	l.emit(Event{Kind: EventUp, Path: path, Remote: remote.String()})
	l.publish(s)
}

// newRefusal reports whether a refusal on path from addr differs from the
// last one there: a peer that retries every few seconds with the wrong
// key is reported once, not on every try, until a session comes up.
func (l *Link) newRefusal(path int, addr netip.Addr, err error) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	key := fmt.Sprintf("%d %v", path, addr)
	if l.refusals[key] == err.Error() {
		return false
	}
	if len(l.refusals) >= maxRefusalsKept {
		clear(l.refusals)
	}
	l.refusals[key] = err.Error()
	return true
}

// maxRefusalsKept bounds what newRefusal remembers (sources are many).
const maxRefusalsKept = 64

// stableSession: a session that lasted this long resets the dialler's
// backoff; one that ended sooner is followed by the next backoff step.
const stableSession = 10 * time.Second

// dialLoop keeps a session up, over the best path that answers.
func (l *Link) dialLoop() {
	defer l.wg.Done()
	backoff := l.cfg.Limits.ReconnectMin
	var lastErr string
	for {
		l.mu.Lock()
		s := l.live
		l.mu.Unlock()
		if s != nil {
			lastErr = ""
			if !l.failback(s) {
				return
			}
			// a session that ended soon after it began (the machine
			// refused the peer, say) is not retried at once: that would
			// spin through handshakes
			if l.clk.Since(s.since) >= stableSession {
				backoff = l.cfg.Limits.ReconnectMin
				continue
			}
			if !l.sleep(backoff) {
				return
			}
			backoff = min(2*backoff, l.cfg.Limits.ReconnectMax)
			continue
		}
		err := l.connect()
		if err == nil {
			continue
		}
		if err.Error() != lastErr { // one event per change, not per retry
			lastErr = err.Error()
			kind := EventDialFailed
			if errors.As(err, new(*RefusedError)) {
				kind = EventRefused
			}
			l.emit(Event{Kind: kind, Err: err})
		}
		if !l.sleep(backoff) {
			return
		}
		backoff = min(2*backoff, l.cfg.Limits.ReconnectMax)
	}
}

// failback waits while s is live and, while it is on a less preferred
// path, tries the better ones every FailbackInterval. It returns false
// once the link is closed.
func (l *Link) failback(s *tcpSession) bool {
	for {
		if s.State().Path == 0 {
			select {
			case <-s.Done():
				return true
			case <-l.closed:
				return false
			}
		}
		t := l.clk.NewTimer(l.cfg.Limits.FailbackInterval)
		select {
		case <-s.Done():
			t.Stop()
			return true
		case <-l.closed:
			t.Stop()
			return false
		case <-t.C():
		}
		cur := s.State().Path
		for i := 0; i < cur; i++ {
			pc, _, err := l.dialPath(context.Background(), i, s.id, true)
			if err != nil {
				continue
			}
			if err := s.switchTo(pc); err != nil {
				l.emit(Event{Kind: EventRefused, Path: i, Err: err})
			}
			break
		}
	}
}

func (l *Link) sleep(d time.Duration) bool {
	t := l.clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return true
	case <-l.closed:
		return false
	}
}

// connect dials the paths in preference order and starts a session on the
// first that completes the handshake. Path i+1 is tried as soon as path i
// fails, or dialStagger after path i began when it has not answered yet
// (a path that drops packets would otherwise cost a whole DialTimeout
// before the next is tried); the answer of a better path that comes later
// is dropped, and failback moves the session to it.
func (l *Link) connect() error {
	var id SessionID
	rand.Read(id[:])
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		i    int
		pc   *pathConn
		peer Hello
		err  error
	}
	n := len(l.cfg.Paths)
	results := make(chan result, n)
	failed := make([]chan struct{}, n) // closed when path i failed
	for i := range failed {
		failed[i] = make(chan struct{})
	}
	stagger := l.cfg.Limits.DialTimeout / 3
	for i := range l.cfg.Paths {
		go func() {
			if i > 0 {
				t := l.clk.NewTimer(stagger)
				select {
				case <-failed[i-1]:
				case <-t.C():
				case <-ctx.Done():
				}
				t.Stop()
			}
			pc, peer, err := l.dialPath(ctx, i, id, false)
			if err != nil {
				close(failed[i])
			}
			results <- result{i, pc, peer, err}
		}()
	}
	var won *result
	var errs []error
	var refusal error
	for range n {
		r := <-results
		switch {
		case r.err == nil && won == nil:
			won = &r
			cancel() // the paths still dialling give up
		case r.err == nil:
			r.pc.Close()
		case errors.As(r.err, new(*RefusedError)):
			refusal = r.err // the peer answered: the clearest reason
		case ctx.Err() == nil || won == nil:
			errs = append(errs, fmt.Errorf("path %d (%v): %w", r.i, l.cfg.Paths[r.i].Peer, r.err))
		}
	}
	if won == nil {
		if refusal != nil {
			return refusal
		}
		return fmt.Errorf("link: no path to %s answered: %w", l.cfg.Peer, errors.Join(errs...))
	}
	s := newSession(l, id, won.peer, won.pc)
	if r := l.establish(s); r != nil {
		won.pc.Close()
		return r
	}
	s.start()
	l.emit(Event{Kind: EventUp, Path: won.i, Remote: won.pc.remote.String()})
	l.publish(s)
	return nil
}

// dialPath connects on path i, proves this node's identity and checks the
// peer's, and exchanges hellos.
func (l *Link) dialPath(parent context.Context, i int, id SessionID, sw bool) (*pathConn, Hello, error) {
	p := l.cfg.Paths[i]
	ctx, cancel := context.WithTimeout(parent, l.cfg.Limits.DialTimeout)
	defer cancel()
	go func() { // a dial in progress ends when the link closes
		select {
		case <-l.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	d := net.Dialer{}
	if !p.Local.Addr().IsUnspecified() {
		d.LocalAddr = &net.TCPAddr{IP: p.Local.Addr().AsSlice()}
	}
	raw, err := d.DialContext(ctx, "tcp", p.Peer.String())
	if err != nil {
		return nil, Hello{}, err
	}
	deadline, _ := ctx.Deadline()
	raw.SetDeadline(deadline)
	bc := newBufConn(raw)
	tc := tls.Client(bc, l.tlsConfig(l.ids.Client(l.cfg.Peer)))
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, Hello{}, explainTLS(err, l.cfg.Peer)
	}
	self := l.hello(id, sw)
	hf := self.frame()
	b, _ := AppendFrame(nil, &hf)
	if _, err := tc.Write(b); err != nil {
		raw.Close()
		return nil, Hello{}, explainTLS(err, l.cfg.Peer)
	}
	f, err := NewFrameReader(tc, maxHandshakePayload).Read()
	if err != nil {
		raw.Close()
		return nil, Hello{}, explainTLS(err, l.cfg.Peer)
	}
	switch f.Kind {
	case kindRefuse:
		raw.Close()
		r, err := parseRefusal(f)
		if err != nil {
			return nil, Hello{}, err
		}
		return nil, Hello{}, r
	case kindHello:
	default:
		raw.Close()
		return nil, Hello{}, fmt.Errorf("%w: %v frame in answer to hello", ErrFrame, f.Kind)
	}
	peer, err := parseHello(f)
	if err == nil && (peer.Session != id || peer.Switch != sw) {
		err = fmt.Errorf("%w: the answer names another session", ErrFrame)
	}
	if err != nil {
		raw.Close()
		return nil, Hello{}, err
	}
	if r := checkHello(&self, &peer, l.cfg.Peer); r != nil {
		rf := r.frame(l.cfg.Volume)
		b, _ := AppendFrame(nil, &rf)
		tc.Write(b)
		raw.Close()
		return nil, Hello{}, r
	}
	l.noteEpoch(peer.Epoch)
	raw.SetDeadline(time.Time{})
	return &pathConn{Conn: tc, buf: bc, path: i, local: addrPort(raw.LocalAddr()), remote: addrPort(raw.RemoteAddr())}, peer, nil
}

// explainTLS says what a failed handshake most likely means: TLS reports
// the peer's refusal of our certificate only as an alert.
func explainTLS(err error, peer string) error {
	if strings.Contains(err.Error(), "bad certificate") || strings.Contains(err.Error(), "certificate required") {
		return fmt.Errorf("link: %s refused this node's certificate: it holds another cluster key, or does not replicate this volume with this node (%w)", peer, err)
	}
	if peerid.IsIdentity(err) {
		return fmt.Errorf("link: the node answering is not %s, or holds another cluster key: %w", peer, err)
	}
	return timeoutErr(err)
}

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

var _ Endpoint = (*Link)(nil)
