package consensus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"tandem/internal/peerid"
)

// Connection purposes, the first byte a dialer writes after the handshake.
const (
	purposeRaft    = 'R'
	purposeForward = 'C'
)

// mux listens on every link address of this node, authenticates each
// connection (TLS 1.3, each side proving the identity derived from the
// cluster key for the voter it is: identity.go), and hands raft
// connections to the raft transport and forwarded commands to a handler.
// It is the raft.StreamLayer.
type mux struct {
	name      string // this voter
	self      netip.AddrPort
	listeners []net.Listener
	addrs     map[raft.ServerAddress][]netip.AddrPort
	ids       *identities // nil: insecure
	raftConns chan net.Conn
	forward   func(net.Conn)
	closed    chan struct{}
	once      sync.Once
	wg        sync.WaitGroup
	dialTO    time.Duration
	// cut, when set, reports that traffic from one voter to another is
	// blocked (in-process partition tests); connections between them then
	// fail, both ways, as TCP does when either direction is lost.
	cut func(from, to string) bool

	hsMu       sync.Mutex
	hsTotal    int            // connections in route, not yet dispatched
	handshakes map[string]int // of them, by source address

	log   *slog.Logger
	held  *repeats   // handshake failures already logged
	keyMu sync.Mutex // guards judge
	judge *keyJudge
}

func newMux(name string, listen []netip.AddrPort, peers map[raft.ServerAddress][]netip.AddrPort, key []byte, dialTimeout time.Duration) (*mux, error) {
	m := &mux{name: name, addrs: peers, raftConns: make(chan net.Conn, 16), closed: make(chan struct{}), dialTO: dialTimeout,
		log: slog.New(slog.DiscardHandler), held: newRepeats(repeatWindow, nil), judge: newKeyJudge(len(peers))}
	if key != nil {
		names := make([]string, 0, len(peers))
		for p := range peers {
			names = append(names, string(p))
		}
		ids, err := newIdentities(key, name, names)
		if err != nil {
			return nil, err
		}
		m.ids = ids
	}
	for _, a := range listen {
		ln, err := net.Listen("tcp", a.String())
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("consensus: listen %s: %w", a, err)
		}
		m.listeners = append(m.listeners, ln)
	}
	m.self = listen[0]
	return m, nil
}

func (m *mux) start(forward func(net.Conn)) {
	m.forward = forward
	for _, ln := range m.listeners {
		m.wg.Add(1)
		go m.acceptLoop(ln)
	}
}

func (m *mux) acceptLoop(ln net.Listener) {
	defer m.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			select {
			case <-m.closed:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		src := sourceIP(c)
		if !m.admit(src) {
			c.Close()
			continue
		}
		go func() {
			var once sync.Once
			release := func() { once.Do(func() { m.done(src) }) }
			defer release()
			m.route(c, release)
		}()
	}
}

// Connections not yet authenticated are capped, per source address and in
// total: each holds a descriptor for up to the 5 s handshake deadline, and
// anyone who reaches a link address can open them. Voters come from their
// own addresses, so a flood from elsewhere cannot crowd them out.
const (
	maxHandshakes          = 128
	maxHandshakesPerSource = 16
)

func (m *mux) admit(src string) bool {
	m.hsMu.Lock()
	defer m.hsMu.Unlock()
	if m.handshakes == nil {
		m.handshakes = map[string]int{}
	}
	if m.hsTotal >= maxHandshakes || m.handshakes[src] >= maxHandshakesPerSource {
		return false
	}
	m.hsTotal++
	m.handshakes[src]++
	return true
}

// done ends src's handshake, once route has authenticated the
// connection or closed it.
func (m *mux) done(src string) {
	m.hsMu.Lock()
	defer m.hsMu.Unlock()
	m.hsTotal--
	if m.handshakes[src]--; m.handshakes[src] <= 0 {
		delete(m.handshakes, src)
	}
}

func sourceIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return c.RemoteAddr().String()
}

// route authenticates c and dispatches it by purpose. A connection that
// fails the handshake, claims a name its certificate is not for, or names
// no known purpose is closed.
func (m *mux) route(c net.Conn, authenticated func()) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var tc *tls.Conn
	if m.ids != nil {
		cfg := m.ids.Server()
		claimed := ""
		cfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			claimed = claimedName(h.SupportedProtos)
			return nil, nil
		}
		tc = tls.Server(c, cfg)
		if err := tc.Handshake(); err != nil {
			m.handshakeFailed(claimed, sourceIP(c), err)
			c.Close()
			return
		}
		c = tc
	}
	// purpose, then the dialer's name (length-prefixed), which must be the
	// voter its certificate was derived for
	var b [2]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		c.Close()
		return
	}
	peer := make([]byte, b[1])
	if _, err := io.ReadFull(c, peer); err != nil {
		c.Close()
		return
	}
	if tc != nil {
		if name, err := m.ids.PeerName(tc); err != nil || name != string(peer) {
			c.Close()
			return
		}
		m.keyAgreed(string(peer))
	}
	c.SetDeadline(time.Time{})
	authenticated()
	c = m.filter(c, string(peer))
	switch b[0] {
	case purposeRaft:
		select {
		case m.raftConns <- c:
		case <-m.closed:
			c.Close()
		}
	case purposeForward:
		if m.forward != nil {
			m.forward(c)
		}
		c.Close()
	default:
		c.Close()
	}
}

