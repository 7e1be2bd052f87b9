package link

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
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
	// After a write error the reader drains: what the peer sent before it
	// died is in this side's socket and still counts (a dead peer's last
	// frames, then its reset; an async primary's outdate frame, e2e
	// TestVolumeOutdatedPromotion), so the connections stay open for the
	// reader until it reads their end, or for the link's Timeout. hard tells the
	// reader to stop at once (Close, the drain's end, any other failure);
	// rdone is closed when it has stopped, and Recv ends only then.
	hard     chan struct{}
	hardOnce sync.Once
	rdone    chan struct{}

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
		hard:     make(chan struct{}),
		rdone:    make(chan struct{}),
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
		s.failWrite(err)
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
			s.failWrite(err)
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
		s.failWrite(err)
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
// why when that can be done without waiting; the reader stops at once.
func (s *tcpSession) fail(err error) { s.end(err, false) }

// failWrite ends the session after a write error: the reader drains what
// the peer sent before (see hard), unless the write timed out: a peer that
// stopped reading for that long (frozen) is not waited for twice, and the
// reader had the time to read what it sent.
func (s *tcpSession) failWrite(err error) { s.end(err, !errors.Is(err, ErrTimeout)) }

func (s *tcpSession) end(err error, drain bool) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		if !drain {
			s.stopReader()
		}
		return
	}
	s.err = err
	close(s.done)
	s.mu.Unlock()
	var r *RefusedError
	if errors.As(err, &r) && !r.ByPeer {
		s.goodbye(r)
	}
	if drain {
		// A dead peer's frames are in this side's socket already,
		// followed by its end (a reset), so the drain takes as long as
		// reading them and handing them to Recv; a Recv that does not
		// come, or a peer that goes on sending, is cut off after the
		// timeout a silent peer gets.
		time.AfterFunc(s.l.cfg.Limits.Timeout, s.stopReader)
	} else {
		s.stopReader()
	}
	s.l.ended(s)
}

// stopReader ends the reader now: its connections are closed and its
// waits for Recv end.
func (s *tcpSession) stopReader() {
	s.hardOnce.Do(func() {
		close(s.hard)
		s.closeConns()
	})
}

// goodbye writes a refusal as the last frame, if the write token comes
// free within 100 ms: a frame being written (a ping) finishes in far less,
// while a writer stuck on a dead peer would hold it until its deadline.
// (Taking it only when free at once lost the reason whenever a ping was
// on its way: the peer then saw a bare EOF.)
func (s *tcpSession) goodbye(r *RefusedError) {
	t := time.NewTimer(100 * time.Millisecond)
	defer t.Stop()
	select {
	case s.wtok <- struct{}{}:
	case <-t.C:
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

// Done is closed at the session's end; Recv may still return frames the
// reader drained after a write error.
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
