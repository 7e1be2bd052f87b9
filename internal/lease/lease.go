// Package lease owns the arithmetic of tandem's group leases (DESIGN S1),
// with no I/O and no clock of its own: every call takes `now`.
//
// A group runs on node X only while X holds a lease for (group, epoch). X
// holds it while a majority of voters have vouched for it: a voter vouches
// (Grant) only if its replicated state names X as the group's holder at that
// epoch and it has not vouched for anybody else within the last Duration. X
// counts its lease from the moment it SENT the request that was granted and
// shortens it by the clock-drift bound, so X's lease always ends before the
// promise of every voter that granted it. Any two majorities share a voter,
// so a new holder cannot collect a majority until the old holder's lease has
// ended by the old holder's own clock.
//
// No two holders overlap because of that exclusivity and the timing: any
// two majorities share a voter, and a voter vouches for one (holder, epoch)
// of a group at a time. The replicated state keeps epochs moving forward
// (S2): a voter vouches only for exactly the holder and epoch it has
// applied. (Vouching for a newer epoch than it has applied, trusting the
// requester, was tried and is wrong: a voter that restarted and has not
// replayed its log yet would vouch for a holder whose epoch was already
// superseded, and that holder would run the group again at the old
// epoch. The cost of strictness is liveness only: a voter that has not yet
// learnt a commit refuses until it does.)
//
// A voter that restarts has forgotten its promises, so it grants nothing for
// one Duration after start (grace). A holder that stops cleanly releases its
// lease so a planned switchover need not wait for expiry.
//
// Imported by internal/heartbeat only.
package lease

import (
	"slices"
	"time"
)

// Params are the timing of leases.
type Params struct {
	Duration time.Duration // how long a voter's promise lasts
	Drift    float64       // bound on the rate difference of any two clocks (0.01 = 1 %)
}

// HolderDuration is how long a holder may use a grant, counted from the
// request's send time: shortened twice by the drift bound, once for each
// clock involved.
func (p Params) HolderDuration() time.Duration {
	return time.Duration(float64(p.Duration) * (1 - 2*p.Drift))
}

// GraceDuration is how long a restarted voter refuses every request.
func (p Params) GraceDuration() time.Duration {
	return time.Duration(float64(p.Duration) * (1 + p.Drift))
}

// Promise is a voter's word that it vouches for Holder at Epoch until Until.
type Promise struct {
	Holder string
	Epoch  uint64
	Until  time.Time
}

// Voter is one voter's promise table.
type Voter struct {
	p        Params
	started  time.Time
	promises map[string]Promise
}

// NewVoter returns a voter that started at now.
func NewVoter(p Params, now time.Time) *Voter {
	return &Voter{p: p, started: now, promises: map[string]Promise{}}
}

// Decision is the outcome of a grant request, with the reason when refused.
type Decision int

const (
	Granted          Decision = iota
	RefusedNotHolder          // the voter's state has a newer epoch, or another holder at this one
	RefusedPromised
	RefusedGrace
)

func (d Decision) String() string {
	return [...]string{"granted", "refused: state names another holder or epoch",
		"refused: promised to another holder", "refused: voter restarted recently"}[d]
}

// Grant decides on holder's request for group at epoch. stateHolder and
// stateEpoch are what this voter's applied replicated state says.
func (v *Voter) Grant(now time.Time, group, holder string, epoch uint64, stateHolder string, stateEpoch uint64) Decision {
	if epoch != stateEpoch || holder != stateHolder {
		return RefusedNotHolder
	}
	if now.Sub(v.started) < v.p.GraceDuration() {
		return RefusedGrace
	}
	if cur, ok := v.promises[group]; ok && now.Before(cur.Until) && (cur.Holder != holder || cur.Epoch != epoch) {
		return RefusedPromised
	}
	v.promises[group] = Promise{Holder: holder, Epoch: epoch, Until: now.Add(v.p.Duration)}
	return Granted
}

// Release drops the promise for group if it is holder's at epoch.
func (v *Voter) Release(group, holder string, epoch uint64) {
	if cur, ok := v.promises[group]; ok && cur.Holder == holder && cur.Epoch == epoch {
		delete(v.promises, group)
	}
}

