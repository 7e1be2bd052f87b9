package vipguard

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tandem/internal/netutil"
)

// testBase prefixes every namespace these tests create (see netutil.RemoveStale).
const testBase = "tvipg"

var nsSeq atomic.Int32

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("vipguard: needs root (network namespaces, nftables); skipped")
	}
}

func removeStale(t testing.TB) {
	t.Helper()
	removed, err := netutil.RemoveStale(testBase)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) > 0 {
		t.Logf("removed stale namespaces %v", removed)
	}
}

// newNS returns a fresh namespace deleted at cleanup.
func newNS(t testing.TB) *netutil.NS {
	t.Helper()
	needRoot(t)
	removeStale(t)
	ns, err := netutil.NewNS(fmt.Sprintf("%s-n%d", netutil.UniquePrefix(testBase), nsSeq.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Delete(); err != nil {
			t.Error(err)
		}
	})
	return ns
}

// newGuard returns a guard on ns, closed at cleanup.
func newGuard(t testing.TB, ns *netutil.NS) *NFT {
	t.Helper()
	g, err := NewNFT(Options{NetNS: ns.Path()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

func nft(t testing.TB, ns *netutil.NS, args ...string) string {
	t.Helper()
	out, err := ns.Command(t.Context(), "nft", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %v: %v: %s", args, err, out)
	}
	return string(out)
}

var (
	vip4 = netip.MustParsePrefix("10.77.0.100/24")
	vip6 = netip.MustParsePrefix("fd77::100/64")
)

func TestInstallIsIdempotentAndKeepsAllowances(t *testing.T) {
	ns := newNS(t)
	g := newGuard(t, ns)
	if err := g.Install([]netip.Prefix{vip4, vip6}); err != nil {
		t.Fatal(err)
	}
	first := nft(t, ns, "list", "ruleset")
	for _, want := range []string{
		"table inet tandem", "table arp tandem",
		"ip daddr @vips4 ip daddr != @allowed4 counter packets 0 bytes 0 drop",
		"ip6 saddr @vips6 ip6 saddr != @allowed6",
		"hook input priority raw", "hook output priority raw",
		"10.77.0.100", "fd77::100",
	} {
		if !strings.Contains(first, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, first)
		}
	}
	t.Logf("ruleset:\n%s", first)
	asked := time.Now()
	if err := g.Allow(vip4.Addr(), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := g.Install([]netip.Prefix{vip4, vip6}); err != nil {
		t.Fatal(err)
	}
	if got := nft(t, ns, "list", "chain", "inet", "tandem", "input"); strings.Count(got, "drop") != 3 {
		t.Errorf("rules duplicated by a second Install:\n%s", got)
	}
	if left, err := g.Remaining(vip4.Addr()); err != nil || left < atLeast(time.Minute, time.Since(asked)) {
		t.Errorf("allowance lost by Install: %v %v", left, err)
	}
	// A new VIP list replaces the guarded set.
	other := netip.MustParsePrefix("10.77.0.101/24")
	if err := g.Install([]netip.Prefix{other}); err != nil {
		t.Fatal(err)
	}
	got := nft(t, ns, "list", "set", "inet", "tandem", "vips4")
	if !strings.Contains(got, "10.77.0.101") || strings.Contains(got, "10.77.0.100") {
		t.Errorf("vips4 after re-install:\n%s", got)
	}
	if err := g.Allow(vip4.Addr(), time.Second); !IsNotGuarded(err) {
		t.Errorf("Allow of an unguarded VIP: %v", err)
	}
}

func TestElementExpiresOnTime(t *testing.T) {
	ns := newNS(t)
	g := newGuard(t, ns)
	if err := g.Install([]netip.Prefix{vip4, vip6}); err != nil {
		t.Fatal(err)
	}
	for _, vip := range []netip.Addr{vip4.Addr(), vip6.Addr()} {
		// The reference is the element's own countdown as the kernel
		// reports it right after the Allow (on a loaded machine the guard
		// may have issued a shorter element than asked: late batches): it
		// ends between expLo and expHi, as the kernel counted at some
		// point of that call.
		if err := g.Allow(vip, 400*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		before := time.Now()
		timeout, err := g.Remaining(vip)
		if err != nil || timeout == 0 {
			t.Fatalf("%s: nothing allowed after Allow: %v", vip, err)
		}
		expLo, expHi := before.Add(timeout), time.Now().Add(timeout)
		// It expired after the last reading that saw it began (seen) and
		// before the first that did not ended (gone); a poller starved of
		// CPU widens that window, and only a window wholly outside the
		// expected end ±50 ms fails.
		var seen time.Time
		for {
			asked := time.Now()
			left, err := g.Remaining(vip)
			if err != nil {
				t.Fatal(err)
			}
			if left == 0 {
				break
			}
			seen = asked
			if seen.After(expHi.Add(timeout)) {
				t.Fatalf("%s still allowed %v after the element's end", vip, seen.Sub(expHi))
			}
			time.Sleep(2 * time.Millisecond)
		}
		gone := time.Now()
		t.Logf("%s: %v element expired between %v and %v after the reading", vip, timeout, seen.Sub(before), gone.Sub(before))
		if gone.Before(expLo.Add(-50*time.Millisecond)) || seen.After(expHi.Add(50*time.Millisecond)) {
			t.Errorf("%s: expired between %v and %v, want %v±50ms", vip, seen.Sub(before), gone.Sub(before), timeout)
		}
	}
}

func TestAllowShortensAndExtends(t *testing.T) {
	ns := newNS(t)
	g := newGuard(t, ns)
	if err := g.Install([]netip.Prefix{vip4, vip6}); err != nil {
		t.Fatal(err)
	}
	var took4 time.Duration // of the last Allow of vip4
	for _, vip := range []netip.Addr{vip4.Addr(), vip6.Addr()} {
		for _, d := range []time.Duration{10 * time.Second, time.Second, 5 * time.Second} {
			asked := time.Now()
			if err := g.Allow(vip, d); err != nil {
				t.Fatal(err)
			}
			if vip.Is4() {
				took4 = time.Since(asked)
			}
			left, err := g.Remaining(vip)
			if err != nil {
				t.Fatal(err)
			}
			if left > d || left < atLeast(d, time.Since(asked)) {
				t.Errorf("%s: Allow(%v) left %v (%v after the call)", vip, d, left, time.Since(asked))
			}
		}
	}
	// The arp table follows the inet one.
	checkTimeout(t, nft(t, ns, "list", "set", "arp", "tandem", "allowed4"), "10.77.0.100", 5*time.Second, took4)
}

func TestRevoke(t *testing.T) {
	ns := newNS(t)
	// Revoking before anything is installed (a restarted agent) succeeds.
	if err := newGuard(t, ns).Revoke(vip4.Addr()); err != nil {
		t.Fatalf("revoke without tables: %v", err)
	}
	g := newGuard(t, ns)
	if err := g.Install([]netip.Prefix{vip4, vip6}); err != nil {
		t.Fatal(err)
	}
	for _, vip := range []netip.Addr{vip4.Addr(), vip6.Addr()} {
		if err := g.Allow(vip, time.Minute); err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second revoke finds nothing, and succeeds
			if err := g.Revoke(vip); err != nil {
				t.Fatal(err)
			}
			if left, err := g.Remaining(vip); err != nil || left != 0 {
				t.Errorf("%s after revoke: %v %v", vip, left, err)
			}
		}
		if err := g.Allow(vip, 0); err != nil { // no time left revokes too
			t.Fatal(err)
		}
	}
	if got := nft(t, ns, "list", "set", "arp", "tandem", "allowed4"); strings.Contains(got, "10.77.0.100") {
		t.Errorf("arp allowed4 after revoke:\n%s", got)
	}
}

func TestCloseRemovesTables(t *testing.T) {
	ns := newNS(t)
	g, err := NewNFT(Options{NetNS: ns.Path()})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Install([]netip.Prefix{vip4}); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if got := nft(t, ns, "list", "tables"); strings.TrimSpace(got) != "" {
		t.Errorf("tables left after Close: %s", got)
	}
	// Closing a guard that installed nothing succeeds.
	g2, err := NewNFT(Options{NetNS: ns.Path()})
	if err != nil {
		t.Fatal(err)
	}
	if err := g2.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRefreshCost measures Allow (the per-heartbeat refresh) against the
// baseline it replaces: running the nft CLI for the same change.
func TestRefreshCost(t *testing.T) {
	ns := newNS(t)
	g := newGuard(t, ns)
	if err := g.Install([]netip.Prefix{vip4, vip6}); err != nil {
		t.Fatal(err)
	}
	measure := func(n int, f func() error) []time.Duration {
		var ds []time.Duration
		for range n {
			start := time.Now()
			if err := f(); err != nil {
				t.Fatal(err)
			}
			ds = append(ds, time.Since(start))
		}
		slices.Sort(ds)
		return ds
	}
	// Long allowances: a batch stalled by a loaded machine is then issued
	// again rather than revoked (a 277 ms round trip made Allow(300 ms)
	// revoke, correctly, and fail this test of cost).
	v4 := measure(500, func() error { return g.Allow(vip4.Addr(), 10*time.Second) })
	v6 := measure(500, func() error { return g.Allow(vip6.Addr(), 10*time.Second) })
	cli := measure(10, func() error {
		return exec.Command("ip", "netns", "exec", ns.Name, "nft", "add", "element", "inet", "tandem", "allowed4",
			"{ 10.77.0.100 timeout 300ms }").Run()
	})
	med := func(ds []time.Duration) time.Duration { return ds[len(ds)/2] }
	p99 := func(ds []time.Duration) time.Duration { return ds[len(ds)*99/100] }
	t.Logf("Allow IPv4 (inet+arp, 4 messages, 1 batch): median %v p99 %v", med(v4), p99(v4))
	t.Logf("Allow IPv6 (inet, 2 messages, 1 batch): median %v p99 %v", med(v6), p99(v6))
	t.Logf("baseline nft CLI via ip netns exec: median %v; Allow IPv4 costs %.4f of it",
		med(cli), float64(med(v4))/float64(med(cli)))
	if med(v4) > 5*time.Millisecond {
		t.Errorf("Allow median %v: too slow for a 50 ms heartbeat", med(v4))
	}
}

func TestAllowReinstallsAfterARulesetFlush(t *testing.T) {
	ns := newNS(t)
	g := newGuard(t, ns)
	if err := g.Install([]netip.Prefix{vip4, vip6}); err != nil {
		t.Fatal(err)
	}
	nft(t, ns, "flush", "ruleset") // what a firewall reload does
	asked := time.Now()
	if err := g.Allow(vip4.Addr(), time.Minute); err != nil {
		t.Fatal(err)
	}
	took := time.Since(asked)
	got := nft(t, ns, "list", "ruleset")
	checkTimeout(t, got, "10.77.0.100", time.Minute, took)
	for _, want := range []string{"table arp tandem", "fd77::100", "chain output"} {
		if !strings.Contains(got, want) {
			t.Errorf("after flush and Allow the ruleset lacks %q:\n%s", want, got)
		}
	}
}

// TestAllowAfterTheElementVanished: a refresh skips the first add while
// its previous allowance is in force; if someone removed the element
// meanwhile, the delete fails and Allow must still end up allowing.
func TestAllowAfterTheElementVanished(t *testing.T) {
	ns := newNS(t)
	g := newGuard(t, ns)
	if err := g.Install([]netip.Prefix{vip4, vip6}); err != nil {
		t.Fatal(err)
	}
	if err := g.Allow(vip4.Addr(), time.Minute); err != nil {
		t.Fatal(err)
	}
	nft(t, ns, "delete", "element", "inet", "tandem", "allowed4", "{ 10.77.0.100 }")
	asked := time.Now()
	if err := g.Allow(vip4.Addr(), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	took := time.Since(asked)
	left, err := g.Remaining(vip4.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if left < atLeast(30*time.Second, time.Since(asked)) || left > 30*time.Second {
		t.Errorf("after the element vanished, Allow(30s) left %v", left)
	}
	checkTimeout(t, nft(t, ns, "list", "set", "arp", "tandem", "allowed4"), "10.77.0.100", 30*time.Second, took)
}

// atLeast is the least an allowance of asked can be when the call (and
// any reading after it) took took. A late first batch is issued again with
// room for twice its round trip or an eighth of the time left, whichever
// is more, after up to took has passed, less the slack of earlier calls
// (maxSlack); the kernel rounds to jiffies and the reading may come took
// later; 5 ms for the rest. When three batches in a row were late, the
// last leaves half the time left.
func atLeast(asked, took time.Duration) time.Duration {
	two := asked - took - max(2*took, asked/8) - maxSlack - 2*jiffy - 5*time.Millisecond
	if took < 3*batchSlack {
		return two // not three late batches
	}
	return min(two, (asked-took)/2-took-2*jiffy-5*time.Millisecond)
}

// checkTimeout checks that the nft listing has an element key whose
// timeout is at most asked (the guard takes the netlink round trip off it)
// and not far below, for a call that took took.
func checkTimeout(t *testing.T, listing, key string, asked, took time.Duration) {
	t.Helper()
	m := regexp.MustCompile(regexp.QuoteMeta(key) + ` timeout (\w+)`).FindStringSubmatch(listing)
	if m == nil {
		t.Errorf("no %s element with a timeout:\n%s", key, listing)
		return
	}
	got, err := time.ParseDuration(m[1]) // nft writes 1m, 29s992ms
	if err != nil || got > asked || got < atLeast(asked, took) {
		t.Errorf("%s timeout %s (%v), want at most %v and at least %v:\n%s", key, m[1], err, asked, atLeast(asked, took), listing)
	}
}

// kernelEnd reads when the kernel will silence vip, from its own countdown:
// no earlier than lo and no later than hi (the kernel counted at some point
// of the netlink call), each good to a jiffy (the countdown ticks in
// jiffies). Zero when nothing is allowed.
func kernelEnd(t *testing.T, g *NFT, vip netip.Addr) (lo, hi time.Time) {
	t.Helper()
	before := time.Now()
	left, err := g.Remaining(vip)
	if err != nil {
		t.Fatal(err)
	}
	if left == 0 {
		return time.Time{}, time.Time{}
	}
	return before.Add(left), time.Now().Add(left)
}

// jiffy is the coarsest kernel tick (HZ=100): the kernel's countdown and our
// reading of it are each good to one.
const jiffy = 10 * time.Millisecond

// TestAllowUntilEndsByUntilWhenTheBatchIsLate: an agent descheduled between
// choosing the element's timeout and sending the batch (stalled here for
// 40 ms) used to leave an element that outlived the lease by the stall:
// the kernel counts the timeout from when the batch lands. AllowUntil
// sees the late acknowledgement and issues a shorter element.
func TestAllowUntilEndsByUntilWhenTheBatchIsLate(t *testing.T) {
	ns := newNS(t)
	g := newGuard(t, ns)
	if err := g.Install([]netip.Prefix{vip4, vip6}); err != nil {
		t.Fatal(err)
	}
	const stall = 40 * time.Millisecond
	for _, vip := range []netip.Addr{vip4.Addr(), vip6.Addr()} {
		stalls := 0
		g.beforeSend = func() {
			if stalls == 0 {
				time.Sleep(stall)
			}
			stalls++
		}
		until := time.Now().Add(300 * time.Millisecond)
		if err := g.AllowUntil(vip, until); err != nil {
			t.Fatal(err)
		}
		g.beforeSend = nil
		lo, hi := kernelEnd(t, g, vip)
		t.Logf("%s: %d batches; kernel ends the allowance %v–%v before until", vip, stalls, until.Sub(hi), until.Sub(lo))
		if lo.IsZero() {
			t.Fatalf("%s: AllowUntil left nothing allowed", vip)
		}
		if lo.After(until.Add(jiffy)) {
			t.Errorf("%s: the kernel allows it until %v after the lease", vip, lo.Sub(until))
		}
		if hi.Before(until.Add(-2*stall - 50*time.Millisecond)) {
			t.Errorf("%s: allowance cut %v short", vip, until.Sub(hi))
		}
		if stalls < 2 {
			t.Errorf("%s: a batch acknowledged %v late was not issued again", vip, stall)
		}
		// One late batch must not shorten every later allowance by as
		// much: the slack it leaves is capped (TestNextSlack has the decay).
		if g.slack > maxSlack {
			t.Errorf("slack %v after a %v stall, cap %v", g.slack, stall, maxSlack)
		}
		asked := time.Now()
		if err := g.AllowUntil(vip, asked.Add(maxSlack+40*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if left, _ := g.Remaining(vip); left == 0 && time.Since(asked) < maxSlack+30*time.Millisecond {
			t.Errorf("%s: an allowance of %v was revoked", vip, maxSlack+40*time.Millisecond)
		}
	}
}

// TestAllowUntilRevokesWhenEveryBatchIsLate: when no batch can land in time
// the VIP is silenced and the caller told.
func TestAllowUntilRevokesWhenEveryBatchIsLate(t *testing.T) {
	ns := newNS(t)
	g := newGuard(t, ns)
	if err := g.Install([]netip.Prefix{vip4}); err != nil {
		t.Fatal(err)
	}
	if err := g.Allow(vip4.Addr(), time.Minute); err != nil {
		t.Fatal(err)
	}
	// The first batch is held past the end it was for: whatever the load,
	// no second try fits in.
	g.beforeSend = func() { time.Sleep(120 * time.Millisecond) }
	err := g.AllowUntil(vip4.Addr(), time.Now().Add(100*time.Millisecond))
	g.beforeSend = nil
	t.Logf("AllowUntil: %v", err)
	if !IsLate(err) {
		t.Errorf("AllowUntil with every batch late: %v, want IsLate", err)
	}
	if left, err := g.Remaining(vip4.Addr()); err != nil || left != 0 {
		t.Errorf("after late batches the VIP is still allowed for %v (%v)", left, err)
	}
}

// TestAllowUntilBound: without stalls, AllowUntil ends the allowance at
// until to within the kernel's tick, for a range of lengths, and needs no
// install for a revoke.
func TestAllowUntilBound(t *testing.T) {
	ns := newNS(t)
	g := newGuard(t, ns)
	if err := g.AllowUntil(vip4.Addr(), time.Now()); err != nil {
		t.Fatalf("AllowUntil(now) revokes, even before Install: %v", err)
	}
	if err := g.Install([]netip.Prefix{vip4}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []time.Duration{time.Second, 180 * time.Millisecond, 5 * time.Millisecond, 10 * time.Second} {
		slack, asked := g.slack, time.Now()
		until := asked.Add(d)
		if err := g.AllowUntil(vip4.Addr(), until); IsLate(err) {
			t.Logf("AllowUntil(+%v): %v (a loaded machine; revoking is right)", d, err)
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		// The first batch leaves room for the slack a late batch left
		// before; a late batch is issued again, shorter (see atLeast).
		took := time.Since(asked)
		lo, hi := kernelEnd(t, g, vip4.Addr())
		if lo.IsZero() {
			if d >= 100*time.Millisecond && time.Now().Before(until.Add(-jiffy)) {
				t.Errorf("AllowUntil(+%v): nothing allowed", d)
			}
			continue
		}
		if lo.After(until.Add(jiffy)) {
			t.Errorf("AllowUntil(+%v): kernel allows until %v past it", d, lo.Sub(until))
		}
		if d >= 100*time.Millisecond && hi.Before(asked.Add(atLeast(d, took)-slack)) {
			t.Errorf("AllowUntil(+%v): ends %v early (the call took %v, slack %v)", d, until.Sub(hi), took, slack)
		}
	}
}
