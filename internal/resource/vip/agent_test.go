package vip

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"tandem/internal/clock"
	"tandem/internal/config"
	"tandem/internal/resource"
	"tandem/internal/vipguard"
)

// fakeNet is an in-memory host network: interfaces with flags and addresses.
type fakeNet struct {
	mu        sync.Mutex
	links     map[string]*linkInfo
	addrs     map[string]map[netip.Addr]netip.Prefix
	adds      int
	addErr    error
	announced chan netip.Addr // one value per announcement
	open      int             // announcers not closed yet
}

func newFakeNet() *fakeNet {
	return &fakeNet{
		links:     map[string]*linkInfo{"eth0": {up: true, carrier: true, mac: testMAC}},
		addrs:     map[string]map[netip.Addr]netip.Prefix{"eth0": {}},
		announced: make(chan netip.Addr, 100),
	}
}

func (f *fakeNet) link(iface string) (linkInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.links[iface]
	if !ok {
		return linkInfo{}, errNoLink
	}
	return *l, nil
}

func (f *fakeNet) hasAddr(iface string, ip netip.Addr) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.links[iface]; !ok {
		return false, errNoLink
	}
	_, ok := f.addrs[iface][ip]
	return ok, nil
}

func (f *fakeNet) addAddr(iface string, p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.addErr != nil {
		return f.addErr
	}
	f.adds++
	f.addrs[iface][p.Addr()] = p
	return nil
}

func (f *fakeNet) awaitLocal(context.Context, netip.Addr) error { return nil }

func (f *fakeNet) delAddr(iface string, ip netip.Addr) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.links[iface]; !ok {
		return false, errNoLink
	}
	_, had := f.addrs[iface][ip]
	delete(f.addrs[iface], ip)
	return had, nil
}

func (f *fakeNet) announcer(iface string, ip netip.Addr, mac net.HardwareAddr) (announcer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.open++
	return &fakeAnnouncer{f: f, ip: ip}, nil
}

func (f *fakeNet) openAnnouncers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.open
}

type fakeAnnouncer struct {
	f  *fakeNet
	ip netip.Addr
}

func (a *fakeAnnouncer) announce() error { a.f.announced <- a.ip; return nil }
func (a *fakeAnnouncer) close() error {
	a.f.mu.Lock()
	a.f.open--
	a.f.mu.Unlock()
	return nil
}

type rig struct {
	clk   *clock.Fake
	net   *fakeNet
	guard *vipguard.Mem
	agent *Agent
	spec  config.VIP
}

