package link

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// pathConn is one authenticated connection on one path.
type pathConn struct {
	net.Conn          // TLS
	buf      *bufConn // under TLS
	path     int
	local    netip.AddrPort
	remote   netip.AddrPort
	// ends counts the directions done with this connection after a
	// switch: our last frame written, the peer's last frame read. The
	// second closes it.
	ends atomic.Int32
}

func (pc *pathConn) endOne() {
	if pc.ends.Add(1) == 2 {
		pc.Close()
	}
}

// tcpSession is a Session over TLS connections, one at a time.
//
// Writing: Send and the control goroutine take the write token (wtok) and
// write straight to the connection, so nothing is queued: a sender waits
// for the token, which is the backpressure. Reading: one goroutine reads
// ahead into a bounded set of buffers and hands data frames to Recv.
//
// Moving to another path (switch) keeps order without resending: each
// side writes a switch frame carrying its last data sequence number as its
// last frame on the old connection and continues on the new one; each
// side's reader reads the old connection up to the peer's switch frame,
// checks that no sequence number is missing, and continues on the new.
type tcpSession struct {
	l     *Link
	id    SessionID
	peer  Hello
	since time.Time

	wtok    chan struct{} // the write token, held while writing a frame
	wconn   *pathConn     // with wtok
	sendSeq uint64        // with wtok
	wbuf    []byte        // with wtok: small frames, and the head of big ones

	rconn    *pathConn      // the reader's connection
	nextConn chan *pathConn // where the reader goes after the peer's switch frame
	recvSeq  uint64         // the reader's

	recvq chan Frame  // read ahead, for Recv
	free  chan []byte // buffers for frames read ahead
	cur   []byte      // Recv's current payload buffer, freed by the next Recv
	held  bool        // whether Recv holds cur
	ctrl  chan Frame  // pongs and stale refusals for the control goroutine

	mu    sync.Mutex // path, conns, err
	path  *pathConn
	conns []*pathConn // every connection opened for the session, closed at its end
	err   error
	done  chan struct{}
	wg    sync.WaitGroup

	rtt                                    atomic.Int64
	bytesIn, bytesOut, framesIn, framesOut atomic.Uint64
}

// smallFrame: payloads up to this are copied behind their header and
// written with one call (one TLS record, one system call); larger ones are
// written from the caller's slice after a first record that holds the
// header and the start of the payload.
const (
	smallFrame = 64 << 10
	tlsRecord  = 16 << 10
)

func newSession(l *Link, id SessionID, peer Hello, pc *pathConn) *tcpSession {
	s := &tcpSession{
		l: l, id: id, peer: peer, since: l.clk.Now(),
		wtok: make(chan struct{}, 1), wconn: pc, rconn: pc, path: pc, conns: []*pathConn{pc},
		nextConn: make(chan *pathConn, 1),
		recvq:    make(chan Frame, l.cfg.Limits.RecvWindow),
		free:     make(chan []byte, l.cfg.Limits.RecvWindow+1),
		ctrl:     make(chan Frame, 8),
		done:     make(chan struct{}),
	}
	for i := 0; i < cap(s.free); i++ {
		s.free <- nil // allocated as frames need them
	}
	s.wg.Add(2) // start runs them: Close may wait before it has
	return s
}

// start runs the reader and the control writer, counted by the session
// (Close waits for them) and by the link (its Close waits for every
// session's, ended or not). Every session made live is started once,
// also one that failed before: its goroutines then end at once.
func (s *tcpSession) start() {
	s.l.wg.Add(2)
	go func() {
		defer s.l.wg.Done()
		s.readLoop()
	}()
	go func() {
		defer s.l.wg.Done()
		s.controlLoop()
	}()
}

func (s *tcpSession) lock(ctx context.Context) error {
	select {
	case s.wtok <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return s.Err()
	}
	select { // the token may have been won just as the session ended
	case <-s.done:
		<-s.wtok
		return s.Err()
	default:
		return nil
	}
}

func (s *tcpSession) unlock() { <-s.wtok }

func (s *tcpSession) Send(ctx context.Context, f Frame) (uint64, error) {
	if err := checkSend(&f); err != nil {
		return 0, err
	}
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.unlock()
	seq, err := nextSeq(s.sendSeq, f.Seq)
	if err != nil {
		return 0, err
	}
	s.sendSeq = seq
	f.Seq, f.Volume = seq, s.l.cfg.Volume
	if err := s.write(&f); err != nil {
		s.fail(err)
		return 0, s.Err()
	}
	s.framesOut.Add(1)
	return f.Seq, nil
}

// write writes f on the current connection; the caller holds the token.
func (s *tcpSession) write(f *Frame) error {
	c := s.wconn
	c.SetWriteDeadline(time.Now().Add(s.l.cfg.Limits.Timeout))
	c.buf.begin()
	var err error
	if f.size() <= smallFrame {
		s.wbuf, _ = AppendFrame(s.wbuf[:0], f)
		_, err = c.Write(s.wbuf)
	} else {
		// the first record: the header and the start of the payload; the
		// rest straight from the caller's slices
		s.wbuf = append(s.wbuf[:0], make([]byte, HeaderSize)...)
		PutHeader(s.wbuf, f.header())
		rest := [2][]byte{f.Payload, f.Tail}
		for i := range rest {
			take := min(len(rest[i]), tlsRecord-len(s.wbuf))
			s.wbuf = append(s.wbuf, rest[i][:take]...)
			rest[i] = rest[i][take:]
		}
		_, err = c.Write(s.wbuf)
		for i := 0; i < len(rest) && err == nil; i++ {
			if len(rest[i]) > 0 {
				_, err = c.Write(rest[i])
			}
		}
	}
	if ferr := c.buf.end(); err == nil {
		err = ferr
	}
	if err != nil {
		return fmt.Errorf("link: write to %s on path %d: %w", c.remote, c.path, timeoutErr(err))
	}
	s.bytesOut.Add(uint64(HeaderSize + f.size()))
	return nil
}

