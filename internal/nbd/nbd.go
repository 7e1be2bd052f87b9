// Package nbd owns tandem's Network Block Device server: it serves
// blockdev.Device volumes to the kernel nbd-client, qemu and libnbd tools
// (fixed newstyle handshake, OPT_GO/INFO/LIST/ABORT/EXPORT_NAME; READ, WRITE,
// FLUSH, FUA, TRIM, WRITE_ZEROES, DISC), and a small client used by tests and
// by other packages' in-process tests. The wire format lives in nbd/wire; the
// nbdkit comparison in nbd/nbdbench. It imports blockdev and nbd/wire only;
// cmd/ and the storage packages (raid, replication) may import it.
package nbd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"tandem/internal/blockdev"
	"tandem/internal/nbd/wire"
)

// MaxPayload is the largest READ or WRITE we accept, and the maximum block
// size we advertise: the 32 MiB every client assumes when it is not told.
const MaxPayload = 32 << 20

// preferredBlockSize is advertised as NBD_INFO_BLOCK_SIZE preferred: the page
// size, so clients avoid read-modify-write in the page cache below us.
const preferredBlockSize = 4096

// defaultHandshakeTimeout bounds how long a client may take to choose an
// export, so a connection that never finishes the handshake cannot pin a
// goroutine forever. Transmission has no idle timeout by default: kernel
// clients idle for days (see Limits).
const defaultHandshakeTimeout = 30 * time.Second

// Refused connections (over Limits.MaxConns) are told why in the
// handshake, within refuseTimeout and at most maxRefusing at a time;
// beyond that they are closed at once, so a flood of connections costs
// no more than a bounded number of goroutines.
const (
	refuseTimeout = 2 * time.Second
	maxRefusing   = 8
)

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("nbd: server closed")

// Export is one named volume served over NBD.
type Export struct {
	Name        string
	Description string
	Device      blockdev.Device
	ReadOnly    bool
	// MultiConn advertises NBD_FLAG_CAN_MULTI_CONN: set it only when a
	// Flush through one connection makes writes acknowledged on every
	// connection durable (true for any Device whose Flush covers all
	// writes that returned, such as blockdev.File).
	MultiConn bool
	// MinBlockSize, when above 1, is advertised and enforced: requests
	// whose offset or length are not multiples of it get EINVAL. Use it
	// for devices opened with O_DIRECT. It must be a power of two up to
	// 64 KiB; 0 means 1.
	MinBlockSize uint32
}

// export is an Export with what the handshake advertises worked out once.
type export struct {
	Export
	size    uint64
	flags   uint16
	bs      wire.BlockSize
	metrics atomic.Pointer[exportMetrics]
}

func newExport(e Export) (*export, error) {
	if e.Device == nil {
		return nil, fmt.Errorf("nbd: export %q: no device", e.Name)
	}
	if len(e.Name) > wire.MaxStringLen || len(e.Description) > wire.MaxStringLen {
		return nil, fmt.Errorf("nbd: export %q: name or description longer than %d bytes", e.Name, wire.MaxStringLen)
	}
	min := e.MinBlockSize
	if min == 0 {
		min = 1
	}
	if min&(min-1) != 0 || min > 64<<10 {
		return nil, fmt.Errorf("nbd: export %q: minimum block size %d is not a power of two up to 64 KiB", e.Name, min)
	}
	size := e.Device.Size()
	if size < 0 {
		return nil, fmt.Errorf("nbd: export %q: negative size %d", e.Name, size)
	}
	flags := wire.FlagHasFlags
	if e.ReadOnly {
		flags |= wire.FlagReadOnly
	} else {
		flags |= wire.FlagSendFlush | wire.FlagSendFUA | wire.FlagSendTrim | wire.FlagSendWriteZeroes
	}
	if e.MultiConn {
		flags |= wire.FlagCanMultiConn
	}
	return &export{
		Export: e,
		size:   uint64(size),
		flags:  flags,
		bs:     wire.BlockSize{Min: min, Preferred: max(preferredBlockSize, min), Max: MaxPayload},
	}, nil
}

// Server serves exports over NBD. Create it with NewServer, run Serve on
// one or more listeners, stop it with Close.
type Server struct {
	log              *slog.Logger
	exports          []*export
	configErr        error
	handshakeTimeout atomic.Int64 // time.Duration
	metrics          atomic.Pointer[metrics]

	// Set before Serve (SetLimits, SetTLS), read-only afterwards.
	limits     Limits
	mem        *memory
	tlsConfig  *tls.Config
	tlsRequire bool
	allow      []netip.Prefix // nil: every address

	mu        sync.Mutex
	closed    bool
	serving   bool // Serve was called: limits and TLS are fixed
	listeners map[net.Listener]struct{}
	conns     map[*serverConn]struct{}
	connWG    sync.WaitGroup
	// Connections being told they are over MaxConns (see refuse).
	refusing  int
	refused   map[net.Conn]struct{}
	fullLog   refusalLog
	deniedLog refusalLog
}

