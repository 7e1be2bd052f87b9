package link

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

func (s *tcpSession) Recv(ctx context.Context) (Frame, error) {
	if s.held {
		s.free <- s.cur // never blocks: it came from free
		s.cur, s.held = nil, false
	}
	f, err := take(ctx, s.recvq, s.rdone, s.Err)
	if err != nil {
		return Frame{}, err
	}
	if f.Kind != KindStale {
		s.cur, s.held = f.Payload[:0], true
	}
	return f, nil
}

// readLoop reads frames until the session ends, or after a write error
// until the connection's end or the drain's (see tcpSession.hard).
func (s *tcpSession) readLoop() {
	defer s.wg.Done()
	defer close(s.rdone)
	defer s.stopReader()
	fr := NewFrameReader(s.rconn, MaxPayload)
	timeout := s.l.cfg.Limits.Timeout
	for {
		s.rconn.SetReadDeadline(time.Now().Add(timeout))
		h, err := fr.ReadHeader()
		if err != nil {
			s.fail(s.readErr("read", err))
			return
		}
		s.bytesIn.Add(uint64(HeaderSize + int(h.Length)))
		if h.Volume != s.l.cfg.Volume {
			s.fail(&RefusedError{Code: RefuseProtocol, Msg: fmt.Sprintf("frame for volume %v in the session of %v", h.Volume, s.l.cfg.Volume)})
			return
		}
		if err := s.readFrame(fr, h); err != nil {
			s.fail(err)
			return
		}
	}
}

func (s *tcpSession) readErr(what string, err error) error {
	switch {
	case errors.Is(err, io.EOF):
		return fmt.Errorf("link: %s closed the connection on path %d", s.peer.Node, s.rconn.path)
	case IsBadFrame(err):
		return &RefusedError{Code: RefuseProtocol, Msg: err.Error()}
	}
	select {
	case <-s.hard:
		return s.Err()
	default:
	}
	return fmt.Errorf("link: %s from %s on path %d: %w", what, s.peer.Node, s.rconn.path, timeoutErr(err))
}

func (s *tcpSession) readFrame(fr *FrameReader, h Header) error {
	timeout := s.l.cfg.Limits.Timeout
	if !h.Kind.IsData() {
		if h.Length > maxHandshakePayload {
			return &RefusedError{Code: RefuseProtocol, Msg: fmt.Sprintf("%v frame of %d bytes", h.Kind, h.Length)}
		}
		s.rconn.SetReadDeadline(time.Now().Add(timeout))
		p, err := fr.ReadPayload(h, nil)
		if err != nil {
			return s.readErr("read", err)
		}
		return s.control(fr, h, p)
	}
	if h.Seq <= s.recvSeq {
		return &RefusedError{Code: RefuseProtocol, Msg: fmt.Sprintf("frame %d after frame %d", h.Seq, s.recvSeq)}
	}
	s.recvSeq = h.Seq
	stale, raised := s.l.fence.admit(&h, fencedBy(s.l.cfg.Fenced, h.Kind))
	if stale != nil {
		s.rconn.SetReadDeadline(time.Now().Add(timeout))
		if _, err := io.CopyN(io.Discard, s.rconn, int64(h.Length)); err != nil {
			return s.readErr("read", err)
		}
		s.l.emit(Event{Kind: EventStale, Peer: s.peer.Node, Epoch: stale.Newest, Err: stale})
		s.queueControl(stale.frame(s.l.cfg.Volume))
		return nil
	}
	if raised {
		s.l.emit(Event{Kind: EventEpoch, Epoch: h.Epoch})
	}
	var buf []byte
	select {
	case buf = <-s.free:
	case <-s.hard:
		return s.Err()
	}
	if cap(buf) < int(h.Length) {
		buf = make([]byte, h.Length)
	}
	// the peer's time to complete the frame starts now, not while this
	// side waited for Recv to free a buffer
	s.rconn.SetReadDeadline(time.Now().Add(timeout))
	p, err := fr.ReadPayload(h, buf)
	if err != nil {
		return s.readErr("read", err)
	}
	s.framesIn.Add(1)
	select { // never waits: a frame is read only into a free buffer
	case s.recvq <- Frame{Kind: h.Kind, Flags: h.Flags, Volume: h.Volume, Epoch: h.Epoch, Seq: h.Seq, Payload: p}:
	case <-s.hard:
		return s.Err()
	}
	return nil
}

// control handles a link frame.
func (s *tcpSession) control(fr *FrameReader, h Header, p []byte) error {
	switch h.Kind {
	case kindPing:
		s.queueControl(Frame{Kind: kindPong, Volume: s.l.cfg.Volume, Payload: append([]byte(nil), p...)})
	case kindPong:
		if len(p) == 8 {
			sent := int64(binary.BigEndian.Uint64(p))
			if rtt := s.l.clk.Now().UnixNano() - sent; rtt >= 0 {
				s.rtt.Store(rtt)
			}
		}
	case KindStale:
		f := Frame{Kind: KindStale, Volume: h.Volume, Epoch: h.Epoch, Seq: h.Seq, Payload: append([]byte(nil), p...)}
		stale, err := DecodeStale(f)
		if err != nil {
			return &RefusedError{Code: RefuseProtocol, Msg: err.Error()}
		}
		s.l.noteEpoch(stale.Newest)
		s.l.emit(Event{Kind: EventStale, Peer: s.peer.Node, Epoch: stale.Newest, Err: stale})
		select {
		case s.recvq <- f:
		case <-s.hard:
			return s.Err()
		}
	case kindRefuse:
		r, err := parseRefusal(Frame{Payload: p})
		if err != nil {
			return &RefusedError{Code: RefuseProtocol, Msg: err.Error()}
		}
		return r
	case kindSwitch:
		if h.Seq != s.recvSeq {
			return &RefusedError{Code: RefuseProtocol, Msg: fmt.Sprintf("the peer left path %d after frame %d, this side has %d", s.rconn.path, h.Seq, s.recvSeq)}
		}
		old := s.rconn
		select {
		case next := <-s.nextConn:
			s.rconn = next
			fr.r = next
			old.endOne()
		case <-time.After(s.l.cfg.Limits.Timeout):
			return fmt.Errorf("%w: the peer left path %d for a path this side does not have", ErrTimeout, old.path)
		case <-s.done:
			return s.Err()
		}
	default:
		return &RefusedError{Code: RefuseProtocol, Msg: fmt.Sprintf("%v frame in a session", h.Kind)}
	}
	return nil
}

// queueControl hands f to the control goroutine. A full queue drops a
// pong (the next ping gets one) but never the end of the session.
func (s *tcpSession) queueControl(f Frame) {
	select {
	case s.ctrl <- f:
	default:
		if f.Kind == kindPong {
			return
		}
		select {
		case s.ctrl <- f:
		case <-s.done:
		}
	}
}

// take returns the next frame of q, or, once done is closed and q is
// empty, the session's error: frames that arrived before the end still
// count.
func take(ctx context.Context, q <-chan Frame, done <-chan struct{}, errf func() error) (Frame, error) {
	select {
	case f := <-q:
		return f, nil
	default:
	}
	select {
	case f := <-q:
		return f, nil
	case <-ctx.Done():
		return Frame{}, ctx.Err()
	case <-done:
		select {
		case f := <-q:
			return f, nil
		default:
			return Frame{}, errf()
		}
	}
}
