package heartbeat

import (
	"sort"
	"time"

	"tandem/internal/lease"
)

// Config is the static configuration of an engine.
type Config struct {
	Self       int    // index of this node in Voters
	Voters     []Peer // every voter of the cluster, in config order
	ConfigHash uint32
	Interval   time.Duration // between heartbeat rounds
	Timeout    time.Duration // a path silent this long is down
	Retry      time.Duration // between rounds while a wanted lease is not held
	Lease      lease.Params
	// FirstRound is where this life's round numbers start (boot<<32, see
	// NextBoot), so echoes and acks of an earlier life never match.
	FirstRound uint64
}

// Peer is a voter and its number of links.
type Peer struct {
	Name  string
	Links int
}

// GroupState is what the applied replicated state says of a group.
type GroupState struct {
	Holder string
	Epoch  uint64
}

// Outgoing is a message to send to voter To on link Link.
type Outgoing struct {
	To   int
	Link int
	Msg  Message
}

// ChangeKind names a transition reported by the engine.
type ChangeKind int

const (
	PeerUp ChangeKind = iota
	PeerDown
	LinkUp
	LinkDown
	LeaseAcquired
	LeaseExtended
	LeaseLost
	// PeerView: a peer reported a different set of voters it sees; the
	// placement decider reads views, so it wants to know at once.
	PeerView
)

func (k ChangeKind) String() string {
	return [...]string{"peer_up", "peer_down", "link_up", "link_down", "lease_acquired", "lease_extended", "lease_lost", "peer_view"}[k]
}

// Change is one transition.
type Change struct {
	At        time.Time
	Kind      ChangeKind
	Peer      string
	Link      int
	Group     string
	Epoch     uint64
	Until     time.Time // lease end (lease changes)
	LastHeard time.Time // peer or link down: when it last proved alive
}

// Engine is the pure heartbeat and lease state machine of one node. It is
// not safe for concurrent use; the adapter serializes calls.
type Engine struct {
	cfg       Config
	round     uint64
	lastRound time.Time
	sent      sentRounds
	peers     []*peerState
	voter     *lease.Voter
	state     map[string]GroupState
	applied   uint64
	claims    map[string]*lease.Claim
	// given is the epoch of each group whose lease this node released: a
	// later SetState at that same epoch (the handover not yet applied)
	// must not claim it again, or the voters would vouch for this node
	// once more and make the next holder wait a whole lease.
	given    map[string]uint64
	reported map[string]time.Time // group → lease end last reported
	releases map[LeaseRelease]int // still to announce, rounds left
	changes  []Change
	// viewChanged: a peer went up or down since the last round; the next
	// Tick sends a round at once so other voters learn the new view
	// (placement reads it) without waiting an interval.
	viewChanged bool
	// Lease acks ride on this node's own rounds: a request that arrives at
	// least half an interval after our last round makes us send the next
	// round at once, carrying the acks (pendingAcks, by peer); rounds then
	// follow the holder's, and steady renewals cost no extra datagram.
	pendingAcks map[int][]LeaseAck
	ackedRound  map[int]uint64 // newest request round of each peer acked
	ackedAt     time.Time      // last time this node acked anybody
	// Two-node mode (SetTwoNode): how claims count grants, and
	// refusePeers makes this node's voter grant the peers nothing.
	extendAlone, solo bool
	refusePeers       bool
}

// New returns an engine that starts at now.
func New(cfg Config, now time.Time) *Engine {
	if cfg.Retry <= 0 {
		cfg.Retry = cfg.Interval / 5
	}
	e := &Engine{
		cfg:         cfg,
		round:       cfg.FirstRound,
		voter:       lease.NewVoter(cfg.Lease, now),
		state:       map[string]GroupState{},
		claims:      map[string]*lease.Claim{},
		given:       map[string]uint64{},
		reported:    map[string]time.Time{},
		releases:    map[LeaseRelease]int{},
		pendingAcks: map[int][]LeaseAck{},
		ackedRound:  map[int]uint64{},
	}
	self := cfg.Voters[cfg.Self]
	for i, v := range cfg.Voters {
		p := &peerState{name: v.Name, since: now}
		if i != cfg.Self {
			p.links = make([]linkState, min(v.Links, self.Links))
			for j := range p.links {
				p.links[j].since = now
			}
		}
		e.peers = append(e.peers, p)
	}
	return e
}

