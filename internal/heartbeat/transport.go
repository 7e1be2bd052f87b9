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

// Packet is one datagram to send.
type Packet struct {
	To   netip.AddrPort
	Data []byte
}

// BatchSender is implemented by transports that send several datagrams
// on one link in one call (sendmmsg): a heartbeat round goes to every peer
// at once. SendBatch returns how many were sent and the first error.
type BatchSender interface {
	SendBatch(link int, pkts []Packet) (int, error)
}

// UDP is the real Transport: one UDP socket bound to each link address.
// On Linux, where it can, it sends a link's datagrams of a round with one
// sendmmsg and reads what is queued with one recvmmsg, both as raw system
// calls on the non-blocking socket (udp_linux.go): an idle agent's cost is
// its wake-ups and system calls, and a system call the runtime is told of
// wakes its monitor thread when every processor is idle.
type UDP struct {
	conns   []*net.UDPConn
	raw     []*rawUDP // by link; nil entries use conns' methods
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
	u.raw = make([]*rawUDP, len(u.conns))
	for i, c := range u.conns {
		u.raw[i] = newRawUDP(c)
		u.wg.Add(1)
		if u.raw[i] != nil {
			go u.readRaw(i, u.raw[i])
		} else {
			go u.read(i, c)
		}
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
		direct = u.deliver(direct, Datagram{Link: link, From: from, Data: buf[:n]})
	}
}

// deliver hands dg to the handler once it is installed (dg.Data is the
// reader's buffer) or queues a copy; it returns whether the handler is.
func (u *UDP) deliver(direct bool, dg Datagram) bool {
	if !direct {
		select {
		case <-u.started:
			direct = true
		default:
		}
	}
	if direct {
		u.handler(dg)
		return true
	}
	dg.Data = append([]byte(nil), dg.Data...)
	u.recv <- dg
	return false
}

func (u *UDP) Send(link int, to netip.AddrPort, b []byte) error {
	if link < 0 || link >= len(u.conns) {
		return fmt.Errorf("heartbeat: no link %d", link)
	}
	if r := u.raw[link]; r != nil {
		_, err := r.send([]Packet{{To: to, Data: b}})
		return err
	}
	_, err := u.conns[link].WriteToUDPAddrPort(b, to)
	return err
}

// SendBatch sends pkts from local link, in one system call where it can.
func (u *UDP) SendBatch(link int, pkts []Packet) (int, error) {
	if link < 0 || link >= len(u.conns) {
		return 0, fmt.Errorf("heartbeat: no link %d", link)
	}
	if r := u.raw[link]; r != nil {
		return r.send(pkts)
	}
	sent := 0
	var first error
	for _, p := range pkts {
		if _, err := u.conns[link].WriteToUDPAddrPort(p.Data, p.To); err != nil {
			first = firstErr(first, err)
			continue
		}
		sent++
	}
	return sent, first
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

// firstErr is a unless it is nil, then b.
func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
