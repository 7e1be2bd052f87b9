package nbd

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"tandem/internal/blockdev"
	"tandem/internal/nbd/wire"
)

const (
	// workersPerConn is how many requests one connection may run at once,
	// as nbdkit's default 16 threads: enough queue depth for real disks.
	workersPerConn = 16
	// promoteAfter is how long a request may run before another worker
	// is started to read the next one. Quick requests (page cache, memory)
	// run one after another on the worker that read them, with no
	// hand-off between goroutines; slow ones (disks, fsync) get company,
	// up to workersPerConn.
	promoteAfter = 100 * time.Microsecond
	// drainTimeout bounds how long replies may take to reach a client once
	// the connection is ending, so a client that stops reading cannot hold
	// a shutdown forever.
	drainTimeout = 10 * time.Second
	// unixSendBuffer is asked for on unix sockets (the kernel caps it at
	// net.core.wmem_max).
	unixSendBuffer = 4 << 20
)

// errDisconnect is the clean end of transmission (NBD_CMD_DISC).
var errDisconnect = errors.New("nbd: client disconnected")

// errIdle ends a connection that sent nothing for Limits.IdleTimeout with
// nothing in flight.
var errIdle = errors.New("nbd: client idle")

// serverConn is one client connection: the handshake, then workers that
// take turns reading a request, run it, and send its reply, so replies go
// out in whatever order requests finish. A worker does all three itself
// (as nbdkit's threads do), so a request is never handed between
// goroutines. Workers are started on demand: a write starts one at once
// (see work), any other request once it has run for promoteAfter, so while
// reads finish quickly one worker suffices. A worker stays until the
// connection ends, waiting its turn to read as nbdkit's threads do: one
// that retired when another was reading had to be started again for the
// next write, with a fresh stack grown again through the device's code.
type serverConn struct {
	s *Server
	// raw is the accepted connection: deadlines and Close go to it. nc is
	// what requests and replies travel on: raw, or TLS over it once
	// STARTTLS succeeded (set before transmission starts).
	raw    net.Conn
	nc     net.Conn
	ctx    context.Context
	cancel context.CancelFunc
	log    *slog.Logger

	exp *export
	mem *connMemory

	readMu       sync.Mutex
	br           *bufio.Reader
	endErr       error     // why no more requests are read; guarded by readMu
	readDeadline time.Time // last read deadline set for IdleTimeout; guarded by readMu

	writeMu       sync.Mutex
	broken        bool      // a reply could not be sent; guarded by writeMu
	writeDeadline time.Time // last write deadline set for StallTimeout; guarded by writeMu
	// drainBy is when owed replies must be out (unix ns), once the
	// connection is ending; 0 before.
	drainBy atomic.Int64

	inFlight atomic.Int32 // requests read and not yet answered
	// answered is when the last reply went out (unix ns): a connection is
	// idle IdleTimeout after its last request or its last answer,
	// whichever is later.
	answered atomic.Int64

	readers atomic.Int32 // workers in next(): reading or waiting to

	poolMu  sync.Mutex
	workers int           // running; guarded by poolMu
	ending  bool          // no more workers start; guarded by poolMu
	done    chan struct{} // closed when the last worker has gone
}

// job is one request read off the wire.
type job struct {
	req    wire.Request
	buf    *buffer // payload (WRITE) or destination (READ)
	weight int64
	errno  uint32 // set when the request is refused without running
}

// stop makes the connection finish: no new requests are read, those in
// flight complete and their replies are sent for at most drainTimeout.
// Called with s.mu held.
func (sc *serverConn) stop() {
	sc.cancel()
	sc.raw.SetReadDeadline(time.Unix(1, 0))
	sc.drain()
}

// drain gives the replies still owed drainTimeout to reach the client, so a
// client that stopped reading cannot keep an ending connection open. The
// first call sets the time; send never extends it.
func (sc *serverConn) drain() {
	by := time.Now().Add(drainTimeout)
	if sc.drainBy.CompareAndSwap(0, by.UnixNano()) {
		sc.raw.SetWriteDeadline(by)
	}
}

