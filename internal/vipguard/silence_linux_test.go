package vipguard

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"tandem/internal/netutil"
)

// The tests below put a guarded VIP on node A of a lab and probe it from a
// client namespace C the way a LAN client would: TCP connect and ARP / NDP
// resolution. They show the kernel silencing the VIP when the allowance
// runs out with nobody refreshing it.

const (
	lease     = 300 * time.Millisecond
	probeWait = 100 * time.Millisecond // per-probe timeout; precision comes from probe start times
	// steadyWait is the per-probe timeout where every probe must be
	// answered: an answer ends a probe at once, and on a loaded machine the
	// reading thread can wake 100-200 ms late, which a 100 ms timeout took
	// for silence ("ndp failed 3 times while the VIP was being refreshed").
	steadyWait = time.Second
	vipPort    = 7100
)

type silenceLab struct {
	a, c  *netutil.Host
	guard *NFT
}

func newSilenceLab(t *testing.T) *silenceLab {
	t.Helper()
	needRoot(t)
	removeStale(t)
	lab, err := netutil.NewLab(fmt.Sprintf("%sl%d", netutil.UniquePrefix(testBase), nsSeq.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
	})
	a, err := lab.AddHost("a", netip.MustParsePrefix("10.77.0.1/24"), netip.MustParsePrefix("fd77::1/64"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := lab.AddHost("c", netip.MustParsePrefix("10.77.0.3/24"), netip.MustParsePrefix("fd77::3/64"))
	if err != nil {
		t.Fatal(err)
	}
	err = a.Do(func() error {
		link, err := netlink.LinkByName(netutil.HostLink)
		if err != nil {
			return err
		}
		for _, p := range []netip.Prefix{vip4, vip6} {
			if err := netlink.AddrAdd(link, netutil.NetlinkAddr(p)); err != nil {
				return err
			}
		}
		ln, err := net.Listen("tcp", fmt.Sprintf(":%d", vipPort))
		if err != nil {
			return err
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				conn.Close()
			}
		}()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	g := newGuard(t, a.NS)
	if err := g.Install([]netip.Prefix{vip4, vip6}); err != nil {
		t.Fatal(err)
	}
	return &silenceLab{a: a, c: c, guard: g}
}

// probes is what a LAN client can try against the VIPs, each giving up
// after probeWait; they run in the calling thread's namespace.
func probes(probeWait time.Duration) map[string]func() error {
	link := netutil.HostLink
	return map[string]func() error{
		"tcp4": func() error { return netutil.DialTCP(netip.AddrPortFrom(vip4.Addr(), vipPort), probeWait) },
		"tcp6": func() error { return netutil.DialTCP(netip.AddrPortFrom(vip6.Addr(), vipPort), probeWait) },
		"arp": func() error {
			_, err := netutil.ResolveARP(link, vip4.Addr(), probeWait)
			return err
		},
		"ndp": func() error {
			_, err := netutil.ResolveNDP(link, vip6.Addr(), probeWait)
			return err
		},
	}
}

// allAnswer checks that every probe succeeds from the client. A probe may
// try three times: one ARP or NDP exchange can be lost on a loaded machine
// (the reply arrives while the prober is not running and its socket
// buffer, or the request, is dropped), but a VIP that is allowed answers
// one of three, while a guarded one answers none.
func (l *silenceLab) allAnswer(t *testing.T) {
	t.Helper()
	err := l.c.Do(func() error {
		for name, probe := range probes(steadyWait) {
			var errs []error
			for try := 0; try < 3; try++ {
				err := probe()
				if err == nil {
					errs = nil
					break
				}
				errs = append(errs, err)
			}
			if len(errs) > 0 {
				return fmt.Errorf("%s while allowed, 3 tries: %w", name, errors.Join(errs...))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// outcome is one probe kind's view of the silence, from the probes' start
// times: when it last got an answer and when the failures that followed
// began. A probe that overran its timeout (wait) by far was starved of CPU
// (the machine is shared) and counts as neither.
type outcome struct {
	wait               time.Duration
	lastOK, onset      time.Time
	failures, overruns int
	failed             []span // each failed probe, from start to end
}

type span struct {
	from, to time.Time
	err      error
}

func (o *outcome) record(start time.Time, err error) (failed bool) {
	switch elapsed := time.Since(start); {
	case err == nil:
		o.lastOK, o.onset = start, time.Time{}
	case elapsed > o.wait+o.wait/2:
		o.overruns++
	default:
		if o.onset.IsZero() {
			o.onset = start
		}
		o.failures++
		o.failed = append(o.failed, span{start, start.Add(elapsed), err})
		return true
	}
	return false
}

// watch runs every probe kind in its own thread in the client namespace,
// back to back, each probe giving up after wait, until each has failed
// three times in a row or deadline.
func (l *silenceLab) watch(deadline time.Time, wait time.Duration) map[string]*outcome {
	var (
		out = map[string]*outcome{}
		wg  sync.WaitGroup
	)
	for name, probe := range probes(wait) {
		o := &outcome{wait: wait}
		out[name] = o
		wg.Go(func() {
			l.c.Do(func() error {
				for streak := 0; streak < 3 && time.Now().Before(deadline); {
					start := time.Now()
					if o.record(start, probe()) {
						streak++
					} else {
						streak = 0
					}
					time.Sleep(time.Millisecond)
				}
				return nil
			})
		})
	}
	wg.Wait()
	return out
}

// allowanceEnd is when the kernel's allowance can end: by latest, the
// until of the last AllowUntil that may have reached the kernel (the bound
// the guard promises), and not before earliest, what the last completed one
// surely gave. A late batch makes the guard issue a shorter element (on its
// last try, half the time left), so earliest is what the guard recorded as
// surely present, not until less a fixed slack.
type allowanceEnd struct{ earliest, latest time.Time }

// surelyPresent is until when g's last allowances of every VIP in vips
// surely exist in the kernel.
func surelyPresent(g *NFT, vips ...netip.Addr) time.Time {
	var at time.Time
	for i, v := range vips {
		if p := g.present[v]; i == 0 || p.Before(at) {
			at = p
		}
	}
	return at
}

// checkSilence asserts that every probe kind was answered until about the
// allowance's end and never after: the VIP went silent between the last
// answered probe and the first unanswered one. A window wider than a few
// milliseconds means the probes were starved of CPU; that is logged, not
// failed, as long as the window overlaps the allowance's end. Times are
// shown from the last refresh (one lease before the end).
func checkSilence(t *testing.T, end allowanceEnd, out map[string]*outcome) {
	t.Helper()
	// late: the kernel checks expiry against jiffies, up to a tick (10 ms at
	// HZ=100) coarse. early: the guard's own round-trip slack is already in
	// end.earliest; this is for the probes' timing.
	const early, late = 50 * time.Millisecond, 10 * time.Millisecond
	refresh := end.latest.Add(-lease)
	// A probe that times out because its thread woke late looks like
	// silence; when any probe kind shows starvation (a wide window or an
	// overrun) an early silence is logged, not failed. An answer is never
	// spurious: answering past the end always fails.
	starved := false
	for _, o := range out {
		starved = starved || o.overruns > 0 || (!o.onset.IsZero() && o.onset.Sub(o.lastOK) > 30*time.Millisecond)
	}
	for name, o := range out {
		if o.onset.IsZero() {
			if o.overruns > 0 && !o.lastOK.After(end.latest.Add(late)) {
				// Every probe after the lease end overran: the machine was
				// too busy to tell silence from slowness, but nothing
				// answered after the lease, which is the property.
				t.Logf("%s: no answer after %v, but every later probe was starved (%d); silence not timed",
					name, o.lastOK.Sub(refresh), o.overruns)
				continue
			}
			t.Errorf("%s: VIP never went silent", name)
			continue
		}
		from, to := o.lastOK.Sub(refresh), o.onset.Sub(refresh)
		t.Logf("%s: silent between %v and %v after the last refresh (allowance ends %v–%v; %d starved probes)",
			name, from.Round(10*time.Microsecond), to.Round(10*time.Microsecond),
			end.earliest.Sub(refresh).Round(10*time.Microsecond), lease, o.overruns)
		if o.lastOK.After(end.latest.Add(late)) {
			t.Errorf("%s: answered %v after the last refresh, past the allowance's end at %v", name, from, lease)
		}
		if o.onset.Before(end.earliest.Add(-early)) {
			if starved {
				t.Logf("%s: silent %v after the last refresh, before the allowance ended (%v), while probes were starved: not timed", name, to, end.earliest.Sub(refresh))
			} else {
				t.Errorf("%s: silent %v after the last refresh, before the allowance ended (%v)", name, to, end.earliest.Sub(refresh))
			}
		}
		if to-from > 30*time.Millisecond {
			t.Logf("%s: window %v wide: probes were starved of CPU", name, to-from)
		}
	}
}

// TestVIPGoesSilentWhenNobodyRefreshes: the frozen agent in its simplest
// form — one Allow, then nothing.
func TestVIPGoesSilentWhenNobodyRefreshes(t *testing.T) {
	l := newSilenceLab(t)
	// Unguarded state first: the sets exist but nothing is allowed, so the
	// VIP is silent from the start.
	// (Asked with raw ARP: a TCP probe would leave the client's neighbour
	// entry incomplete, delaying the next probes by the ARP retry time.)
	if _, err := l.c.ResolveARP(netutil.HostLink, vip4.Addr(), 50*time.Millisecond); err == nil {
		t.Fatal("VIP answered ARP before any Allow")
	}
	if _, err := l.c.ResolveNDP(netutil.HostLink, vip6.Addr(), 50*time.Millisecond); err == nil {
		t.Fatal("VIP answered NDP before any Allow")
	}
	for _, v := range []netip.Addr{vip4.Addr(), vip6.Addr()} {
		if err := l.guard.Allow(v, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	l.allAnswer(t)
	// One until for both: Allow(v, lease) one after the other would give
	// the second VIP a later end by the first one's round trip.
	refresh := time.Now()
	until := refresh.Add(lease)
	for _, v := range []netip.Addr{vip4.Addr(), vip6.Addr()} {
		if err := l.guard.AllowUntil(v, until); err != nil {
			t.Fatal(err)
		}
	}
	end := allowanceEnd{earliest: surelyPresent(l.guard, vip4.Addr(), vip6.Addr()), latest: until}
	checkSilence(t, end, l.watch(refresh.Add(3*lease), probeWait))
	// The drops were the guard's: each probe kind hit its rule's counter.
	ruleset := nft(t, l.a.NS, "list", "ruleset")
	for _, rule := range []string{
		"ip daddr @vips4 ip daddr != @allowed4 counter packets ",
		"ip6 daddr @vips6 ip6 daddr != @allowed6 counter packets ",
		"icmpv6 type nd-neighbor-solicit @th,64,128 @vips6 @th,64,128 != @allowed6 counter packets ",
		"arp operation request arp daddr ip @vips4 arp daddr ip != @allowed4 counter packets ",
	} {
		i := strings.Index(ruleset, rule)
		if i < 0 || strings.HasPrefix(ruleset[i+len(rule):], "0 ") {
			t.Errorf("rule %q dropped nothing", rule)
		}
	}
	if t.Failed() {
		t.Log(ruleset)
	}
}

// TestVIPGoesSilentWhenRefresherIsFrozen: a real process refreshes every
// 50 ms and is then SIGSTOPped (or SIGKILLed); the kernel must silence the
// VIP one lease after its last refresh.
func TestVIPGoesSilentWhenRefresherIsFrozen(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGSTOP, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			l := newSilenceLab(t)
			r := startRefresher(t, l.a.NS)
			r.waitRefreshes(t, 5)
			l.allAnswer(t)
			// Longer than a lease of steady answers proves the refresher,
			// not the first allowance, keeps the VIP up. A failure counts
			// only while the refresher's confirmed allowances covered the
			// whole probe: a refresher starved of CPU (it runs at normal
			// priority beside whatever loads the machine) lets the VIP go
			// silent, which is the guard doing its job.
			for name, o := range l.watch(time.Now().Add(2*lease), steadyWait) {
				for _, f := range o.failed {
					if r.covered(f.from, f.to) {
						t.Errorf("%s failed at %v while the VIP was surely allowed: %v", name, f.from.Format("15:04:05.000"), f.err)
					} else {
						t.Logf("%s failed at %v: the refresher was late, the allowance may have lapsed: %v", name, f.from.Format("15:04:05.000"), f.err)
					}
				}
			}
			if t.Failed() {
				t.FailNow()
			}
			if err := r.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			stopped := time.Now()
			out := l.watch(stopped.Add(3*lease), probeWait)
			end := r.allowanceEnd()
			t.Logf("%v %v after the last refresh", sig, stopped.Sub(end.latest.Add(-lease)).Round(time.Microsecond))
			checkSilence(t, end, out)
		})
	}
}

// refresher is a child process (this test binary) refreshing the lease.
type refresher struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	end     allowanceEnd
	n       int
	allowed []span // from each refresh's acknowledgement to its earliest end
}

const refresherEnv = "TANDEM_VIPGUARD_REFRESHER"

func startRefresher(t *testing.T, ns *netutil.NS) *refresher {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, exe, "-test.run=^TestRefresherChild$")
	cmd.Env = append(os.Environ(), refresherEnv+"="+ns.Path())
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &refresher{cmd: cmd}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			// "allowing UNTIL" before each refresh, "refreshed PRESENT
			// ACK" after it: a signal between the two leaves the allowance
			// ending no later than UNTIL, and from ACK to PRESENT the VIP
			// was surely allowed. ("late" instead of "refreshed": the guard
			// revoked, its batches too slow.)
			f := strings.Fields(sc.Text())
			if len(f) < 2 {
				continue
			}
			until, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				continue
			}
			r.mu.Lock()
			switch {
			case f[0] == "allowing":
				// Until this refresh is confirmed it may revoke (IsLate):
				// the allowance may end as soon as the call began.
				r.end.latest = time.Unix(0, until)
				if began := r.end.latest.Add(-lease); began.Before(r.end.earliest) {
					r.end.earliest = began
				}
			case f[0] == "refreshed" && len(f) == 3:
				ack, _ := strconv.ParseInt(f[2], 10, 64)
				r.end.earliest = time.Unix(0, until) // PRESENT
				r.allowed = append(r.allowed, span{from: time.Unix(0, ack), to: r.end.earliest})
				r.n++
			}
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel() // SIGKILL, which also ends a stopped process
		cmd.Wait()
		<-done
	})
	return r
}

func (r *refresher) waitRefreshes(t *testing.T, n int) {
	t.Helper()
	// Generous: starting the child (a Go test binary that opens netlink in
	// the namespace) took over 5 s on a machine loaded past its cores.
	const wait = 30 * time.Second
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		got := r.n
		r.mu.Unlock()
		if got >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("refresher made fewer than %d refreshes in %v", n, wait)
}

// covered reports whether the refresher's confirmed allowances covered all
// of [from, to] without a gap.
func (r *refresher) covered(from, to time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for reached := from; ; {
		next := reached
		for _, a := range r.allowed { // in the order they were made
			if !a.from.After(reached) && a.to.After(next) {
				next = a.to
			}
		}
		if !next.Before(to) {
			return true
		}
		if !next.After(reached) {
			return false
		}
		reached = next
	}
}

func (r *refresher) allowanceEnd() allowanceEnd {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.end
}

// TestRefresherChild is the refresher process, not a test: it runs only
// when startRefresher sets its environment variable. It announces each
// allowance's end before asking for it and confirms it after (see
// startRefresher).
func TestRefresherChild(t *testing.T) {
	nsPath := os.Getenv(refresherEnv)
	if nsPath == "" {
		t.Skip("helper process for TestVIPGoesSilentWhenRefresherIsFrozen")
	}
	g, err := NewNFT(Options{NetNS: nsPath})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Install([]netip.Prefix{vip4, vip6}); err != nil {
		t.Fatal(err)
	}
	for {
		until := time.Now().Add(lease)
		fmt.Printf("allowing %d\n", until.UnixNano())
		late := false
		for _, v := range []netip.Addr{vip4.Addr(), vip6.Addr()} {
			err := g.AllowUntil(v, until)
			if IsLate(err) {
				late = true // revoked: the next refresh allows again
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if late {
			fmt.Printf("late %d\n", until.UnixNano())
		} else {
			fmt.Printf("refreshed %d %d\n", surelyPresent(g, vip4.Addr(), vip6.Addr()).UnixNano(), time.Now().UnixNano())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Dropped counts, per VIP, the clients the guard turned away: none while
// allowed; after a revoke, a client whose ARP cache still points at the
// node sends its SYN anyway, and the guard drops and counts it.
func TestDroppedCountsTurnedAwayClients(t *testing.T) {
	l := newSilenceLab(t)
	if err := l.guard.AllowUntil(vip4.Addr(), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := l.guard.AllowUntil(vip6.Addr(), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	l.allAnswer(t)
	for _, v := range []netip.Prefix{vip4, vip6} {
		if n, err := l.guard.Dropped(v.Addr()); err != nil || n != 0 {
			t.Fatalf("%s dropped %d while allowed (%v)", v.Addr(), n, err)
		}
	}
	for _, v := range []netip.Prefix{vip4, vip6} {
		if err := l.guard.Revoke(v.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	l.c.Do(func() error {
		netutil.DialTCP(netip.AddrPortFrom(vip4.Addr(), vipPort), 300*time.Millisecond)
		netutil.DialTCP(netip.AddrPortFrom(vip6.Addr(), vipPort), 300*time.Millisecond)
		return nil
	})
	for _, v := range []netip.Prefix{vip4, vip6} {
		if n, err := l.guard.Dropped(v.Addr()); err != nil || n == 0 {
			t.Errorf("%s: %d dropped after a revoke and a connection attempt (%v)", v.Addr(), n, err)
		}
	}
	if _, err := l.guard.Dropped(netip.MustParseAddr("10.77.0.99")); !IsNotGuarded(err) {
		t.Errorf("an unguarded address: %v", err)
	}
}
