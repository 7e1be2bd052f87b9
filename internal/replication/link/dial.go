package link

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"tandem/internal/peerid"
)

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
		var err error
		if s == nil {
			// The session connect starts, not l.live: one the engine
			// closed at once may be gone from l.live before this loop
			// looks, and its backoff was skipped (a tight loop of
			// sessions on a loaded machine, TestShortSessionsBackOff).
			s, err = l.connect()
		}
		if err == nil {
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
func (l *Link) connect() (*tcpSession, error) {
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
			return nil, refusal
		}
		return nil, fmt.Errorf("link: no path to %s answered: %w", l.cfg.Peer, errors.Join(errs...))
	}
	s := newSession(l, id, won.peer, won.pc)
	if r := l.establish(s); r != nil {
		won.pc.Close()
		return nil, r
	}
	s.start()
	l.emit(Event{Kind: EventUp, Path: won.i, Remote: won.pc.remote.String()})
	l.publish(s)
	return s, nil
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