func (e *Engine) selfName() string { return e.cfg.Voters[e.cfg.Self].Name }

// SetState installs the applied replicated state of every group. A group
// whose holder is this node is claimed; a claim on an older epoch is dropped.
func (e *Engine) SetState(groups map[string]GroupState, applied uint64) {
	e.state = groups
	e.applied = applied
	me := e.selfName()
	for g, c := range e.claims {
		if s, ok := groups[g]; !ok || s.Holder != me || s.Epoch != c.Epoch {
			delete(e.claims, g)
		}
	}
	for g, s := range groups {
		if s.Holder == me && e.claims[g] == nil && e.given[g] != s.Epoch {
			c := lease.NewClaim(e.cfg.Lease, g, s.Epoch, lease.Quorum(len(e.cfg.Voters)))
			c.SetTwoNode(e.extendAlone, e.solo)
			e.claims[g] = c
		}
	}
}

// SetTwoNode applies two-node mode's lease rules (docs/two-node.md rule 1,
// decided by internal/fencepolicy): extendAlone, a lease this node won
// with both grants is extended by its own voter's alone (the peer can win
// none of this node's groups without that voter, or without fencing this
// node), so a holder that loses its peer keeps running without a lapse;
// solo, this node's leases are won by its own grant too, and its voter
// grants the peers nothing and forgets what it promised them (they were
// confirmed off, or are not voters now). Going back to more grants keeps
// each lease won to its end (lease.Claim.SetTwoNode).
func (e *Engine) SetTwoNode(extendAlone, solo bool) {
	e.extendAlone, e.solo = extendAlone, solo
	for _, c := range e.claims {
		c.SetTwoNode(extendAlone, solo)
	}
	if solo && !e.refusePeers {
		for i, v := range e.cfg.Voters {
			if i != e.cfg.Self {
				e.voter.Forget(v.Name)
			}
		}
	}
	e.refusePeers = solo
}

// Lease returns this node's lease on group: its epoch and end, and whether
// it is held at now.
func (e *Engine) Lease(group string, now time.Time) (epoch uint64, until time.Time, ok bool) {
	c := e.claims[group]
	if c == nil {
		return 0, time.Time{}, false
	}
	until, held := c.Until()
	return c.Epoch, until, held && now.Before(until)
}

// Release gives up this node's lease on group at epoch (after the group was
// stopped here) and returns the datagrams announcing it. The claim is gone
// at once, so the lease cannot be used again.
func (e *Engine) Release(now time.Time, group string, epoch uint64) []Outgoing {
	if c := e.claims[group]; c != nil && c.Epoch == epoch {
		delete(e.claims, group)
	}
	e.given[group] = epoch
	e.voter.Release(group, e.selfName(), epoch)
	e.releases[LeaseRelease{Group: group, Epoch: epoch}] = 3
	return e.sendRound(now)
}

// roundInterval is the time between this node's own rounds: the interval,
// stretched by a tenth while it acks a holder's requests, so the holder's
// next round (which arrives about one interval after the last) triggers
// ours with the acks on it, rather than our timer firing just before it.
func (e *Engine) roundInterval(now time.Time) time.Duration {
	if !e.ackedAt.IsZero() && now.Sub(e.ackedAt) < 2*e.cfg.Interval {
		return e.cfg.Interval * 11 / 10
	}
	return e.cfg.Interval
}

