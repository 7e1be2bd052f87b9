package link

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Handshake slots: a connection holds one from accept until its hello is
// checked (at most HandshakeTimeout). The peer's own addresses have their
// own slots, so a flood from elsewhere cannot lock the peer out.
const (
	maxHandshakesPerPeerAddr = 4
	maxHandshakesOthers      = 8
)

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
