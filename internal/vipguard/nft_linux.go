package vipguard

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// DefaultTable is the name of the inet and arp tables the guard owns.
const DefaultTable = "tandem"

// Options configure an NFT guard.
type Options struct {
	// Table names our inet and arp tables; DefaultTable when empty.
	Table string
	// NetNS is the path of a network namespace file (e.g. /run/netns/x) to
	// guard instead of the caller's own; tests use it.
	NetNS string
}

// NFT is the Linux Guard: an inet table and an arp table, each with a set of
// guarded VIPs and a set of allowed VIPs whose elements time out.
type NFT struct {
	mu       sync.Mutex // one batch at a time on conn
	conn     *nftables.Conn
	nsFile   *os.File
	connOpts []nftables.ConnOption
	rs       *ruleset
	guarded  map[netip.Addr]bool
	// present holds, per VIP, until when the elements of our last Allow
	// surely exist: the kernel starts their countdown after the batch was
	// sent, never before, less tickSlack. Until then a refresh needs no
	// first add.
	present map[netip.Addr]time.Time
	// slack is taken off the first element's timeout of an AllowUntil for
	// the netlink round trip: batchSlack, raised to the round trip of a late
	// batch (at most maxSlack) and decaying back, so a loaded host does not
	// pay two batches on every refresh. The cap keeps one very late batch
	// from shortening every later allowance by as much.
	slack time.Duration
	// beforeSend, when set, runs after an allowance batch is built and
	// before it is sent: tests stall there, as a descheduled agent would.
	beforeSend func()
}

var _ Guard = (*NFT)(nil)

// NewNFT opens a lasting netlink connection (Allow runs every heartbeat, so
// it must not pay for a new socket each time). Nothing is installed yet.
func NewNFT(o Options) (*NFT, error) {
	if o.Table == "" {
		o.Table = DefaultTable
	}
	g := &NFT{rs: newRuleset(o.Table), guarded: map[netip.Addr]bool{}, present: map[netip.Addr]time.Time{}, slack: batchSlack}
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if o.NetNS != "" {
		f, err := os.Open(o.NetNS)
		if err != nil {
			return nil, fmt.Errorf("vipguard: %w", err)
		}
		g.nsFile = f
		opts = append(opts, nftables.WithNetNSFd(int(f.Fd())))
	}
	g.connOpts = opts
	conn, err := nftables.New(opts...)
	if err != nil {
		g.closeNS()
		return nil, fmt.Errorf("vipguard: netlink: %w", err)
	}
	g.conn = conn
	return g, nil
}

// Install creates or updates both tables in one atomic batch. The guarded
// sets and the chains are rewritten; the allowed sets are kept.
func (g *NFT) Install(vips []netip.Prefix) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.installLocked(addrs(vips))
}

func (g *NFT) installLocked(want map[netip.Addr]bool) error {
	var v4, v6 []nftables.SetElement
	for a := range want {
		if a.Is4() {
			v4 = append(v4, nftables.SetElement{Key: a.AsSlice()})
		} else {
			v6 = append(v6, nftables.SetElement{Key: a.AsSlice()})
		}
	}
	r, c := g.rs, g.conn
	c.AddTable(r.inet)
	c.AddTable(r.arp)
	for _, s := range []*nftables.Set{r.vips4, r.vips6, r.allowed4, r.allowed6, r.arpVIPs, r.arpAllowed} {
		if err := c.AddSet(s, nil); err != nil {
			return g.abort(fmt.Errorf("vipguard: install: set %s: %w", s.Name, err))
		}
	}
	fill := map[*nftables.Set][]nftables.SetElement{r.vips4: v4, r.vips6: v6, r.arpVIPs: v4}
	for s, elems := range fill {
		c.FlushSet(s)
		if len(elems) == 0 {
			continue
		}
		if err := c.SetAddElements(s, elems); err != nil {
			return g.abort(fmt.Errorf("vipguard: install: set %s: %w", s.Name, err))
		}
	}
	for chain, rules := range r.rules() {
		c.AddChain(chain)
		c.FlushChain(chain)
		if chain == r.inetIn {
			for _, rule := range r.countRules(want) { // before the drops they count
				c.AddRule(rule)
			}
		}
		for _, exprs := range rules {
			c.AddRule(&nftables.Rule{Table: chain.Table, Chain: chain, Exprs: exprs})
		}
	}
	if err := g.flush(); err != nil {
		return fmt.Errorf("vipguard: install: %w", err)
	}
	g.guarded = want
	return nil
}

// Allow is AllowUntil(vip, now+remaining).
func (g *NFT) Allow(vip netip.Addr, remaining time.Duration) error {
	return g.AllowUntil(vip, time.Now().Add(remaining))
}

