package vip

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"

	"tandem/internal/config"
	"tandem/internal/netutil"
	"tandem/internal/resource"
	"tandem/internal/vipguard"
)

// These tests run the agent for real: two node namespaces A and B and a
// client C on one bridge. The VIP moves from A to B and the client must
// follow at once, from the announcements alone.

const testBase = "tvipa"

const vipPort = 7200

type node struct {
	*netutil.Host
	guard    *vipguard.NFT
	accepted *atomic.Int64 // TCP connections its listener took
}

type vipLab struct {
	a, b node
	c    *netutil.Host
}

func newVIPLab(t *testing.T, vips ...netip.Prefix) *vipLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("vip: needs root (network namespaces, netlink, raw sockets); skipped")
	}
	if removed, err := netutil.RemoveStale(testBase); err != nil {
		t.Fatal(err)
	} else if len(removed) > 0 {
		t.Logf("removed stale namespaces %v", removed)
	}
	lab, err := netutil.NewLab(fmt.Sprintf("%s%s", netutil.UniquePrefix(testBase), strings.ReplaceAll(t.Name(), "/", "")[4:9]))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
	})
	host := func(name string, n int) *netutil.Host {
		h, err := lab.AddHost(name, netip.MustParsePrefix(fmt.Sprintf("10.77.1.%d/24", n)),
			netip.MustParsePrefix(fmt.Sprintf("fd77:1::%d/64", n)))
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	l := &vipLab{a: node{Host: host("a", 1)}, b: node{Host: host("b", 2)}, c: host("c", 3)}
	for _, n := range []*node{&l.a, &l.b} {
		g, err := vipguard.NewNFT(vipguard.Options{NetNS: n.Path()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Close() })
		if err := g.Install(vips); err != nil {
			t.Fatal(err)
		}
		n.guard = g
		n.accepted = listen(t, n.Host)
	}
	return l
}