func (sc *serverConn) serve() {
	defer sc.s.untrack(sc)
	defer sc.raw.Close()
	defer sc.cancel()
	s := sc.s
	s.metrics.Load().connAccepted()
	sc.log = s.log.With("remote", sc.raw.RemoteAddr().String())

	if d := time.Duration(s.handshakeTimeout.Load()); d > 0 {
		sc.raw.SetDeadline(time.Now().Add(d))
	}
	// Small: headers are batched by it, payloads bypass it.
	n := &negotiation{s: s, r: bufio.NewReaderSize(sc.raw, 4<<10), w: bufio.NewWriterSize(sc.raw, 4<<10), tlsRequired: s.tlsRequire}
	if s.tlsConfig != nil {
		n.startTLS = sc.startTLS
	}
	exp, err := n.run()
	if err != nil {
		if !errors.Is(err, errAbort) && sc.ctx.Err() == nil {
			sc.log.Info("nbd: handshake failed", "err", err, "tls", n.tlsUp)
			s.metrics.Load().connDropped()
		}
		return
	}
	sc.raw.SetDeadline(time.Time{})
	if sc.ctx.Err() != nil {
		return // Close ran during the handshake; its deadline may be cleared
	}
	sc.exp, sc.br = exp, n.r
	if uc, ok := sc.raw.(*net.UnixConn); ok {
		// The default (~208 KiB) is smaller than one 256 KiB nbdcopy read
		// reply, so every reply would stall the sender mid-write. TCP
		// autotunes its own buffer.
		uc.SetWriteBuffer(unixSendBuffer)
	}
	sc.log = sc.log.With("export", exp.Name)
	sc.log.Debug("nbd: transmission started", "tls", n.tlsUp)
	em := exp.metrics.Load()
	em.connActive(1)
	defer em.connActive(-1)
	connStarted()
	defer connEnded()
	sc.transmit()
}

// startTLS runs the server side of the TLS handshake after NBD_OPT_STARTTLS
// and makes transmission use it. r may hold bytes the client sent early.
func (sc *serverConn) startTLS(r *bufio.Reader) (*bufio.Reader, *bufio.Writer, error) {
	under := sc.raw
	if r.Buffered() > 0 {
		under = &prefixedConn{Conn: sc.raw, r: r}
	}
	tc := tls.Server(under, sc.s.tlsConfig)
	if err := tc.HandshakeContext(sc.ctx); err != nil {
		return nil, nil, err
	}
	sc.nc = tc
	return bufio.NewReaderSize(tc, 4<<10), bufio.NewWriterSize(tc, 4<<10), nil
}

// prefixedConn reads what a bufio.Reader already holds before the
// connection itself.
type prefixedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *prefixedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (sc *serverConn) transmit() {
	sc.mem = sc.s.mem.newConn(sc.s.limits.connLimit())
	defer sc.mem.killOnDone(sc.ctx)()
	sc.done = make(chan struct{})
	sc.spawn()
	// Requests already read run to completion (a write is acknowledged
	// only after WriteAt returned, and FUA after Flush) and their replies
	// go out, as the spec asks after NBD_CMD_DISC.
	<-sc.done

	err := sc.endErr
	switch {
	case errors.Is(err, errDisconnect):
		sc.log.Debug("nbd: client disconnected")
	case sc.ctx.Err() != nil:
		sc.log.Debug("nbd: connection stopped", "err", err)
	case errors.Is(err, io.EOF):
		sc.log.Info("nbd: client hung up without NBD_CMD_DISC")
	case errors.Is(err, errIdle):
		sc.log.Info("nbd: closing an idle connection", "idle_timeout", sc.s.limits.IdleTimeout)
		sc.s.metrics.Load().connTimedOut("idle")
	default:
		sc.log.Warn("nbd: dropping connection", "err", err)
		sc.s.metrics.Load().connDropped()
	}
}

// spawn starts a worker unless the connection is ending or has its
// fill of them.
func (sc *serverConn) spawn() {
	sc.poolMu.Lock()
	defer sc.poolMu.Unlock()
	if sc.ending || sc.workers >= workersPerConn {
		return
	}
	sc.workers++
	go sc.work()
}