// NextTick is when Tick must be called next.
func (e *Engine) NextTick(now time.Time) time.Time {
	next := e.lastRound.Add(e.roundInterval(now))
	if e.viewChanged {
		return now
	}
	if e.wantsRetry(now) {
		if r := e.lastRound.Add(e.cfg.Retry); r.Before(next) {
			next = r
		}
	}
	// Wake for the earliest lease end and the earliest link timeout so loss
	// is reported on time.
	for _, c := range e.claims {
		if until, ok := c.Until(); ok && until.After(now) && until.Before(next) {
			next = until
		}
	}
	for _, p := range e.peers {
		for i := range p.links {
			if l := &p.links[i]; l.up {
				if d := l.lastValid.Add(e.cfg.Timeout); d.Before(next) {
					next = d
				}
			}
		}
	}
	if next.Before(now) {
		next = now
	}
	return next
}

// wantsRetry: a lease this node should hold is not held, or is within one
// interval of its end (renewals are being lost).
func (e *Engine) wantsRetry(now time.Time) bool {
	for _, c := range e.claims {
		until, ok := c.Until()
		if !ok || until.Sub(now) < e.cfg.Interval {
			return true
		}
	}
	return false
}

// Tick advances time: sends a round when one is due, detects timeouts and
// lease ends.
func (e *Engine) Tick(now time.Time) []Outgoing {
	var out []Outgoing
	e.detect(now)
	due := e.viewChanged || now.Sub(e.lastRound) >= e.roundInterval(now) ||
		(e.wantsRetry(now) && now.Sub(e.lastRound) >= e.cfg.Retry)
	if due {
		out = e.sendRound(now)
	}
	e.reportLeases(now)
	return out
}

func (e *Engine) sendRound(now time.Time) []Outgoing {
	e.viewChanged = false
	e.round++
	e.lastRound = now
	e.sent.add(e.round, now)
	me := e.selfName()
	var reqs []LeaseRequest
	for _, g := range sortedKeys(e.claims) {
		c := e.claims[g]
		reqs = append(reqs, LeaseRequest{Group: g, Epoch: c.Epoch})
		s := e.state[g]
		if e.voter.Grant(now, g, me, c.Epoch, s.Holder, s.Epoch) == lease.Granted {
			c.Granted(me, now)
		}
	}
	var rels []LeaseRelease
	for r, left := range e.releases {
		rels = append(rels, r)
		if left <= 1 {
			delete(e.releases, r)
		} else {
			e.releases[r] = left - 1
		}
	}
	sort.Slice(rels, func(i, j int) bool { return rels[i].Group < rels[j].Group })
	seen := e.seenMask()
	var out []Outgoing
	for i, p := range e.peers {
		for j := range p.links {
			l := &p.links[j]
			m := Message{
				Kind: KindHeartbeat, ConfigHash: e.cfg.ConfigHash, Round: e.round,
				Seen: seen, Applied: e.applied, Requests: reqs, Releases: rels,
			}
			if l.echoRound != 0 {
				m.Echo = l.echoRound
				m.EchoDelay = uint32(now.Sub(l.echoAt).Microseconds())
			}
			m.Acks = e.pendingAcks[i] // on every link, so one lost datagram does not lose them
			out = append(out, Outgoing{To: i, Link: j, Msg: m})
		}
	}
	clear(e.pendingAcks)
	return out
}

