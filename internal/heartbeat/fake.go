package heartbeat

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"tandem/internal/clock"
)

// FakeNet is an in-memory datagram network for in-process clusters. Rules
// can drop, delay, duplicate, partition (also one way) and heal; delivery is
// scheduled on the given clock, so a fake clock drives it deterministically.
type FakeNet struct {
	mu        sync.Mutex
	clk       clock.Clock
	endpoints map[netip.AddrPort]*fakeEndpoint
	// blocked[from][to]: datagrams from host from to host to are dropped.
	blocked map[string]map[string]bool
	hostOf  map[netip.AddrPort]string
	delay   time.Duration
	dup     bool
	dropFn  func(from, to netip.AddrPort) bool
	tap     func(from, to netip.AddrPort, b []byte)
}

// NewFakeNet returns an empty network on clk.
func NewFakeNet(clk clock.Clock) *FakeNet {
	return &FakeNet{clk: clk, endpoints: map[netip.AddrPort]*fakeEndpoint{},
		blocked: map[string]map[string]bool{}, hostOf: map[netip.AddrPort]string{}}
}

// Endpoint attaches host with one address per link.
func (n *FakeNet) Endpoint(host string, links []netip.AddrPort) (Transport, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e := &fakeEndpoint{net: n, links: links, recv: make(chan Datagram, 1024)}
	for _, a := range links {
		if _, dup := n.endpoints[a]; dup {
			return nil, fmt.Errorf("heartbeat: fake address %s in use", a)
		}
		n.endpoints[a] = e
		n.hostOf[a] = host
	}
	return e, nil
}

// Cut drops everything from host a to host b (one way).
func (n *FakeNet) Cut(a, b string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.blocked[a] == nil {
		n.blocked[a] = map[string]bool{}
	}
	n.blocked[a][b] = true
}

// Partition cuts a and b both ways.
func (n *FakeNet) Partition(a, b string) { n.Cut(a, b); n.Cut(b, a) }

// Isolate cuts host from every other host, both ways.
func (n *FakeNet) Isolate(host string) {
	n.mu.Lock()
	hosts := map[string]bool{}
	for _, h := range n.hostOf {
		hosts[h] = true
	}
	n.mu.Unlock()
	for h := range hosts {
		if h != host {
			n.Partition(host, h)
		}
	}
}

// Heal removes every cut.
func (n *FakeNet) Heal() {
	n.mu.Lock()
	n.blocked = map[string]map[string]bool{}
	n.mu.Unlock()
}

// SetDelay sets the one-way delay of every datagram.
func (n *FakeNet) SetDelay(d time.Duration) { n.mu.Lock(); n.delay = d; n.mu.Unlock() }

// SetDuplicate makes every datagram arrive twice.
func (n *FakeNet) SetDuplicate(on bool) { n.mu.Lock(); n.dup = on; n.mu.Unlock() }

// SetDrop installs a per-datagram drop function (nil: none), e.g. to take
// one link down.
func (n *FakeNet) SetDrop(f func(from, to netip.AddrPort) bool) {
	n.mu.Lock()
	n.dropFn = f
	n.mu.Unlock()
}

// SetTap sees a copy of every datagram sent (captures for replay tests).
func (n *FakeNet) SetTap(f func(from, to netip.AddrPort, b []byte)) {
	n.mu.Lock()
	n.tap = f
	n.mu.Unlock()
}

// Inject delivers raw bytes to address to as if sent from from (forged or
// replayed datagrams in tests).
func (n *FakeNet) Inject(from, to netip.AddrPort, b []byte) {
	n.mu.Lock()
	e := n.endpoints[to]
	n.mu.Unlock()
	if e != nil {
		e.deliver(to, from, b)
	}
}

type fakeEndpoint struct {
	net    *FakeNet
	links  []netip.AddrPort
	recv   chan Datagram
	mu     sync.Mutex
	closed bool
}

func (e *fakeEndpoint) Send(link int, to netip.AddrPort, b []byte) error {
	if link < 0 || link >= len(e.links) {
		return fmt.Errorf("heartbeat: no link %d", link)
	}
	n := e.net
	from := e.links[link]
	n.mu.Lock()
	dst := n.endpoints[to]
	drop := dst == nil || n.blocked[n.hostOf[from]][n.hostOf[to]] || (n.dropFn != nil && n.dropFn(from, to))
	delay, dup, tap := n.delay, n.dup, n.tap
	n.mu.Unlock()
	if tap != nil {
		tap(from, to, append([]byte(nil), b...))
	}
	if drop {
		return nil
	}
	data := append([]byte(nil), b...)
	copies := 1
	if dup {
		copies = 2
	}
	for i := 0; i < copies; i++ {
		if delay <= 0 {
			dst.deliver(to, from, data)
		} else {
			n.clk.AfterFunc(delay, func() { dst.deliver(to, from, data) })
		}
	}
	return nil
}

func (e *fakeEndpoint) deliver(to, from netip.AddrPort, b []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	link := -1
	for i, a := range e.links {
		if a == to {
			link = i
		}
	}
	select {
	case e.recv <- Datagram{Link: link, From: from, Data: b}:
	default: // a full socket buffer drops, as UDP does
	}
}

func (e *fakeEndpoint) Recv() <-chan Datagram { return e.recv }

func (e *fakeEndpoint) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.closed {
		e.closed = true
		close(e.recv)
		e.net.mu.Lock()
		for _, a := range e.links {
			delete(e.net.endpoints, a)
		}
		e.net.mu.Unlock()
	}
	return nil
}