// NewServer returns a server for exports. The first export is also the
// default one that clients reach with an empty export name. Problems with
// the exports (duplicate names, no device) are reported by Serve.
func NewServer(logger *slog.Logger, exports ...Export) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		log:       logger,
		listeners: map[net.Listener]struct{}{},
		conns:     map[*serverConn]struct{}{},
		refused:   map[net.Conn]struct{}{},
	}
	s.limits = DefaultLimits()
	s.mem = newMemory(s.limits)
	s.handshakeTimeout.Store(int64(defaultHandshakeTimeout))
	seen := map[string]bool{}
	var errs []error
	for _, e := range exports {
		if seen[e.Name] {
			errs = append(errs, fmt.Errorf("nbd: export %q listed twice", e.Name))
			continue
		}
		seen[e.Name] = true
		x, err := newExport(e)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.exports = append(s.exports, x)
	}
	if len(exports) == 0 {
		errs = append(errs, errors.New("nbd: no exports"))
	}
	s.configErr = errors.Join(errs...)
	return s
}

// SetHandshakeTimeout changes how long a new client may take before it
// enters transmission (default 30 s; 0 means no limit).
func (s *Server) SetHandshakeTimeout(d time.Duration) { s.handshakeTimeout.Store(int64(d)) }

// SetLimits sets the server's limits (zero fields take their defaults). It
// must be called before Serve.
func (s *Server) SetLimits(l Limits) error {
	if err := l.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.serving {
		return errors.New("nbd: SetLimits after Serve")
	}
	s.limits = l.withDefaults()
	s.mem = newMemory(s.limits)
	s.handshakeTimeout.Store(int64(s.limits.HandshakeTimeout))
	return nil
}

// Limits returns the limits in force.
func (s *Server) Limits() Limits { return s.limits }

// SetAllow restricts TCP clients to the given address prefixes; others are
// disconnected as soon as they are accepted, before a byte is read or sent,
// and logged. Unix-socket clients are not affected (the socket file's
// permissions guard them). An empty list allows every address. It must be
// called before Serve.
func (s *Server) SetAllow(prefixes []netip.Prefix) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.serving {
		return errors.New("nbd: SetAllow after Serve")
	}
	s.allow = nil
	for _, p := range prefixes {
		s.allow = append(s.allow, p.Masked())
	}
	return nil
}

// allowed says whether a client at addr may connect.
func (s *Server) allowed(addr net.Addr) bool {
	if len(s.allow) == 0 {
		return true
	}
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return true // unix sockets: file permissions
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	for _, p := range s.allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// SetTLS offers TLS through NBD_OPT_STARTTLS with config (which must hold
// a certificate; set ClientAuth and ClientCAs to demand client
// certificates). With require, every option but STARTTLS and ABORT is
// refused with NBD_REP_ERR_TLS_REQD until TLS is up, and NBD_OPT_EXPORT_NAME
// without TLS is hung up on, as the protocol's "forced TLS" mode says. It
// must be called before Serve; a nil config turns TLS off.
func (s *Server) SetTLS(config *tls.Config, require bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.serving {
		return errors.New("nbd: SetTLS after Serve")
	}
	if config == nil {
		s.tlsConfig, s.tlsRequire = nil, false
		return nil
	}
	if len(config.Certificates) == 0 && config.GetCertificate == nil && config.GetConfigForClient == nil {
		return errors.New("nbd: TLS config has no certificate")
	}
	// NBD clients (libnbd, qemu, nbd-client) all speak TLS 1.2 and 1.3.
	config = config.Clone()
	config.MinVersion = max(config.MinVersion, tls.VersionTLS12)
	s.tlsConfig, s.tlsRequire = config, require
	return nil
}

// lookup finds an export by name; the empty name is the default export.
func (s *Server) lookup(name string) *export {
	for _, e := range s.exports {
		if e.Name == name {
			return e
		}
	}
	if name == "" && len(s.exports) > 0 {
		return s.exports[0]
	}
	return nil
}

// Serve accepts connections on ln until Close, then returns ErrServerClosed.
// It may be called for several listeners at once.
func (s *Server) Serve(ln net.Listener) error {
	if s.configErr != nil {
		return s.configErr
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.serving = true
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Out of descriptors or similar: back off as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("nbd: accept failed, retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("nbd: accept: %w", err)
		}
		backoff = 0
		if !s.allowed(nc.RemoteAddr()) {
			s.turnAway(nc)
			continue
		}
		sc := &serverConn{s: s, nc: nc, raw: nc}
		sc.ctx, sc.cancel = context.WithCancel(context.Background())
		switch s.track(sc) {
		case trackClosed:
			nc.Close()
			return ErrServerClosed
		case trackFull:
			s.refuse(nc)
			continue
		}

		go sc.serve()
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

type trackResult int

const (
	tracked trackResult = iota
	trackClosed
	trackFull
)

func (s *Server) track(sc *serverConn) trackResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return trackClosed
	}
	if len(s.conns) >= s.limits.MaxConns {
		return trackFull
	}
	s.conns[sc] = struct{}{}
	s.connWG.Add(1)
	return tracked
}

func (s *Server) untrack(sc *serverConn) {
	s.mu.Lock()
	delete(s.conns, sc)
	s.mu.Unlock()
	s.connWG.Done()
}

// Close stops every listener, stops reading new requests on every
// connection, lets requests already read finish and send their replies,
// then closes the connections. It returns once all are closed.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	var errs []error
	for ln := range s.listeners {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("nbd: close listener %s: %w", ln.Addr(), err))
		}
	}
	for sc := range s.conns {
		sc.stop()
	}
	for nc := range s.refused {
		nc.Close()
	}
	s.mu.Unlock()
	s.connWG.Wait()
	return errors.Join(errs...)
}

// Exports returns the names of the exports served.
func (s *Server) Exports() []string {
	names := make([]string, len(s.exports))
	for i, e := range s.exports {
		names[i] = e.Name
	}
	return names
}
