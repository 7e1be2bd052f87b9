package heartbeat

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
)

// Datagram is one received datagram.
type Datagram struct {
	Link int            // index of the local link it arrived on
	From netip.AddrPort // source address
	Data []byte
}

// Transport moves datagrams on a node's links. Implementations: UDP (one
// socket per link address) and FakeNet endpoints for tests.
type Transport interface {
	// Send sends b from local link to the address to.
	Send(link int, to netip.AddrPort, b []byte) error
	// Recv delivers received datagrams until Close.
	Recv() <-chan Datagram
	Close() error
}

// DirectReceiver is implemented by transports that can hand datagrams to
// a function on their reading goroutine, saving a goroutine hand-off per
// datagram (most of an idle agent's CPU is per-datagram overhead). The
// handler must be installed before the first datagram arrives.
type DirectReceiver interface {
	SetHandler(func(Datagram))
}

// UDP is the real Transport: one UDP socket bound to each link address.
type UDP struct {
	conns   []*net.UDPConn
	recv    chan Datagram
	wg      sync.WaitGroup
	once    sync.Once
	handler func(Datagram)
	started chan struct{}
}

// SetHandler makes every datagram go to h instead of the Recv channel.
func (u *UDP) SetHandler(h func(Datagram)) {
	u.handler = h
	close(u.started)
}

// ListenUDP binds one socket per local link address.
func ListenUDP(links []netip.AddrPort) (*UDP, error) {
	u := &UDP{recv: make(chan Datagram, 256), started: make(chan struct{})}
	for i, a := range links {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
		if err != nil {
			u.Close()
			return nil, fmt.Errorf("heartbeat: link %d: listen %s: %w", i, a, err)
		}
		u.conns = append(u.conns, c)
	}
	for i, c := range u.conns {
		u.wg.Add(1)
		go u.read(i, c)
	}
	return u, nil
}

func (u *UDP) read(link int, c *net.UDPConn) {
	defer u.wg.Done()
	buf := make([]byte, 2048)
	direct := false
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if !direct {
			select {
			case <-u.started:
				direct = true
			default:
			}
		}
		if direct {
			u.handler(Datagram{Link: link, From: from, Data: buf[:n]})
			continue
		}
		u.recv <- Datagram{Link: link, From: from, Data: append([]byte(nil), buf[:n]...)}
	}
}

func (u *UDP) Send(link int, to netip.AddrPort, b []byte) error {
	if link < 0 || link >= len(u.conns) {
		return fmt.Errorf("heartbeat: no link %d", link)
	}
	_, err := u.conns[link].WriteToUDPAddrPort(b, to)
	return err
}

func (u *UDP) Recv() <-chan Datagram { return u.recv }

func (u *UDP) Close() error {
	u.once.Do(func() {
		for _, c := range u.conns {
			c.Close()
		}
		go func() { u.wg.Wait(); close(u.recv) }()
	})
	return nil
}