// dial connects to a voter on its first reachable link.
func (m *mux) dial(ctx context.Context, to raft.ServerAddress, purpose byte) (net.Conn, error) {
	addrs := m.addrs[to]
	if len(addrs) == 0 {
		return nil, fmt.Errorf("consensus: unknown voter %q", to)
	}
	if m.cut != nil && (m.cut(m.name, string(to)) || m.cut(string(to), m.name)) {
		return nil, fmt.Errorf("consensus: dial %s: %w", to, errCut)
	}
	var errs []error
	for _, a := range addrs {
		c, err := m.dialOne(ctx, to, a, purpose)
		if err == nil {
			return m.filter(c, string(to)), nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", a, err))
	}
	return nil, fmt.Errorf("consensus: dial %s: %w", to, errors.Join(errs...))
}

// dialOne connects to voter to at a and accepts only to's identity there.
func (m *mux) dialOne(ctx context.Context, to raft.ServerAddress, a netip.AddrPort, purpose byte) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, m.dialTO)
	defer cancel()
	d := net.Dialer{}
	c, err := d.DialContext(ctx, "tcp", a.String())
	if err != nil {
		return nil, err
	}
	if deadline, ok := ctx.Deadline(); ok {
		c.SetDeadline(deadline)
	}
	if m.ids != nil {
		cfg := m.ids.Client(string(to))
		cfg.NextProtos = []string{alpnFrom + m.name}
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			m.handshakeFailed(string(to), a.String(), err)
			c.Close()
			return nil, err
		}
		m.keyAgreed(string(to))
		c = tc
	}
	hello := append([]byte{purpose, byte(len(m.name))}, m.name...)
	if _, err := c.Write(hello); err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// alpnFrom prefixes the dialler's name in the protocols its ClientHello
// offers, so that a listener whose certificate the dialler refuses knows
// who refused it (the hello with the name comes after the handshake, and
// on loopback or behind NAT the source address does not tell). It is a
// claim, not a proof: it is only ever used to word a log record. A
// listener that sets no protocols of its own ignores it.
const alpnFrom = "tandem-from/"

func claimedName(protos []string) string {
	for _, p := range protos {
		if n, ok := strings.CutPrefix(p, alpnFrom); ok {
			return n
		}
	}
	return ""
}

// keyAgreed notes that peer proved the identity our cluster key derives
// for it.
func (m *mux) keyAgreed(peer string) {
	m.keyMu.Lock()
	m.judge.agreed(peer)
	m.keyMu.Unlock()
}

// handshakeFailed logs a failed TLS handshake with peer (the voter dialled,
// or the one a dialler claims to be; "" if none) at addr (the address
// dialled, or the dialler's IP address). A failure for
// the key is an error, worded by whose key the voters show is wrong; the
// first one of each peer and verdict is logged, then one a minute with the
// count (raft retries every few hundred milliseconds). Other failures (a
// reset, a timeout, a port scanner) are for debugging.
func (m *mux) handshakeFailed(peer, addr string, err error) {
	refused := refusedCertificate(err)
	name, foreign := peerid.IsForeignKey(err)
	if foreign && !m.isVoter(peer) {
		peer = name // a dialler's certificate names it
	}
	if (!refused && !foreign) || !m.isVoter(peer) {
		m.held.log(m.log, "handshake\x00"+addr, slog.LevelDebug, "raft transport: TLS handshake failed", "addr", addr, "err", err)
		return
	}
	m.keyMu.Lock()
	v := m.judge.differs(peer)
	m.keyMu.Unlock()
	m.held.log(m.log, "key\x00"+peer+"\x00"+v.String(), slog.LevelError, keyMismatch(v, peer, addr, refused), "peer", peer, "addr", addr, "err", err)
}

func (m *mux) isVoter(name string) bool {
	_, ok := m.addrs[raft.ServerAddress(name)]
	return ok && name != m.name
}

// refusedCertificate reports whether err is the peer's refusal of our
// certificate (its TLS alert), rather than ours of its.
func refusedCertificate(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error" && strings.Contains(op.Err.Error(), "bad certificate")
}

// filter wraps c so it fails while the path to peer is cut.
func (m *mux) filter(c net.Conn, peer string) net.Conn {
	if m.cut == nil {
		return c
	}
	return &cutConn{Conn: c, blocked: func() bool { return m.cut(m.name, peer) || m.cut(peer, m.name) }}
}

type cutConn struct {
	net.Conn
	blocked func() bool
}

var errCut = errors.New("consensus: path cut (partition test)")

func (c *cutConn) Read(p []byte) (int, error) {
	if c.blocked() {
		c.Conn.Close()
		return 0, errCut
	}
	n, err := c.Conn.Read(p)
	if err == nil && c.blocked() {
		c.Conn.Close()
		return 0, errCut
	}
	return n, err
}

func (c *cutConn) Write(p []byte) (int, error) {
	if c.blocked() {
		c.Conn.Close()
		return 0, errCut
	}
	return c.Conn.Write(p)
}

// raft.StreamLayer

func (m *mux) Accept() (net.Conn, error) {
	select {
	case c := <-m.raftConns:
		return c, nil
	case <-m.closed:
		return nil, net.ErrClosed
	}
}

func (m *mux) Close() error {
	m.once.Do(func() {
		close(m.closed)
		for _, ln := range m.listeners {
			ln.Close()
		}
	})
	return nil
}

func (m *mux) Addr() net.Addr { return net.TCPAddrFromAddrPort(m.self) }

func (m *mux) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return m.dial(ctx, address, purposeRaft)
}