// listen accepts and closes TCP connections on vipPort in h, counting them.
func listen(t *testing.T, h *netutil.Host) *atomic.Int64 {
	t.Helper()
	var accepted atomic.Int64
	var ln net.Listener
	if err := h.Do(func() (err error) { ln, err = net.Listen("tcp", fmt.Sprintf(":%d", vipPort)); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	return &accepted
}

func (l *vipLab) agent(t *testing.T, n node, spec config.VIP) *Agent {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil)).With("node", n.Name)
	a, err := New("vip-0", spec, n.guard, log, WithNetNS(n.Path()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Stop(context.Background()) })
	return a
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func hostHas(t *testing.T, h *netutil.Host, vip netip.Addr) bool {
	t.Helper()
	present, err := hostNet(h.Path()).hasAddr(netutil.HostLink, vip)
	if err != nil {
		t.Fatal(err)
	}
	return present
}

// captured is one announcement seen by the client.
type captured struct {
	at    time.Time
	from  net.HardwareAddr
	reply bool // ARP reply form (IPv4 only)
}

// capture records, in C, announcements of vip until stop is closed: seen
// waits for the end and returns them, announced counts the announcements
// (not ARP replies) from mac so far.
func capture(t *testing.T, c *netutil.Host, vip netip.Addr, stop <-chan struct{}) (seen func() []captured, announced func(mac net.HardwareAddr) int) {
	t.Helper()
	var (
		mu  sync.Mutex
		got []captured
		rd  func() error
	)
	add := func(cp captured) { mu.Lock(); got = append(got, cp); mu.Unlock() }
	err := c.Do(func() error {
		ifi, err := net.InterfaceByName(netutil.HostLink)
		if err != nil {
			return err
		}
		if vip.Is4() {
			conn, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ARP, nil)
			if err != nil {
				return err
			}
			rd = func() error {
				defer conn.Close()
				buf := make([]byte, 1500)
				for {
					// Stop is checked before a read, not after: a packet read
					// by a thread that woke late is still counted.
					select {
					case <-stop:
						return nil
					default:
					}
					conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
					n, _, err := conn.ReadFrom(buf)
					if err != nil {
						continue
					}
					var f ethernet.Frame
					var p arp.Packet
					if f.UnmarshalBinary(buf[:n]) != nil || p.UnmarshalBinary(f.Payload) != nil {
						continue
					}
					if p.SenderIP == vip && p.TargetIP == vip && bytes.Equal(f.Destination, ethernet.Broadcast) {
						add(captured{time.Now(), p.SenderHardwareAddr, p.Operation == arp.OperationReply})
					}
				}
			}
			return nil
		}
		conn, _, err := ndp.Listen(netutil.ZoneSafe(ifi), ndp.LinkLocal)
		if err != nil {
			return err
		}
		rd = func() error {
			defer conn.Close()
			for {
				select {
				case <-stop:
					return nil
				default:
				}
				conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
				msg, _, _, err := conn.ReadFrom()
				if err != nil {
					continue
				}
				na, ok := msg.(*ndp.NeighborAdvertisement)
				if !ok || na.TargetAddress != vip || !na.Override || na.Solicited {
					continue
				}
				for _, o := range na.Options {
					if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
						add(captured{at: time.Now(), from: lla.Addr})
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); rd() }()
	announced = func(mac net.HardwareAddr) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, c := range got {
			if !c.reply && bytes.Equal(c.from, mac) {
				n++
			}
		}
		return n
	}
	seen = func() []captured {
		<-done
		mu.Lock()
		defer mu.Unlock()
		return got
	}
	return seen, announced
}

// vipSpec is the default spec for addr on the lab's interface.
func vipSpec(addr string) config.VIP {
	spec := config.DefaultVIP()
	spec.Address, spec.Interface = addr, netutil.HostLink
	return spec
}

func TestVIPMovesAndClientFollows(t *testing.T) {
	for _, addr := range []string{"10.77.1.100/24", "fd77:1::100/64"} {
		t.Run(addr, func(t *testing.T) {
			l, spec := newVIPLab(t, netip.MustParsePrefix(addr)), vipSpec(addr)
			agentA, agentB := l.agent(t, l.a, spec), l.agent(t, l.b, spec)
			ctx, vip := t.Context(), netip.MustParsePrefix(addr).Addr()
			target := netip.AddrPortFrom(vip, vipPort)

			// A holds the VIP; the client learns A's MAC by talking to it.
			if err := l.a.guard.Allow(vip, time.Minute); err != nil {
				t.Fatal(err)
			}
			if err := agentA.Start(ctx); err != nil {
				t.Fatal(err)
			}
			if err := agentA.Monitor(ctx); err != nil {
				t.Fatalf("monitor on A: %v", err)
			}
			if err := l.c.DialTCP(target, time.Second); err != nil {
				t.Fatalf("client to VIP on A: %v", err)
			}
			if mac, state, _ := l.c.Neighbor(netutil.HostLink, vip); !bytes.Equal(mac, l.a.MAC) {
				t.Fatalf("client's neighbour entry %v (%s), want A's %v", mac, state, l.a.MAC)
			}

			// Switch over to B, capturing B's announcements at the client.
			// The capture begins once A's Stop has returned: until then A
			// holds the VIP and its own burst may announce it (on a busy
			// machine the steps above outlast garp_interval).
			if err := agentA.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			seen, announced := capture(t, l.c, vip, stop)
			if hostHas(t, l.a.Host, vip) {
				t.Fatal("A still has the VIP after Stop")
			}
			if err := agentA.Monitor(ctx); !resource.IsNotRunning(err) {
				t.Errorf("monitor on A after stop: %v", err)
			}
			if err := l.b.guard.Allow(vip, time.Minute); err != nil {
				t.Fatal(err)
			}
			started := time.Now()
			if err := agentB.Start(ctx); err != nil {
				t.Fatal(err)
			}
			returned := time.Since(started)
			// The first announcement went out before Start returned: the
			// client's cache follows within moments, with no traffic of its own.
			// (Looked at once more after the deadline: a sleep that
			// overran it must not end the wait unlooked.)
			var mac net.HardwareAddr
			var state string
			for deadline := time.Now().Add(200 * time.Millisecond); ; time.Sleep(time.Millisecond) {
				mac, state, _ = l.c.Neighbor(netutil.HostLink, vip)
				if bytes.Equal(mac, l.b.MAC) || time.Now().After(deadline) {
					break
				}
			}
			if !bytes.Equal(mac, l.b.MAC) {
				t.Fatalf("client's neighbour entry %v (%s) after B's start, want B's %v", mac, state, l.b.MAC)
			}
			t.Logf("B's Start returned in %v; client's cache pointed at B %v after Start began",
				returned.Round(time.Microsecond), time.Since(started).Round(time.Microsecond))
			if err := l.c.DialTCP(target, time.Second); err != nil {
				t.Fatalf("client to VIP on B: %v", err)
			}
			if a := haveArping(t); vip.Is4() && a != nil {
				out, err := l.c.Command(ctx, a.path, a.args(netutil.HostLink, vip, 1, 0, 2*time.Second)...).CombinedOutput()
				if macs := replyMACs(string(out)); err != nil || len(macs) != 1 || !bytes.Equal(macs[0], l.b.MAC) {
					t.Errorf("arping from the client: %v: %q, want B's MAC %v", err, out, l.b.MAC)
				}
			}

			// All garp_count announcements, garp_interval apart. Wait until
			// the client has them all (a burst starved of CPU ends late:
			// a fixed wait once cut off the fifth), then one interval
			// more, in which no extra one may come.
			interval := spec.GARPInterval.D()
			for deadline := time.Now().Add(time.Duration(spec.GARPCount)*interval + 5*time.Second); announced(l.b.MAC) < spec.GARPCount && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(interval)
			close(stop)
			checkAnnouncements(t, seen(), l.b.MAC, vip.Is4(), spec.GARPCount, interval, started)

			if err := agentB.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			if hostHas(t, l.b.Host, vip) {
				t.Error("B still has the VIP after Stop")
			}
			if left, _ := l.b.guard.Remaining(vip); left != 0 {
				t.Errorf("B's guard still allows the VIP for %v after Stop", left)
			}
		})
	}
}

func checkAnnouncements(t *testing.T, seen []captured, mac net.HardwareAddr, v4 bool, count int, interval time.Duration, started time.Time) {
	t.Helper()
	var times []time.Time
	replies := 0
	for _, c := range seen {
		if !bytes.Equal(c.from, mac) {
			// One the old holder sent before its Stop returned may still
			// be on its way when the capture begins; once B has spoken,
			// nobody else may.
			if len(times) > 0 {
				t.Errorf("announcement from %v %v after Start began, after B's first: want only B's %v", c.from, c.at.Sub(started), mac)
			} else {
				t.Logf("announcement from %v, sent before it stopped, seen %v after B's Start began", c.from, c.at.Sub(started))
			}
			continue
		}
		if c.reply {
			replies++
			continue
		}
		times = append(times, c.at)
	}
	if len(times) != count {
		t.Errorf("client saw %d announcements, want %d", len(times), count)
	}
	if v4 && replies != count {
		t.Errorf("client saw %d ARP replies beside %d requests, want %d", replies, len(times), count)
	}
	if len(times) < 2 {
		return
	}
	// Gaps as the client stamps them jitter when the shared CPU is busy
	// (the fake-clock tests pin the spacing exactly), and so does the span
	// from the first stamp: a first stamp taken late shrinks it (seen: 365
	// ms for 400 beside stress-ng). What cannot shrink is the time from
	// Start to the last stamp: the burst's ticker starts during Start and
	// keeps a fixed grid, and a packet is stamped after it was sent.
	var gaps []string
	for i := 1; i < len(times); i++ {
		gaps = append(gaps, times[i].Sub(times[i-1]).Round(time.Millisecond).String())
	}
	last := times[len(times)-1]
	t.Logf("%d announcements over %v, gaps %v; the last %v after Start began", len(times),
		last.Sub(times[0]).Round(time.Millisecond), gaps, last.Sub(started).Round(time.Millisecond))
	if want := time.Duration(count-1) * interval; last.Sub(started) < want {
		t.Errorf("the last announcement came %v after Start began, want %v or more (garp_interval apart)", last.Sub(started), want)
	}
}

func TestMonitorOnRealInterfaces(t *testing.T) {
	addr := "10.77.1.100/24"
	vipP := netip.MustParsePrefix(addr)
	l, spec := newVIPLab(t, vipP), vipSpec(addr)
	spec.GARPCount = 1
	a := l.agent(t, l.a, spec)
	ctx := t.Context()
	if err := a.Start(ctx); err == nil {
		t.Fatal("started without an allowance")
	}
	if hostHas(t, l.a.Host, vipP.Addr()) {
		t.Fatal("address added without an allowance")
	}
	if err := l.a.guard.Allow(vipP.Addr(), time.Minute); err != nil {
		t.Fatal(err)
	}
	for range 2 { // idempotent
		if err := a.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Monitor(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.a.SetLinkUp(false); err != nil {
		t.Fatal(err)
	}
	if err := a.Monitor(ctx); resource.SeverityOf(err) != resource.Hard {
		t.Errorf("monitor with the link down: %v", err)
	}
	if err := l.a.SetLinkUp(true); err != nil {
		t.Fatal(err)
	}
	// Someone removes the address behind the agent's back.
	if _, err := hostNet(l.a.Path()).delAddr(netutil.HostLink, vipP.Addr()); err != nil {
		t.Fatal(err)
	}
	if err := a.Monitor(ctx); !resource.IsNotRunning(err) {
		t.Errorf("monitor with the address gone: %v", err)
	}
	if err := a.Stop(ctx); err != nil {
		t.Errorf("stop of a removed address: %v", err)
	}
	spec.Interface = "nosuch0"
	missing := l.agent(t, l.a, spec)
	if err := l.a.guard.Allow(vipP.Addr(), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := missing.Monitor(ctx); resource.SeverityOf(err) != resource.Hard {
		t.Errorf("monitor on a missing interface: %v", err)
	}
	if err := missing.Start(ctx); resource.SeverityOf(err) != resource.Hard {
		t.Errorf("start on a missing interface: %v", err)
	}
	if err := missing.Stop(ctx); err != nil {
		t.Errorf("stop on a missing interface: %v", err)
	}
}

// TestFrozenHolderNeverAnswersBesideTheNewOne is the split brain keepalived
// shows with a frozen daemon: A holds the VIP, then stops renewing without
// removing the address (frozen); once its lease ends B takes over. The
// client must reach only B, and only B may answer ARP / NDP for the VIP.
func TestFrozenHolderNeverAnswersBesideTheNewOne(t *testing.T) {
	const lease = 300 * time.Millisecond
	for _, addr := range []string{"10.77.1.100/24", "fd77:1::100/64"} {
		t.Run(addr, func(t *testing.T) {
			l, spec := newVIPLab(t, netip.MustParsePrefix(addr)), vipSpec(addr)
			agentA, agentB := l.agent(t, l.a, spec), l.agent(t, l.b, spec)
			ctx, vip := t.Context(), netip.MustParsePrefix(addr).Addr()
			target := netip.AddrPortFrom(vip, vipPort)

			if err := l.a.guard.Allow(vip, lease); err != nil {
				t.Fatal(err)
			}
			granted := time.Now()
			if err := agentA.Start(ctx); err != nil {
				t.Fatal(err)
			}
			if err := l.c.DialTCP(target, time.Second); err != nil {
				t.Fatalf("client to VIP on A: %v", err)
			}
			// A freezes: nobody renews, nobody removes the address.
			time.Sleep(time.Until(granted.Add(lease + 10*time.Millisecond)))
			if !hostHas(t, l.a.Host, vip) {
				t.Fatal("the frozen holder lost its address")
			}
			if err := l.b.guard.Allow(vip, time.Minute); err != nil {
				t.Fatal(err)
			}
			if err := agentB.Start(ctx); err != nil {
				t.Fatal(err)
			}
			fromA := l.a.accepted.Load()
			for i := range 20 {
				if err := l.c.DialTCP(target, time.Second); err != nil {
					t.Fatalf("client connection %d after the takeover: %v", i, err)
				}
			}
			if got := l.a.accepted.Load() - fromA; got != 0 {
				t.Errorf("frozen A accepted %d connections after its lease ended", got)
			}
			// Accept runs after the client's connect returns: give it a moment.
			for deadline := time.Now().Add(time.Second); l.b.accepted.Load() < 20 && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			if got := l.b.accepted.Load(); got != 20 {
				t.Errorf("B accepted %d of 20 connections", got)
			}
			// Ask the LAN who has the VIP, several times: only B may say so.
			// The first answer ends a query at once; the timeout only bounds
			// a missing one, and is long because a loaded machine wakes the
			// reading thread 100-200 ms late (100 ms failed beside
			// stress-ng: "neighbour solicitation ... i/o timeout"). A cannot
			// answer late: its lease ended, the kernel silences it for good.
			answers := map[string]int{}
			for range 5 {
				resolve := l.c.ResolveNDP
				if vip.Is4() {
					resolve = l.c.ResolveARP
				}
				mac, err := resolve(netutil.HostLink, vip, time.Second)
				if err != nil {
					t.Fatal(err)
				}
				answers[mac.String()]++
			}
			if len(answers) != 1 || answers[l.b.MAC.String()] != 5 {
				t.Errorf("who-has answers %v, want only B (%v)", answers, l.b.MAC)
			}
			if a := haveArping(t); vip.Is4() && a != nil {
				// arping counts every reply, so a second answerer would show.
				out, err := l.c.Command(ctx, a.path, a.args(netutil.HostLink, vip, 3, 100*time.Millisecond, 2*time.Second)...).CombinedOutput()
				macs := replyMACs(string(out))
				fromB := 0
				for _, m := range macs {
					if bytes.Equal(m, l.b.MAC) {
						fromB++
					}
				}
				if err != nil || len(macs) != 3 || fromB != 3 {
					t.Errorf("arping: %v: %q, want three replies, all from B %v", err, out, l.b.MAC)
				}
			}
		})
	}
}

// haveArping returns the arping installed (Thomas Habets's or iputils')
// to ask for the VIP as an independent client; without one that check is
// skipped, saying so, like the NBD client tests.
func haveArping(t *testing.T) *arping {
	t.Helper()
	a, why := findArping()
	if a == nil {
		t.Log(why)
	}
	return a
}