// Forget drops every promise to holder: it was confirmed off (fenced), so
// nothing of it runs and no lease of its can still be in use (two-node
// mode, docs/two-node.md rule 1). Without it a takeover would also wait
// out the promise this voter gave the fenced node.
func (v *Voter) Forget(holder string) {
	for g, cur := range v.promises {
		if cur.Holder == holder {
			delete(v.promises, g)
		}
	}
}

// Promised returns the live promise for group, if any.
func (v *Voter) Promised(now time.Time, group string) (Promise, bool) {
	cur, ok := v.promises[group]
	if !ok || !now.Before(cur.Until) {
		return Promise{}, false
	}
	return cur, true
}

// Claim is a holder's view of its lease on one group at one epoch.
type Claim struct {
	Group  string
	Epoch  uint64
	p      Params
	quorum int // grants needed to win the lease
	// Two-node mode (SetTwoNode): extendAlone, once won the lease is
	// extended by this node's own grants; solo, it is won by them too.
	extendAlone, solo bool
	won               bool // quorum voters granted it at some point
	// granted maps voter → send time of the newest granted request.
	granted map[string]time.Time
	// floor: the lease ends no earlier than this, whatever the grants
	// (SetTwoNode keeps a lease won with fewer grants to its end).
	floor time.Time
}

// NewClaim starts a claim on group at epoch needing quorum voters.
func NewClaim(p Params, group string, epoch uint64, quorum int) *Claim {
	return &Claim{Group: group, Epoch: epoch, p: p, quorum: quorum, granted: map[string]time.Time{}}
}

// Granted records that voter granted a request sent at sentAt.
func (c *Claim) Granted(voter string, sentAt time.Time) {
	if prev, ok := c.granted[voter]; !ok || sentAt.After(prev) {
		c.granted[voter] = sentAt
	}
	if len(c.granted) >= c.quorum {
		c.won = true
	}
}

// SetTwoNode sets two-node mode's rules (docs/two-node.md rule 1), for a
// holder whose own voter is one of its grants. extendAlone: a lease won
// with the quorum (both voters) is extended by this node's own grants,
// as its own voter's promise keeps any new holder out (a new holder wins
// only with both voters' grants); the old holder's lease thus never
// lapses when the peer is lost, which is when it must keep running.
// solo: the lease is won with this node's own grant alone (the peer is
// confirmed off, or not a voter now). Going back to more grants keeps a
// lease already won to its end: those grants were real promises.
func (c *Claim) SetTwoNode(extendAlone, solo bool) {
	before := c.need()
	until, ok := c.Until()
	c.extendAlone, c.solo = extendAlone, solo
	if c.need() > before && ok && until.After(c.floor) {
		c.floor = until
	}
}

// need is how many voters' grants make the lease now.
func (c *Claim) need() int {
	if c.solo || (c.extendAlone && c.won) {
		return 1
	}
	return c.quorum
}

// Until returns when the lease ends: the need-th newest grant plus the
// holder duration, or a lease won with fewer grants if that ends later.
// ok is false when no lease was ever won.
func (c *Claim) Until() (time.Time, bool) {
	q := c.need()
	if len(c.granted) < q {
		return c.floor, !c.floor.IsZero()
	}
	// On the stack for any cluster size: the heartbeat asks several times
	// a datagram, and an idle agent's garbage is mostly what it asks.
	var buf [8]time.Time
	sent := buf[:0]
	for _, t := range c.granted {
		sent = append(sent, t)
	}
	slices.SortFunc(sent, func(a, b time.Time) int { return b.Compare(a) }) // newest first
	until := sent[q-1].Add(c.p.HolderDuration())
	if c.floor.After(until) {
		until = c.floor
	}
	return until, true
}

// Valid reports whether the lease is held at now.
func (c *Claim) Valid(now time.Time) bool {
	until, ok := c.Until()
	return ok && now.Before(until)
}

// Quorum is the majority of n voters.
func Quorum(n int) int { return n/2 + 1 }