// Receive handles an authenticated message from voter from on link and
// returns immediate replies (lease acks).
func (e *Engine) Receive(now time.Time, from, link int, m *Message) []Outgoing {
	if from < 0 || from >= len(e.peers) || from == e.cfg.Self || m.ConfigHash != e.cfg.ConfigHash {
		return nil
	}
	p := e.peers[from]
	if link < 0 || link >= len(p.links) {
		return nil
	}
	l := &p.links[link]
	// Echo the newest heartbeat by arrival, not the highest round: a peer
	// that restarted counts from 1 again and would otherwise get back only
	// rounds of its previous life, unknown to it, and see this node down
	// for as long as that life lasted. (An older round echoed after a
	// reordering is still judged fresh or not by its sender.)
	if m.Kind == KindHeartbeat {
		l.echoRound, l.echoAt = m.Round, now
	}
	l.noteRound(m.Round)
	sentAt, known := e.sent.at(m.Echo)
	fresh := known && now.Sub(sentAt) <= e.cfg.Timeout
	if fresh {
		l.lastValid = now
		if now.After(p.lastHeard) {
			p.lastHeard = now
		}
		l.noteRTT(now.Sub(sentAt) - time.Duration(m.EchoDelay)*time.Microsecond)
		if m.Applied > p.applied || m.Kind == KindHeartbeat {
			p.applied = m.Applied
		}
		if m.Kind == KindHeartbeat && m.Seen != p.seen {
			p.seen = m.Seen
			e.changes = append(e.changes, Change{At: now, Kind: PeerView, Peer: p.name})
		}
	}
	for _, r := range m.Releases {
		e.voter.Release(r.Group, p.name, r.Epoch)
	}
	for _, a := range m.Acks {
		c := e.claims[a.Group]
		if c == nil || c.Epoch != a.Epoch {
			continue
		}
		if at, ok := e.sent.at(a.Round); ok {
			c.Granted(p.name, at)
		}
	}
	e.detect(now)
	e.reportLeases(now)
	if m.Kind != KindHeartbeat || len(m.Requests) == 0 {
		return nil
	}
	// A request counts only if it echoes a round we sent within one lease:
	// a replayed request cannot make this voter vouch again.
	if !known || now.Sub(sentAt) > e.cfg.Lease.Duration || e.refusePeers {
		return nil
	}
	var acks []LeaseAck
	for _, r := range m.Requests {
		s := e.state[r.Group]
		if e.voter.Grant(now, r.Group, p.name, r.Epoch, s.Holder, s.Epoch) == lease.Granted {
			acks = append(acks, LeaseAck{Group: r.Group, Epoch: r.Epoch, Round: m.Round})
		}
	}
	if len(acks) == 0 || e.ackedRound[from] == m.Round {
		return nil // nothing granted, or already acked (the copy on another link)
	}
	e.ackedRound[from] = m.Round
	e.ackedAt = now
	if now.Sub(e.lastRound) >= e.cfg.Interval/2 {
		e.pendingAcks[from] = acks
		return e.sendRound(now)
	}
	return []Outgoing{{To: from, Link: link, Msg: Message{
		Kind: KindLeaseAck, ConfigHash: e.cfg.ConfigHash, Echo: m.Round,
		Seen: e.seenMask(), Applied: e.applied, Acks: acks,
	}}}
}

// detect updates link and peer up/down from the timeout.
func (e *Engine) detect(now time.Time) {
	for i, p := range e.peers {
		if i == e.cfg.Self {
			continue
		}
		anyUp := false
		for j := range p.links {
			l := &p.links[j]
			up := !l.lastValid.IsZero() && now.Sub(l.lastValid) < e.cfg.Timeout
			if up != l.up {
				l.up, l.since = up, now
				k := LinkDown
				if up {
					k = LinkUp
				}
				e.changes = append(e.changes, Change{At: now, Kind: k, Peer: p.name, Link: j, LastHeard: l.lastValid})
			}
			anyUp = anyUp || up
		}
		if anyUp != p.up {
			p.up, p.since = anyUp, now
			e.viewChanged = true
			k := PeerDown
			if anyUp {
				k = PeerUp
			}
			e.changes = append(e.changes, Change{At: now, Kind: k, Peer: p.name, LastHeard: p.lastHeard})
		}
	}
}

