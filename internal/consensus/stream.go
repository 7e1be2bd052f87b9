package consensus

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"golang.org/x/crypto/hkdf"
)

// Connection purposes, the first byte a dialer writes after the handshake.
const (
	purposeRaft    = 'R'
	purposeForward = 'C'
)

// mux listens on every link address of this node, authenticates each
// connection (TLS 1.3, both sides proving the cluster key), and hands raft
// connections to the raft transport and forwarded commands to a handler.
// It is the raft.StreamLayer.
type mux struct {
	name      string // this voter
	self      netip.AddrPort
	listeners []net.Listener
	addrs     map[raft.ServerAddress][]netip.AddrPort
	tls       *tls.Config // nil: insecure
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
}

func newMux(name string, listen []netip.AddrPort, peers map[raft.ServerAddress][]netip.AddrPort, key []byte, dialTimeout time.Duration) (*mux, error) {
	m := &mux{name: name, addrs: peers, raftConns: make(chan net.Conn, 16), closed: make(chan struct{}), dialTO: dialTimeout}
	if key != nil {
		cfg, err := tlsConfig(key)
		if err != nil {
			return nil, err
		}
		m.tls = cfg
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
		go m.route(c)
	}
}

// route authenticates c and dispatches it by purpose. A connection that
// fails the handshake or names no known purpose is closed.
func (m *mux) route(c net.Conn) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if m.tls != nil {
		tc := tls.Server(c, m.tls)
		if err := tc.Handshake(); err != nil {
			c.Close()
			return
		}
		c = tc
	}
	// purpose, then the dialer's name (length-prefixed; authenticated by
	// the handshake, used for logs and partition tests)
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
	c.SetDeadline(time.Time{})
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
		c, err := m.dialOne(ctx, a, purpose)
		if err == nil {
			return m.filter(c, string(to)), nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", a, err))
	}
	return nil, fmt.Errorf("consensus: dial %s: %w", to, errors.Join(errs...))
}

func (m *mux) dialOne(ctx context.Context, a netip.AddrPort, purpose byte) (net.Conn, error) {
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
	if m.tls != nil {
		tc := tls.Client(c, m.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
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

// tlsConfig builds a TLS 1.3 configuration in which both sides present a
// certificate for an Ed25519 key derived from the cluster key and accept
// only a peer presenting the same public key: possession of the cluster key
// is the authentication, with forward secrecy from the TLS key exchange.
func tlsConfig(key []byte) (*tls.Config, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(hkdf.New(sha256.New, key, nil, []byte("tandem/consensus-tls/v1")), seed); err != nil {
		return nil, err
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Unix(0, 0),
		NotAfter:     time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		return nil, fmt.Errorf("consensus: certificate: %w", err)
	}
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) != 1 {
			return errors.New("consensus: peer must present exactly one certificate")
		}
		cert, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return err
		}
		if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
			return err
		}
		if p, ok := cert.PublicKey.(ed25519.PublicKey); !ok || !p.Equal(pub) {
			return errors.New("consensus: peer does not hold the cluster key")
		}
		return nil
	}
	return &tls.Config{
		MinVersion:            tls.VersionTLS13,
		Certificates:          []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv}},
		ClientAuth:            tls.RequireAnyClientCert,
		InsecureSkipVerify:    true, // replaced by verify: the peer must hold our key
		VerifyPeerCertificate: verify,
		ServerName:            "tandem",
	}, nil
}
