package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"tandem/internal/clock"
	"tandem/internal/config"
	"tandem/internal/resource"
	"tandem/internal/vipguard"
)

// Agent runs one VIP on this node.
type Agent struct {
	name     string
	prefix   netip.Prefix
	iface    string
	count    int
	interval time.Duration
	guard    vipguard.Guard
	log      *slog.Logger
	clock    clock.Clock
	net      netOps
	netns    string

	mu    sync.Mutex // serialises Start and Stop
	burst *burst     // announcements still to send, or nil
}

var _ resource.Agent = (*Agent)(nil)

// Option changes an Agent's defaults.
type Option func(*Agent)

// WithClock spaces announcements on c instead of the wall clock.
func WithClock(c clock.Clock) Option { return func(a *Agent) { a.clock = c } }

// WithNetNS runs the agent against the network namespace whose file is path
// (e.g. /run/netns/x) instead of the caller's.
func WithNetNS(path string) Option { return func(a *Agent) { a.netns = path } }

// withNet replaces the host network (tests).
func withNet(n netOps) Option { return func(a *Agent) { a.net = n } }

// New returns the agent for spec, guarded by guard. spec has had its
// defaults applied (config.DefaultVIP); garp_count 0 sends no announcement.
func New(name string, spec config.VIP, guard vipguard.Guard, logger *slog.Logger, opts ...Option) (*Agent, error) {
	p, err := netip.ParsePrefix(spec.Address)
	if err != nil {
		return nil, fmt.Errorf("vip: %s: address: %w", name, err)
	}
	var errs []error
	if spec.Interface == "" {
		errs = append(errs, errors.New("interface is required"))
	}
	if spec.GARPCount < 0 {
		errs = append(errs, fmt.Errorf("garp_count %d is negative", spec.GARPCount))
	}
	if spec.GARPCount > 1 && spec.GARPInterval <= 0 {
		errs = append(errs, fmt.Errorf("garp_interval %v must be positive", spec.GARPInterval.D()))
	}
	if guard == nil {
		errs = append(errs, errors.New("no lease guard"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("vip: %s: %w", name, err)
	}
	a := &Agent{
		name:     name,
		prefix:   netip.PrefixFrom(p.Addr().Unmap(), p.Bits()),
		iface:    spec.Interface,
		count:    spec.GARPCount,
		interval: spec.GARPInterval.D(),
		guard:    guard,
		log:      logger.With("vip", p.Addr().String(), "interface", spec.Interface),
		clock:    clock.Real{},
	}
	for _, o := range opts {
		o(a)
	}
	if a.net == nil {
		a.net = hostNet(a.netns)
	}
	return a, nil
}

// Start puts the VIP on its interface and announces it: the first
// announcement before Start returns, the others in the background until
// Stop. The guard must allow the VIP: a node without a lease never takes it.
func (a *Agent) Start(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopBurst()
	if err := ctx.Err(); err != nil {
		return a.errorf(resource.Soft, "start: %w", err)
	}
	vip := a.prefix.Addr()
	switch left, err := a.guard.Remaining(vip); {
	case vipguard.IsNotGuarded(err):
		return a.errorf(resource.Fatal, "start: %w (it would never be silenced)", err)
	case err != nil:
		return a.errorf(resource.Soft, "start: lease guard: %w", err)
	case left <= 0:
		return a.errorf(resource.Soft, "start: the lease guard does not allow %s (no lease)", vip)
	}
	link, err := a.net.link(a.iface)
	if err != nil {
		return a.linkError("start", err)
	}
	if !link.up {
		return a.errorf(resource.Hard, "start: interface %s is down", a.iface)
	}
	present, err := a.net.hasAddr(a.iface, vip)
	if err != nil {
		return a.errorf(resource.Soft, "start: %w", err)
	}
	if !present {
		if err := a.net.addAddr(a.iface, a.prefix); err != nil {
			return a.errorf(resource.Soft, "start: add %s: %w", a.prefix, err)
		}
		a.log.Info("vip added")
	}
	if err := a.net.awaitLocal(ctx, vip); err != nil {
		return a.errorf(resource.Soft, "start: %w", err)
	}
	if a.count == 0 {
		return nil
	}
	ann, err := a.net.announcer(a.iface, vip, link.mac)
	if err != nil {
		return a.errorf(resource.Soft, "start: announce: %w", err)
	}
	if err := ann.announce(); err != nil {
		ann.close()
		return a.errorf(resource.Soft, "start: announce: %w", err)
	}
	a.burst = a.startBurst(ann, a.count-1)
	return nil
}

// Stop revokes the guard's allowance (so the VIP is silent even if the
// address cannot be removed), stops the announcements and removes the
// address. A missing address or interface means already stopped.
func (a *Agent) Stop(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopBurst()
	vip := a.prefix.Addr()
	if err := a.guard.Revoke(vip); err != nil {
		a.log.Warn("vip: revoke failed; removing the address anyway", "err", err)
	}
	if err := ctx.Err(); err != nil {
		return a.errorf(resource.Soft, "stop: %w", err)
	}
	switch removed, err := a.net.delAddr(a.iface, vip); {
	case errors.Is(err, errNoLink):
	case err != nil:
		return a.errorf(resource.Soft, "stop: remove %s: %w", vip, err)
	case removed:
		a.log.Info("vip removed")
	}
	return nil
}

// Monitor: the address on an interface that is up is running; no address is
// cleanly stopped; a missing or down interface is a hard failure (restarting
// here cannot help, the group must move).
func (a *Agent) Monitor(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return a.errorf(resource.Soft, "monitor: %w", err)
	}
	link, err := a.net.link(a.iface)
	if err != nil {
		return a.linkError("monitor", err)
	}
	present, err := a.net.hasAddr(a.iface, a.prefix.Addr())
	switch {
	case err != nil:
		return a.errorf(resource.Soft, "monitor: %w", err)
	case !present:
		return resource.ErrNotRunning
	case !link.up:
		return a.errorf(resource.Hard, "monitor: interface %s is down", a.iface)
	case !link.carrier:
		return a.errorf(resource.Hard, "monitor: interface %s has no carrier", a.iface)
	}
	return nil
}

func (a *Agent) linkError(op string, err error) error {
	if errors.Is(err, errNoLink) {
		return a.errorf(resource.Hard, "%s: interface %s: %w", op, a.iface, err)
	}
	return a.errorf(resource.Soft, "%s: interface %s: %w", op, a.iface, err)
}

func (a *Agent) errorf(s resource.Severity, format string, args ...any) error {
	return resource.Failf(s, "vip: %s: "+format, append([]any{a.name}, args...)...)
}

// burst is the background part of one Start's announcements.
type burst struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startBurst sends n more announcements, interval apart. The ticker exists
// before Start returns, so a fake clock sees it at once.
func (a *Agent) startBurst(ann announcer, n int) *burst {
	ctx, cancel := context.WithCancel(context.Background())
	b := &burst{cancel: cancel, done: make(chan struct{})}
	if n == 0 {
		ann.close()
		close(b.done)
		return b
	}
	tick := a.clock.NewTicker(a.interval)
	go func() {
		defer close(b.done)
		defer tick.Stop()
		defer ann.close()
		for sent := 0; sent < n; sent++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C():
			}
			// Gratuitous ARP leaves through a packet socket, past the
			// guard's nftables rules: a node whose lease ran out (a stalled
			// manager that has not stopped us yet) must not keep pointing
			// the LAN at a VIP the kernel has silenced.
			if left, err := a.guard.Remaining(a.prefix.Addr()); err != nil || left <= 0 {
				a.log.Warn("vip: announcements stopped: the lease guard no longer allows the VIP", "sent", sent+1, "err", err)
				return
			}
			if err := ann.announce(); err != nil {
				a.log.Warn("vip: announcement failed", "n", sent+2, "err", err)
			}
		}
	}()
	return b
}

// stopBurst cancels the running burst and waits for it, so nothing is
// announced after Stop returns.
func (a *Agent) stopBurst() {
	if a.burst == nil {
		return
	}
	a.burst.cancel()
	<-a.burst.done
	a.burst = nil
}