func newRig(t *testing.T, address string) *rig {
	t.Helper()
	r := &rig{clk: clock.NewFake(time.Unix(1000, 0)), net: newFakeNet()}
	r.guard = vipguard.NewMem(r.clk)
	r.spec = config.DefaultVIP()
	r.spec.Address, r.spec.Interface = address, "eth0"
	p := netip.MustParsePrefix(address)
	if err := r.guard.Install([]netip.Prefix{p}); err != nil {
		t.Fatal(err)
	}
	if err := r.guard.Allow(p.Addr(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	a, err := New("vip-0", r.spec, r.guard, slog.New(slog.DiscardHandler), WithClock(r.clk), withNet(r.net))
	if err != nil {
		t.Fatal(err)
	}
	r.agent = a
	return r
}

// announcements returns how many announcements have been made so far,
// without waiting.
func (r *rig) announcements() int { return len(r.net.announced) }

// nextAnnouncement waits for the background burst to announce (it runs on
// its own goroutine once the fake clock ticks).
func (r *rig) nextAnnouncement(t *testing.T) {
	t.Helper()
	select {
	case <-r.net.announced:
	case <-time.After(5 * time.Second):
		t.Fatal("no announcement")
	}
}

func TestStartAddsAndAnnouncesFirstAtOnceThenSpaced(t *testing.T) {
	for _, addr := range []string{"10.0.0.50/24", "fd00::50/64"} {
		t.Run(addr, func(t *testing.T) {
			r := newRig(t, addr)
			ctx := t.Context()
			if err := r.agent.Start(ctx); err != nil {
				t.Fatal(err)
			}
			if r.net.adds != 1 {
				t.Errorf("adds = %d", r.net.adds)
			}
			if n := r.announcements(); n != 1 {
				t.Fatalf("%d announcements before Start returned, want 1", n)
			}
			r.nextAnnouncement(t)
			interval := r.spec.GARPInterval.D()
			for i := 2; i <= r.spec.GARPCount; i++ {
				r.clk.Advance(interval - time.Millisecond)
				if n := r.announcements(); n != 0 {
					t.Fatalf("announcement %d came early", i)
				}
				r.clk.Advance(time.Millisecond)
				r.nextAnnouncement(t)
			}
			r.clk.Advance(10 * interval)
			if err := r.agent.Stop(ctx); err != nil { // waits for the burst
				t.Fatal(err)
			}
			if n := r.announcements(); n != 0 {
				t.Errorf("%d announcements beyond garp_count", n)
			}
			if r.net.openAnnouncers() != 0 {
				t.Error("announcer sockets left open")
			}
			if err := r.agent.Monitor(ctx); !resource.IsNotRunning(err) {
				t.Errorf("monitor after stop: %v", err)
			}
		})
	}
}

func TestStopCancelsAnnouncementsAndRevokes(t *testing.T) {
	r := newRig(t, "10.0.0.50/24")
	ctx := t.Context()
	if err := r.agent.Start(ctx); err != nil {
		t.Fatal(err)
	}
	r.nextAnnouncement(t)
	if err := r.agent.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	r.clk.Advance(time.Minute)
	if n := r.announcements(); n != 0 {
		t.Errorf("%d announcements after Stop", n)
	}
	if r.guard.Allowed(netip.MustParseAddr("10.0.0.50")) {
		t.Error("Stop left the VIP allowed")
	}
	if ok, _ := r.net.hasAddr("eth0", netip.MustParseAddr("10.0.0.50")); ok {
		t.Error("address still present")
	}
	if err := r.agent.Stop(ctx); err != nil {
		t.Errorf("second stop: %v", err)
	}
}

func TestStartIsIdempotentAndReannounces(t *testing.T) {
	r := newRig(t, "10.0.0.50/24")
	ctx := t.Context()
	for range 2 {
		if err := r.agent.Start(ctx); err != nil {
			t.Fatal(err)
		}
		r.nextAnnouncement(t)
	}
	if r.net.adds != 1 {
		t.Errorf("address added %d times", r.net.adds)
	}
	if r.net.openAnnouncers() != 1 {
		t.Errorf("%d bursts running, want the second only", r.net.openAnnouncers())
	}
	if err := r.agent.Monitor(ctx); err != nil {
		t.Errorf("monitor: %v", err)
	}
}

func TestStartNeedsTheLease(t *testing.T) {
	r := newRig(t, "10.0.0.50/24")
	ctx := t.Context()
	r.clk.Advance(10 * time.Second) // the allowance ran out
	err := r.agent.Start(ctx)
	if err == nil || resource.SeverityOf(err) != resource.Soft {
		t.Fatalf("start without lease: %v", err)
	}
	if r.net.adds != 0 || r.announcements() != 0 {
		t.Error("VIP taken without a lease")
	}
	if err := r.guard.Install(nil); err != nil {
		t.Fatal(err)
	}
	if err := r.agent.Start(ctx); resource.SeverityOf(err) != resource.Fatal || !vipguard.IsNotGuarded(err) {
		t.Errorf("start of an unguarded VIP: %v", err)
	}
}

func TestMonitorClassifiesInterfaceTrouble(t *testing.T) {
	r := newRig(t, "10.0.0.50/24")
	ctx := t.Context()
	if err := r.agent.Start(ctx); err != nil {
		t.Fatal(err)
	}
	r.net.mu.Lock()
	r.net.links["eth0"].carrier = false
	r.net.mu.Unlock()
	if err := r.agent.Monitor(ctx); resource.SeverityOf(err) != resource.Hard {
		t.Errorf("no carrier: %v", err)
	}
	r.net.mu.Lock()
	r.net.links["eth0"].up = false
	r.net.mu.Unlock()
	if err := r.agent.Monitor(ctx); resource.SeverityOf(err) != resource.Hard {
		t.Errorf("link down: %v", err)
	}
	r.net.mu.Lock()
	delete(r.net.links, "eth0")
	r.net.mu.Unlock()
	if err := r.agent.Monitor(ctx); resource.SeverityOf(err) != resource.Hard || !errors.Is(err, errNoLink) {
		t.Errorf("link missing: %v", err)
	}
	if err := r.agent.Start(ctx); resource.SeverityOf(err) != resource.Hard {
		t.Errorf("start on a missing link: %v", err)
	}
	if err := r.agent.Stop(ctx); err != nil {
		t.Errorf("stop on a missing link: %v", err)
	}
}

func TestStartReportsAddFailure(t *testing.T) {
	r := newRig(t, "10.0.0.50/24")
	r.net.addErr = errors.New("EPERM")
	err := r.agent.Start(t.Context())
	if err == nil || resource.SeverityOf(err) != resource.Soft || r.announcements() != 0 {
		t.Errorf("start with failing add: %v, %d announcements", err, r.announcements())
	}
}

func TestNoAnnouncementsWhenCountIsZero(t *testing.T) {
	r := newRig(t, "10.0.0.50/24")
	r.agent.count = 0
	if err := r.agent.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if r.announcements() != 0 || r.net.openAnnouncers() != 0 {
		t.Error("announced with garp_count 0")
	}
}

func TestNewRejectsBadSpecs(t *testing.T) {
	g := vipguard.NewMem(clock.Real{})
	log := slog.New(slog.DiscardHandler)
	for _, spec := range []config.VIP{
		{Address: "10.0.0.50", Interface: "eth0"},                   // no prefix length
		{Address: "10.0.0.50/24"},                                   // no interface
		{Address: "10.0.0.50/24", Interface: "eth0", GARPCount: -1}, // negative count
		{Address: "10.0.0.50/24", Interface: "eth0", GARPCount: 3},  // no interval
	} {
		if _, err := New("v", spec, g, log); err == nil {
			t.Errorf("New(%+v) accepted", spec)
		}
	}
	if _, err := New("v", config.VIP{Address: "10.0.0.50/24", Interface: "eth0"}, nil, log); err == nil {
		t.Error("New accepted a nil guard")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	a, err := New("v", config.VIP{Address: "10.0.0.50/24", Interface: "eth0"}, g, log, withNet(newFakeNet()))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err == nil {
		t.Error("start with a done context succeeded")
	}
}

func TestAnnouncementsStopWhenTheLeaseEnds(t *testing.T) {
	r := newRig(t, "10.0.0.50/24")
	if err := r.guard.Allow(netip.MustParseAddr("10.0.0.50"), 250*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := r.agent.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	r.nextAnnouncement(t)
	for range 2 { // at 100 and 200 ms the lease still runs
		r.clk.Advance(r.spec.GARPInterval.D())
		r.nextAnnouncement(t)
	}
	r.clk.Advance(time.Minute)
	if err := r.agent.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := r.announcements(); n != 0 {
		t.Errorf("%d announcements after the lease ended", n)
	}
}