// promote runs when a request has taken promoteAfter: if nobody is
// reading the next request meanwhile, start a worker that will.
func (sc *serverConn) promote() {
	if sc.readers.Load() == 0 {
		sc.spawn()
	}
}

// work is one worker: read a request, run it, reply; again, until reading
// ends.
func (sc *serverConn) work() {
	defer func() {
		sc.poolMu.Lock()
		sc.workers--
		if sc.workers == 0 {
			sc.ending = true
			close(sc.done)
		}
		sc.poolMu.Unlock()
	}()
	var hdr [wire.SimpleReplySize]byte
	iov := make(net.Buffers, 0, 2)
	watchdog := time.AfterFunc(time.Hour, sc.promote)
	watchdog.Stop()
	for {
		j, ok := sc.next()
		if !ok {
			return
		}
		errno, data := j.errno, []byte(nil)
		if errno == 0 {
			start := time.Now()
			// A write's payload is off the socket and the client has usually
			// queued more behind it: someone must read on at once, or the
			// client's sends stall on a full socket while this one runs (as
			// nbdkit's threads do, one reads while others write). Other
			// requests get company only when they turn out slow.
			eager := j.req.Type == wire.CmdWrite
			if eager {
				sc.promote()
			} else {
				watchdog.Reset(promoteAfter)
			}
			var err error
			data, err = sc.exec(j.req, j.buf)
			if !eager {
				watchdog.Stop()
			}
			if err != nil {
				errno, data = errnoFor(err), nil
				sc.log.Warn("nbd: device error", "op", wire.CmdName(j.req.Type), "offset", j.req.Offset, "length", j.req.Length, "err", err)
			}
			sc.exp.metrics.Load().request(j.req, errno, start)
		} else {
			sc.exp.metrics.Load().request(j.req, errno, time.Time{})
		}
		wire.PutSimpleReply(hdr[:], errno, j.req.Handle)
		iov = append(iov[:0], hdr[:])
		if data != nil {
			iov = append(iov, data)
		}
		sc.send(&iov)
		putBuffer(j.buf)
		if j.weight > 0 {
			sc.mem.release(j.weight)
		}
		sc.answered.Store(time.Now().UnixNano())
		sc.inFlight.Add(-1)
	}
}

// send writes one reply. A reply that makes no progress for StallTimeout
// (the client stopped reading) or is not out by the drain deadline ends
// the connection; after a failed write the connection is finished: reading
// stops and later replies are dropped, so their buffers are released.
func (sc *serverConn) send(iov *net.Buffers) {
	sc.writeMu.Lock()
	defer sc.writeMu.Unlock()
	if sc.broken {
		return
	}
	for {
		sc.armStall()
		n, err := iov.WriteTo(sc.nc)
		if err == nil {
			return
		}
		timedOut := errors.Is(err, os.ErrDeadlineExceeded)
		if timedOut && n > 0 && sc.drainBy.Load() == 0 {
			// The client takes its reply, slowly: not stalled. (Over TLS
			// a timed-out write is final and n is 0 from then on.)
			sc.writeDeadline = time.Time{}
			continue
		}
		sc.broken = true
		switch {
		case timedOut && sc.drainBy.Load() == 0:
			sc.log.Warn("nbd: client stopped reading its replies; closing the connection",
				"stall_timeout", sc.s.limits.StallTimeout, "in_flight", sc.inFlight.Load())
			sc.s.metrics.Load().connTimedOut("stall")
		case timedOut:
			sc.log.Info("nbd: replies owed to an ending connection were not taken in time", "drain_timeout", drainTimeout)
		case !errors.Is(err, net.ErrClosed):
			sc.log.Info("nbd: sending a reply failed", "err", err)
		}
		sc.cancel()
		sc.raw.SetReadDeadline(time.Unix(1, 0))
		return
	}
}

