package link

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
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
		log:      cfg.logger().With("volume_id", cfg.Volume.String(), "peer", cfg.Peer),
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
	// no resumption: a resumed connection skips the identity check, and
	// a link reconnects rarely enough to afford a full handshake
	cfg.SessionTicketsDisabled = true
	return cfg
}

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

var _ Endpoint = (*Link)(nil)