// AllowUntil refreshes vip's elements in one batch so that the kernel
// silences vip at until at the latest (see "The bound" in the package doc).
// Each allowed set gets a delete and an add with the new timeout, preceded
// by an add (so the delete cannot fail) unless our previous allowance is
// surely still in force. The kernel applies a batch atomically, so the VIP
// never blinks, and this shortens or extends the element on every kernel.
// (Re-adding alone updates the timeout only on recent kernels, and on 6.18
// not when the timeout is unchanged, so it is not relied on.)
//
// The element's timeout is chosen before the batch is sent, but the kernel
// starts counting it when it applies the batch, some time before the
// acknowledgement. So the element ends by ack+timeout, and when that is
// after until (the batch or our reading of the ack was late: a loaded
// machine), the element is issued again, shorter, from the new clock
// reading, leaving room for a round trip twice as slow (the last try: half
// the time left); after lateAttempts late batches vip is revoked and the
// error says so (IsLate).
func (g *NFT) AllowUntil(vip netip.Addr, until time.Time) error {
	vip = vip.Unmap()
	if elementTimeout(time.Until(until)) <= 0 {
		return g.Revoke(vip) // needs no Install, like Revoke
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.guarded[vip] {
		return notGuarded(vip)
	}
	reinstalled, slack := false, g.slack
	var late []time.Duration
	for len(late) < lateAttempts {
		start := time.Now()
		left := until.Sub(start)
		if len(late) == lateAttempts-1 {
			slack = max(slack, left/2)
		}
		// A try never leaves more than half the time left for the round
		// trip, and the last one always does: only round trips longer
		// than that (the lease is in danger anyway) end in a revoke.
		d := elementTimeout(left - min(slack, left/2))
		if d <= 0 {
			break
		}
		err := g.allowLocked(vip, start, d)
		if isNotFound(err) && !reinstalled {
			// Our tables are gone: someone flushed the ruleset (Debian's
			// nftables.conf starts with "flush ruleset"), leaving every
			// VIP unguarded. Put them back now rather than run unguarded.
			reinstalled = true
			if err = g.installLocked(g.guarded); err == nil {
				continue // the install took time: recompute the timeout
			}
		}
		if err != nil {
			return fmt.Errorf("vipguard: allow %s: %w", vip, err)
		}
		ack := time.Now()
		rtt := ack.Sub(start)
		if !ack.Add(d).After(until) {
			g.slack = nextSlack(g.slack, rtt, false)
			return nil
		}
		// The kernel may have applied the batch as late as ack: the
		// element could outlive until. Issue it again, leaving room for
		// a batch twice as slow as this one (round trips grow on a
		// machine getting busier), and at least an eighth of the time
		// left (cheap, and a third try, which halves it, gets rarer).
		late = append(late, rtt)
		slack = max(slack, 2*rtt, until.Sub(ack)/8)
		g.slack = nextSlack(g.slack, rtt, true)
	}
	if err := g.revokeLocked(vip); err != nil {
		return err
	}
	if len(late) == 0 {
		return nil // until came too close to allow anything: silent, as asked
	}
	return lateError(vip, until, late)
}

// allowLocked sends one batch that gives vip's elements timeout d; start
// is the clock reading before the batch was built.
func (g *NFT) allowLocked(vip netip.Addr, start time.Time, d time.Duration) error {
	key := vip.AsSlice()
	exists := start.Before(g.present[vip])
	delete(g.present, vip) // until this batch is known to have landed
	for _, s := range g.allowedSets(vip) {
		if err := g.replace(s, key, d, exists); err != nil {
			return g.abort(err)
		}
	}
	if g.beforeSend != nil {
		g.beforeSend()
	}
	if err := g.flush(); err != nil {
		return err
	}
	// The kernel started the countdown after start, never before.
	g.present[vip] = start.Add(d - tickSlack)
	return nil
}

// tickSlack is how much sooner than start+timeout an element can end: the
// kernel counts whole jiffies (rounding the timeout down) from the jiffy
// in which the batch landed, which began up to a jiffy earlier. Two
// jiffies at HZ=100, the coarsest tick in use.
const tickSlack = 20 * time.Millisecond

func (g *NFT) replace(s *nftables.Set, key []byte, d time.Duration, exists bool) error {
	el := []nftables.SetElement{{Key: key, Timeout: d}}
	if !exists {
		if err := g.conn.SetAddElements(s, el); err != nil {
			return err
		}
	}
	if err := g.conn.SetDeleteElements(s, []nftables.SetElement{{Key: key}}); err != nil {
		return err
	}
	return g.conn.SetAddElements(s, el)
}

// Revoke deletes vip's elements (adding a 1 ms one first so the delete
// cannot fail). It does not need Install: a restarted agent can silence what
// its predecessor allowed. No table at all means nothing to revoke.
func (g *NFT) Revoke(vip netip.Addr) error {
	vip = vip.Unmap()
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.revokeLocked(vip)
}

func (g *NFT) revokeLocked(vip netip.Addr) error {
	delete(g.present, vip)
	key := vip.AsSlice()
	for _, s := range g.allowedSets(vip) {
		err := g.conn.SetAddElements(s, []nftables.SetElement{{Key: key, Timeout: time.Millisecond}})
		if err == nil {
			err = g.conn.SetDeleteElements(s, []nftables.SetElement{{Key: key}})
		}
		if err != nil {
			return g.abort(fmt.Errorf("vipguard: revoke %s: %w", vip, err))
		}
	}
	if err := g.flush(); err != nil && !isNotFound(err) {
		return fmt.Errorf("vipguard: revoke %s: %w", vip, err)
	}
	return nil
}

// Remaining reads the kernel's own countdown of vip's inet element.
func (g *NFT) Remaining(vip netip.Addr) (time.Duration, error) {
	vip = vip.Unmap()
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.guarded[vip] {
		return 0, notGuarded(vip)
	}
	set := g.allowedSets(vip)[0]
	elems, err := g.conn.GetSetElements(set)
	if err != nil {
		return 0, fmt.Errorf("vipguard: remaining %s: %w", vip, err)
	}
	key := vip.AsSlice()
	for _, e := range elems {
		if slices.Equal(e.Key, key) {
			return e.Expires, nil
		}
	}
	return 0, nil
}

// Dropped reads the counter of vip's count rule (see countRules).
func (g *NFT) Dropped(vip netip.Addr) (uint64, error) {
	vip = vip.Unmap()
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.guarded[vip] {
		return 0, notGuarded(vip)
	}
	rules, err := g.conn.GetRules(g.rs.inet, g.rs.inetIn)
	if err != nil {
		return 0, fmt.Errorf("vipguard: dropped %s: %w", vip, err)
	}
	tag := dropCounter(vip)
	for _, r := range rules {
		if !slices.Equal(r.UserData, tag) {
			continue
		}
		for _, e := range r.Exprs {
			if c, ok := e.(*expr.Counter); ok {
				return c.Packets, nil
			}
		}
	}
	return 0, fmt.Errorf("vipguard: dropped %s: no counter rule (reinstall)", vip)
}

// Close deletes both tables and the connection. Missing tables are fine.
func (g *NFT) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.conn.DelTable(g.rs.inet)
	g.conn.DelTable(g.rs.arp)
	err := g.conn.Flush()
	if err != nil && isNotFound(err) {
		// One table was missing and the kernel rejected the whole batch:
		// delete each on its own.
		err = nil
		for _, t := range []*nftables.Table{g.rs.inet, g.rs.arp} {
			g.conn.DelTable(t)
			if e := g.conn.Flush(); e != nil && !isNotFound(e) {
				err = errors.Join(err, e)
			}
		}
	}
	g.guarded = map[netip.Addr]bool{}
	g.present = map[netip.Addr]time.Time{}
	err = errors.Join(err, g.conn.CloseLasting(), g.closeNS())
	if err != nil {
		return fmt.Errorf("vipguard: close: %w", err)
	}
	return nil
}

func (g *NFT) allowedSets(vip netip.Addr) []*nftables.Set {
	if vip.Is4() {
		return []*nftables.Set{g.rs.allowed4, g.rs.arpAllowed}
	}
	return []*nftables.Set{g.rs.allowed6}
}

// flush sends the batch. After a failure the connection may hold replies
// nobody read (the library stops reading at some errors), so it is replaced.
func (g *NFT) flush() error {
	err := g.conn.Flush()
	if err != nil {
		return errors.Join(err, g.redial())
	}
	return nil
}

// abort drops a half-built batch (the library cannot discard queued
// messages, so the connection is replaced) and returns err.
func (g *NFT) abort(err error) error { return errors.Join(err, g.redial()) }

func (g *NFT) redial() error {
	_ = g.conn.CloseLasting()
	conn, err := nftables.New(g.connOpts...)
	if err != nil {
		return fmt.Errorf("vipguard: netlink: %w", err)
	}
	g.conn = conn
	return nil
}

func (g *NFT) closeNS() error {
	if g.nsFile == nil {
		return nil
	}
	err := g.nsFile.Close()
	g.nsFile = nil
	return err
}

func isNotFound(err error) bool { return errors.Is(err, unix.ENOENT) }