func timeoutErr(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w: %v", ErrTimeout, err)
	}
	return err
}

func (s *tcpSession) Recv(ctx context.Context) (Frame, error) {
	if s.held {
		s.free <- s.cur // never blocks: it came from free
		s.cur, s.held = nil, false
	}
	f, err := take(ctx, s.recvq, s.done, s.Err)
	if err != nil {
		return Frame{}, err
	}
	if f.Kind != KindStale {
		s.cur, s.held = f.Payload[:0], true
	}
	return f, nil
}

// readLoop reads frames until the session ends.
func (s *tcpSession) readLoop() {
	defer s.wg.Done()
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
	case <-s.done:
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
	case <-s.done:
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
	case <-s.done:
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
		case <-s.done:
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

// controlLoop writes pings, pongs and stale refusals.
func (s *tcpSession) controlLoop() {
	defer s.wg.Done()
	tick := s.l.clk.NewTicker(s.l.cfg.Limits.PingInterval)
	defer tick.Stop()
	var ping [8]byte
	for {
		var f Frame
		select {
		case <-s.done:
			return
		case f = <-s.ctrl:
		case <-tick.C():
			binary.BigEndian.PutUint64(ping[:], uint64(s.l.clk.Now().UnixNano()))
			f = Frame{Kind: kindPing, Volume: s.l.cfg.Volume, Payload: ping[:]}
		}
		if err := s.lock(context.Background()); err != nil {
			return
		}
		err := s.write(&f)
		s.unlock()
		if err != nil {
			s.fail(err)
			return
		}
	}
}

// switchTo moves the session to pc (whose hello exchange is done): our
// switch frame ends the old connection, and the reader follows the
// peer's switch frame to pc.
func (s *tcpSession) switchTo(pc *pathConn) error {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		pc.Close()
		return s.err
	}
	s.conns = append(s.conns, pc)
	s.mu.Unlock()
	select {
	case s.nextConn <- pc:
	default:
		pc.Close()
		return &RefusedError{Code: RefuseSession, Msg: "a move to another path is under way already"}
	}
	if err := s.lock(context.Background()); err != nil {
		pc.Close()
		return err
	}
	defer s.unlock()
	old := s.wconn
	err := s.write(&Frame{Kind: kindSwitch, Volume: s.l.cfg.Volume, Seq: s.sendSeq})
	if err != nil {
		s.fail(err)
		return err
	}
	s.wconn = pc
	old.endOne()
	s.mu.Lock()
	from := s.path.path
	s.path = pc
	s.mu.Unlock()
	s.l.emit(Event{Kind: EventSwitched, Peer: s.peer.Node, Path: pc.path, Remote: pc.remote.String(),
		Err: fmt.Errorf("link: moved from path %d to path %d", from, pc.path)})
	return nil
}

// fail ends the session with err (the first error wins), telling the peer
// why when that can be done without waiting.
func (s *tcpSession) fail(err error) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	s.err = err
	close(s.done)
	s.mu.Unlock()
	var r *RefusedError
	if errors.As(err, &r) && !r.ByPeer {
		s.goodbye(r)
	}
	s.closeConns()
	s.l.ended(s)
}

// goodbye writes a refusal as the last frame, if the write token is free
// now (the writer may be stuck on a dead peer).
func (s *tcpSession) goodbye(r *RefusedError) {
	select {
	case s.wtok <- struct{}{}:
	default:
		return
	}
	s.wconn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	f := r.frame(s.l.cfg.Volume)
	s.write(&f)
	<-s.wtok
}

func (s *tcpSession) closeConns() {
	s.mu.Lock()
	conns := s.conns
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

func (s *tcpSession) Close(reason error) {
	msg := "closed by " + s.l.cfg.Self
	if reason != nil {
		msg += ": " + reason.Error()
	}
	s.fail(&RefusedError{Code: RefuseClosed, Msg: msg})
	s.wg.Wait()
}

func (s *tcpSession) Done() <-chan struct{} { return s.done }

func (s *tcpSession) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *tcpSession) Peer() Hello { return s.peer }

func (s *tcpSession) State() State {
	s.mu.Lock()
	p := s.path
	s.mu.Unlock()
	return State{
		Peer: s.peer.Node, Path: p.path, Local: p.local, Remote: p.remote, Since: s.since,
		RTT:     time.Duration(s.rtt.Load()),
		BytesIn: s.bytesIn.Load(), BytesOut: s.bytesOut.Load(),
		FramesIn: s.framesIn.Load(), FramesOut: s.framesOut.Load(),
		Newest: s.l.fence.get(),
	}
}

var _ Session = (*tcpSession)(nil)

// checkSend refuses what Send must not put on the wire.
func checkSend(f *Frame) error {
	if !f.Kind.IsData() {
		return fmt.Errorf("link: send: %v is not a data kind (1..%d)", f.Kind, FirstLinkKind-1)
	}
	if f.size() > MaxPayload {
		return fmt.Errorf("link: send: payload of %d bytes, at most %d", f.size(), MaxPayload)
	}
	return nil
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