// armStall makes sure a write in progress can run for at least half of
// StallTimeout more without progress, and at most all of it. Setting a
// deadline costs a timer update, so it is refreshed only when less than
// half is left rather than for every reply. Once the connection is
// draining, the drain deadline stays (drain set it on raw directly).
func (sc *serverConn) armStall() {
	stall := sc.s.limits.StallTimeout
	now := time.Now()
	if now.Add(stall / 2).Before(sc.writeDeadline) {
		return
	}
	d := now.Add(stall)
	sc.writeDeadline = d
	sc.raw.SetWriteDeadline(d)
	// drain may have run between the check in send and this deadline;
	// never leave a later one in place of its.
	if by := sc.drainBy.Load(); by != 0 && by < d.UnixNano() {
		sc.raw.SetWriteDeadline(time.Unix(0, by))
	}
}

// next reads the next request. It returns false once the client
// disconnected, broke the protocol or the server is stopping; the reason is
// kept in endErr.
func (sc *serverConn) next() (job, bool) {
	sc.readers.Add(1)
	defer sc.readers.Add(-1)
	sc.readMu.Lock()
	defer sc.readMu.Unlock()
	if sc.endErr != nil {
		return job{}, false
	}
	j, err := sc.read()
	if err != nil {
		sc.endErr = err
		// Replies still owed go out, but a client that stopped reading
		// cannot keep the connection open.
		sc.drain()
		return job{}, false
	}
	sc.inFlight.Add(1)
	return j, true
}

// readFull reads len(p) bytes of a request. With an IdleTimeout, a
// connection that sends nothing for that long with nothing in flight, or
// stops in the middle of a request for that long, ends with errIdle.
func (sc *serverConn) readFull(p []byte, header bool) error {
	idle := sc.s.limits.IdleTimeout
	if idle <= 0 {
		_, err := io.ReadFull(sc.br, p)
		return err
	}
	for got := 0; ; {
		if now := time.Now(); !now.Add(idle / 2).Before(sc.readDeadline) {
			sc.readDeadline = now.Add(idle)
			sc.raw.SetReadDeadline(sc.readDeadline)
			if sc.ctx.Err() != nil {
				// stop or a failed send meant to end reading; do not
				// undo their deadline.
				sc.raw.SetReadDeadline(time.Unix(1, 0))
			}
		}
		n, err := io.ReadFull(sc.br, p[got:])
		got += n
		if err == nil {
			return nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) || sc.ctx.Err() != nil {
			return err
		}
		sc.readDeadline = time.Time{}
		// Not idle while the client makes progress or, between requests,
		// waits for answers, or got one less than IdleTimeout ago (the
		// deadline was set before that answer went out).
		if n > 0 || (header && got == 0 && sc.inFlight.Load() > 0) {
			continue
		}
		if header && got == 0 {
			if end := time.Unix(0, sc.answered.Load()).Add(idle); time.Now().Before(end) {
				sc.readDeadline = end
				sc.raw.SetReadDeadline(end)
				if sc.ctx.Err() != nil {
					sc.raw.SetReadDeadline(time.Unix(1, 0)) // as above
				}
				continue
			}
		}
		return errIdle
	}
}

// read decodes one request and its payload. Invalid requests whose framing
// is intact come back with errno set (a refused write's payload is read
// and dropped); anything that loses framing is an error that ends the
// connection.
func (sc *serverConn) read() (job, error) {
	var hdr [wire.RequestSize]byte
	if err := sc.readFull(hdr[:], true); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return job{}, fmt.Errorf("nbd: client vanished mid-request header: %w", err)
		}
		return job{}, err
	}
	req, err := wire.DecodeRequest(hdr[:])
	if err != nil {
		return job{}, err
	}
	if req.Type == wire.CmdDisc {
		return job{}, errDisconnect
	}
	if req.Type == wire.CmdWrite && req.Length > MaxPayload {
		// Its payload cannot be trusted to be what the header says.
		return job{}, fmt.Errorf("nbd: write of %d bytes exceeds the %d-byte maximum", req.Length, MaxPayload)
	}
	j := job{req: req, errno: sc.check(req)}
	if j.errno != 0 {
		if req.Type == wire.CmdWrite {
			if _, err := io.CopyN(io.Discard, sc.br, int64(req.Length)); err != nil {
				return job{}, fmt.Errorf("nbd: client vanished mid-write (handle %#x, %d bytes): %w", req.Handle, req.Length, err)
			}
		}
		return j, nil
	}
	if req.Type != wire.CmdWrite && req.Type != wire.CmdRead {
		return j, nil
	}
	// Weighed as the buffer it takes, so the budget bounds real memory.
	_, j.weight = bufferClass(int(req.Length))
	if !sc.mem.acquire(j.weight) {
		return job{}, fmt.Errorf("nbd: connection stopping: %w", context.Cause(sc.ctx))
	}
	j.buf = getBuffer(int(req.Length))
	if req.Type == wire.CmdWrite {
		if err := sc.readFull(j.buf.b[:req.Length], false); err != nil {
			putBuffer(j.buf)
			sc.mem.release(j.weight)
			return job{}, fmt.Errorf("nbd: client vanished mid-write (handle %#x, %d bytes): %w", req.Handle, req.Length, err)
		}
	}
	return j, nil
}