func (e *Engine) reportLeases(now time.Time) {
	for g, c := range e.claims {
		until, ok := c.Until()
		held := ok && now.Before(until)
		prev, had := e.reported[g]
		switch {
		case held && !had:
			e.changes = append(e.changes, Change{At: now, Kind: LeaseAcquired, Group: g, Epoch: c.Epoch, Until: until})
			e.reported[g] = until
		case held && !now.Before(prev):
			// The lease ran out at prev and a renewal that came after
			// it (in the same wake-up as this report) granted a new one:
			// that is a loss and a new lease, not an extension. The node
			// did not hold it in between (its guard closed the VIP), and
			// the audit log must say so.
			e.changes = append(e.changes, Change{At: prev, Kind: LeaseLost, Group: g, Epoch: c.Epoch, Until: prev},
				Change{At: now, Kind: LeaseAcquired, Group: g, Epoch: c.Epoch, Until: until})
			e.reported[g] = until
		case held && until.After(prev):
			e.changes = append(e.changes, Change{At: now, Kind: LeaseExtended, Group: g, Epoch: c.Epoch, Until: until})
			e.reported[g] = until
		case !held && had:
			e.changes = append(e.changes, Change{At: now, Kind: LeaseLost, Group: g, Epoch: c.Epoch, Until: prev})
			delete(e.reported, g)
		}
	}
	for g, prev := range e.reported {
		if e.claims[g] == nil {
			e.changes = append(e.changes, Change{At: now, Kind: LeaseLost, Group: g, Until: prev})
			delete(e.reported, g)
		}
	}
}

// Changes returns and clears the transitions since the last call.
func (e *Engine) Changes() []Change {
	c := e.changes
	e.changes = nil
	return c
}

func (e *Engine) seenMask() uint16 {
	m := uint16(1) << e.cfg.Self
	for i, p := range e.peers {
		if p.up {
			m |= 1 << i
		}
	}
	return m
}

// Up reports whether this node currently sees voter i alive.
func (e *Engine) Up(i int) bool { return i == e.cfg.Self || e.peers[i].up }

// Reachable reports whether voter i is alive as far as this node can tell:
// it sees i itself, or a voter it sees says it sees i. The placement engine
// moves groups only off nodes that nobody reachable can see.
func (e *Engine) Reachable(i int) bool {
	if e.Up(i) {
		return true
	}
	for j, p := range e.peers {
		if j != e.cfg.Self && p.up && p.seen&(1<<i) != 0 {
			return true
		}
	}
	return false
}

// Applied is voter i's applied consensus index as it last reported it.
func (e *Engine) Applied(i int) uint64 { return e.peers[i].applied }

// LastHeard is when voter i last proved alive to this node.
func (e *Engine) LastHeard(i int) time.Time { return e.peers[i].lastHeard }

// Status is a snapshot for the API.
type Status struct {
	Round uint64       `json:"round"`
	Peers []PeerStatus `json:"peers"`
}

// PeerStatus is one peer's liveness.
type PeerStatus struct {
	Name      string       `json:"name"`
	Up        bool         `json:"up"`
	Since     time.Time    `json:"since"`
	LastHeard time.Time    `json:"last_heard"`
	Links     []LinkStatus `json:"links"`
}

// LinkStatus is one link's liveness and quality.
type LinkStatus struct {
	Index int       `json:"index"`
	Up    bool      `json:"up"`
	Since time.Time `json:"since"`
	RTT   float64   `json:"rtt_ms"`
	Loss  float64   `json:"loss"`
}

// Status returns the liveness of every peer and link.
func (e *Engine) Status(now time.Time) Status {
	s := Status{Round: e.round}
	for i, p := range e.peers {
		if i == e.cfg.Self {
			continue
		}
		ps := PeerStatus{Name: p.name, Up: p.up, Since: p.since, LastHeard: p.lastHeard}
		for j := range p.links {
			l := &p.links[j]
			ps.Links = append(ps.Links, LinkStatus{
				Index: j, Up: l.up, Since: l.since,
				RTT:  float64(l.rtt.Microseconds()) / 1000,
				Loss: l.loss(now, e.cfg.Interval),
			})
		}
		s.Peers = append(s.Peers, ps)
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