// check validates a request against the export before it runs.
func (sc *serverConn) check(r wire.Request) uint32 {
	e := sc.exp
	allowed := wire.CmdFlagFUA // valid on every command once SEND_FUA is offered
	switch r.Type {
	case wire.CmdRead:
		if r.Length > MaxPayload {
			return wire.EINVAL
		}
	case wire.CmdWrite, wire.CmdTrim, wire.CmdFlush:
	case wire.CmdWriteZeroes:
		allowed |= wire.CmdFlagNoHole
	default: // CACHE, BLOCK_STATUS and unknown commands are not offered
		return wire.EINVAL
	}
	if r.Flags&^allowed != 0 {
		return wire.EINVAL
	}
	if r.Type == wire.CmdFlush {
		return 0
	}
	if e.ReadOnly && r.Type != wire.CmdRead {
		return wire.EPERM
	}
	if r.Offset > e.size || uint64(r.Length) > e.size-r.Offset {
		return wire.EINVAL
	}
	if (r.Offset|uint64(r.Length))%uint64(e.bs.Min) != 0 {
		return wire.EINVAL
	}
	return 0
}

// exec runs one validated request on the device.
func (sc *serverConn) exec(r wire.Request, buf *buffer) ([]byte, error) {
	dev := sc.exp.Device
	off, n := int64(r.Offset), int64(r.Length)
	var err error
	switch r.Type {
	case wire.CmdRead:
		p := buf.b[:n]
		got, err := dev.ReadAt(p, off)
		if got == len(p) {
			return p, nil // io.EOF with a full read is fine
		}
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	case wire.CmdWrite:
		_, err = dev.WriteAt(buf.b[:n], off)
	case wire.CmdFlush:
		if sc.exp.ReadOnly {
			return nil, nil
		}
		return nil, dev.Flush()
	case wire.CmdTrim:
		// A hint: devices that cannot discard simply keep the data.
		if t, ok := dev.(blockdev.Trimmer); ok && n > 0 {
			err = t.Trim(off, n)
		}
	case wire.CmdWriteZeroes:
		err = writeZeroes(dev, off, n, r.Flags&wire.CmdFlagNoHole != 0)
	}
	if err == nil && r.Flags&wire.CmdFlagFUA != 0 {
		err = dev.Flush()
	}
	return nil, err
}

// writeZeroes zeroes [off, off+n). With NO_HOLE the range must stay
// allocated; a ZeroWriter may deallocate, so then zero buffers are written.
func writeZeroes(dev blockdev.Device, off, n int64, noHole bool) error {
	if zw, ok := dev.(blockdev.ZeroWriter); ok && !noHole {
		return zw.WriteZeroes(off, n)
	}
	for n > 0 {
		c := min(n, int64(len(zeroes)))
		if _, err := dev.WriteAt(zeroes[:c], off); err != nil {
			return err
		}
		off, n = off+c, n-c
	}
	return nil
}

// errnoFor maps a device error to an NBD error value.
func errnoFor(err error) uint32 {
	switch {
	case errors.Is(err, blockdev.ErrOutOfRange):
		return wire.EINVAL
	case errors.Is(err, syscall.ENOSPC):
		return wire.ENOSPC
	}
	return wire.EIO
}
