package fencepolicy

import (
	"fmt"
	"time"
)

type fenceState int

const (
	idle      fenceState = iota
	scheduled            // the race's loser waits until fenceAt
	inflight             // a Fence action is out; FenceDone answers it
	retrying             // an attempt failed; the next is at fenceAt
)

// Machine is one node's fencing decisions. It is not safe for concurrent
// use: the caller serialises every input.
type Machine struct {
	cfg     Config
	started bool
	heard   bool // the peer is heard now
	lost    bool // a loss of the peer was reported and not followed by heard
	// paired: two-node, both are voters and this node has been joined with
	// the peer since it started, so a loss of the peer is a race to run.
	paired     bool
	soleVoter  bool // two-node: this node is raft's only voter (persisted by raft)
	recovering bool // a RecoverRaft is out
	// fenced: the peer was confirmed off since it was last paired with
	// this node (two-node) or since it was last lost (witness).
	fenced    bool
	needFence bool
	fs        fenceState
	fenceAt   time.Time
	backoff   time.Duration
	attempts  int
	readdAt   time.Time // two-node sole voter hearing its peer: next ReaddPeer
	recoverAt time.Time // a failed RecoverRaft: the next try
	groups    []Group
	offered   map[string]bool // MayTakeOver already given, per group
	// covered (witness): per group, the newest epoch the state showed when
	// the last fence was confirmed; a holding of the peer at a newer epoch
	// began after the fence (the peer came back unheard) and needs another.
	covered map[string]uint64
	// pending (witness): when this node first saw each guarded takeover
	// waiting for its old holder's report ("group@fromEpoch").
	pending map[string]time.Time
}

// New returns a machine for cfg; it does nothing until Start.
func New(cfg Config) (*Machine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Machine{cfg: cfg, offered: map[string]bool{}, covered: map[string]uint64{}, pending: map[string]time.Time{}}, nil
}

// Start is the agent's start. soleVoter is what raft's persisted
// configuration says (two-node: this node alone; ignored with a witness).
// A two-node node that is one of two voters waits for all; a sole voter
// fences its peer before it starts anything (docs/two-node.md rule 6).
func (m *Machine) Start(now time.Time, soleVoter bool) []Action {
	m.started = true
	if m.cfg.Mode != TwoNode {
		return nil
	}
	m.soleVoter = soleVoter
	if soleVoter {
		m.needFence = true
		return m.fenceNow(now, "restarted as raft's only voter: the peer is fenced before anything starts")
	}
	return []Action{{Kind: Waiting, Reason: "wait-for-all: nothing starts until this node has joined " + m.cfg.Peer}}
}

// PeerHeard: the peer's heartbeats are heard (both ways).
func (m *Machine) PeerHeard(now time.Time) []Action {
	if m.heard {
		return nil
	}
	m.heard, m.lost = true, false
	var out []Action
	if m.needFence {
		m.needFence = false
		if m.fs == scheduled || m.fs == retrying {
			m.fs = idle
			out = append(out, Action{Kind: FenceCancelled, Node: m.cfg.Peer, Reason: "the peer is heard again"})
		}
	}
	if m.cfg.Mode == TwoNode && m.soleVoter && !m.recovering {
		m.readdAt = now
		out = append(out, m.Tick(now)...)
	}
	return out
}

// PeerLost: the peer is not heard any more, judged over a window in which
// this node was running (not across its own freeze).
func (m *Machine) PeerLost(now time.Time) []Action {
	if m.lost {
		return nil // already handled this loss
	}
	m.heard, m.lost = false, true
	m.readdAt = time.Time{}
	if !m.started {
		return nil
	}
	if m.cfg.Mode == Witness {
		m.fenced = false
		return m.witnessCheck(now)
	}
	switch {
	case m.soleVoter:
		return nil // the peer is not a voter: nothing to race for
	case !m.paired:
		return []Action{{Kind: Waiting, Reason: "wait-for-all: " + m.cfg.Peer + " lost before this node joined it"}}
	case m.fenced || m.needFence:
		return nil
	}
	m.needFence = true
	mine, theirs := m.count()
	if mine > theirs || (mine == theirs && m.cfg.Preferred == m.cfg.Self) {
		return m.fenceNow(now, fmt.Sprintf("peer lost; this node wins the race (runs %d groups, peer %d, preferred %s)", mine, theirs, m.cfg.Preferred))
	}
	m.fs, m.fenceAt = scheduled, now.Add(m.cfg.FenceDelay)
	return []Action{{Kind: FenceScheduled, Node: m.cfg.Peer, At: m.fenceAt,
		Reason: fmt.Sprintf("peer lost; the peer fences first (runs %d groups, this node %d, preferred %s)", theirs, mine, m.cfg.Preferred)}}
}

// Resume: this node was not running for a while (a freeze, seen as a gap
// on the monotonic clock), so what it heard of its peer is stale: the peer
// counts as not heard until heard afresh, with no race started (the
// model found a thawed node taking a group over from a frozen holder
// without the fence its policy asked for, trusting a "heard" from before
// its own freeze). The detector must likewise not report a loss from the
// gap itself.
func (m *Machine) Resume(now time.Time) []Action {
	m.heard, m.lost = false, false
	return nil
}

// PeerJoined (two-node): both nodes are voters of raft's configuration, a
// leader is known and this node has caught up with its commit. It ends
// wait-for-all. PeerReadded is the same seen from the survivor that added
// the peer back.
func (m *Machine) PeerJoined(now time.Time) []Action {
	m.paired, m.soleVoter, m.fenced, m.needFence = true, false, false, false
	m.readdAt = time.Time{}
	m.offered = map[string]bool{}
	if m.fs == scheduled || m.fs == retrying {
		m.fs = idle
	}
	return nil
}

// PeerReadded: the survivor's AddVoter of the peer committed.
func (m *Machine) PeerReadded(now time.Time) []Action { return m.PeerJoined(now) }

// SetGroups gives the groups as this node knows them now.
func (m *Machine) SetGroups(now time.Time, gs []Group) []Action {
	m.groups = append(m.groups[:0], gs...)
	if !m.started {
		return nil
	}
	if m.cfg.Mode == Witness {
		return m.witnessCheck(now)
	}
	return m.offer()
}

// FenceDone is the answer to the last Fence action.
func (m *Machine) FenceDone(now time.Time, o Outcome, detail string) []Action {
	if m.fs != inflight {
		return nil // not ours (a restart forgot it): ignore
	}
	m.attempts++
	if o == Confirmed {
		m.fs = idle
		return m.confirmed("fence confirmed off")
	}
	why := fmt.Sprintf("fence attempt %d %s", m.attempts, o)
	if detail != "" {
		why += ": " + detail
	}
	if !m.needFence {
		m.fs = idle
		return []Action{{Kind: Report, Node: m.cfg.Peer, Reason: why + "; not retried, no longer needed"}}
	}
	if m.backoff == 0 {
		m.backoff = m.cfg.RetryMin
	} else if m.backoff *= 2; m.backoff > m.cfg.RetryMax {
		m.backoff = m.cfg.RetryMax
	}
	m.fs, m.fenceAt = retrying, now.Add(m.backoff)
	return []Action{{Kind: Report, Node: m.cfg.Peer, Reason: why + "; nothing starts until a fence is confirmed"},
		{Kind: RetryScheduled, Node: m.cfg.Peer, At: m.fenceAt}}
}

// ManualFence: the operator fenced the peer by hand and confirmed it off
// (tandem fence NODE --yes). It counts as a confirmed fence: the way out of
// wait-for-all when the peer is gone for good. A fence of the machine's own
// still in flight is left to answer; its answer changes nothing then.
func (m *Machine) ManualFence(now time.Time) []Action {
	if m.fs == scheduled || m.fs == retrying {
		m.fs = idle
	}
	return m.confirmed("fenced by the operator, confirmed off")
}

// confirmed: the peer is off. Two-node: raft is recovered to this node
// alone, then the peer's groups are offered; witness: the takeovers are.
func (m *Machine) confirmed(why string) []Action {
	m.needFence, m.fenced = false, true
	m.attempts, m.backoff = 0, 0
	clear(m.covered)
	for _, g := range m.groups {
		m.covered[g.Name] = max(g.Epoch, g.FromEpoch)
	}
	out := []Action{{Kind: Report, Node: m.cfg.Peer, Reason: why}}
	if m.cfg.Mode == TwoNode {
		if !m.soleVoter && !m.recovering {
			m.recovering = true
			return append(out, Action{Kind: RecoverRaft, Reason: "the peer is off: this node becomes raft's only voter"})
		}
		return append(out, m.offer()...)
	}
	return append(out, m.witnessOffer()...)
}

// RaftRecovered: RecoverRaft is done; raft runs with this node alone.
func (m *Machine) RaftRecovered(now time.Time) []Action {
	m.recovering, m.soleVoter, m.paired = false, true, false
	out := m.offer()
	if m.heard {
		m.readdAt = now
		out = append(out, m.Tick(now)...)
	}
	return out
}

// RaftRecoverFailed: RecoverRaft did not complete. It is tried again after
// RetryMin (the adapter must make a retry safe on whatever a failed
// RecoverCluster left in the stores); nothing starts meanwhile, the groups
// this node runs keep running on SelfGrant.
func (m *Machine) RaftRecoverFailed(now time.Time, err error) []Action {
	if !m.recovering {
		return nil
	}
	m.recoverAt = now.Add(m.cfg.RetryMin)
	return []Action{{Kind: Report, Reason: fmt.Sprintf("raft recovery failed: %v; nothing starts until it succeeds", err)}}
}

// Tick runs what is due at now: a delayed fence, a retry, a re-add, a
// recovery tried again.
func (m *Machine) Tick(now time.Time) []Action {
	var out []Action
	if !m.recoverAt.IsZero() && !now.Before(m.recoverAt) {
		m.recoverAt = time.Time{}
		out = append(out, Action{Kind: RecoverRaft, Reason: "the last recovery failed"})
	}
	if (m.fs == scheduled || m.fs == retrying) && !now.Before(m.fenceAt) {
		m.fs = inflight
		out = append(out, Action{Kind: Fence, Node: m.cfg.Peer, Reason: "the delay or backoff is over"})
	}
	if m.cfg.Mode == Witness && m.started {
		if due := m.reportDue(); !due.IsZero() && !now.Before(due) {
			out = append(out, m.witnessCheck(now)...)
		}
	}
	if !m.readdAt.IsZero() && !now.Before(m.readdAt) && m.soleVoter && m.heard && m.fs != inflight {
		m.readdAt = now.Add(m.cfg.RetryMin)
		out = append(out, Action{Kind: ReaddPeer, Node: m.cfg.Peer, Reason: "the peer is heard again"})
	}
	return out
}

// NextTick is when Tick has something to do (zero: nothing pending).
func (m *Machine) NextTick() time.Time {
	var t time.Time
	if m.fs == scheduled || m.fs == retrying {
		t = m.fenceAt
	}
	for _, at := range []time.Time{m.readdAt, m.recoverAt, m.reportDue()} {
		if !at.IsZero() && (t.IsZero() || at.Before(t)) {
			t = at
		}
	}
	return t
}

// MayStart reports whether the fencing rules let this node start group g
// now (placement and the lease still have their say).
func (m *Machine) MayStart(g Group) bool {
	if !m.started {
		return false
	}
	if m.cfg.Mode == Witness {
		// Heard is not stopped: a reachable holder's agent stops at its
		// lease end, but one that freezes on the way leaves services up
		// (the model found it). So the takeover waits for the old holder's
		// report, and fences it once it is lost.
		return !(g.From == m.cfg.Peer && m.required(g) && !g.FromStopped) || m.covers(g)
	}
	if m.soleVoter {
		return m.fenced
	}
	return m.paired && m.heard && !m.recovering
}

// SelfGrant (two-node) reports whether this node extends the leases it
// won (with both voters' grants) by its own voter's grant alone: while it
// is paired with its peer. The peer can win none of this node's groups
// without this node's voter, which keeps its own promise, or without
// fencing this node first; so the holder keeps running when the peer is
// lost, with no lapse at the moment of the loss (docs/two-node.md rule
// 1). While AcceptsPeer is false the node wins its leases alone too.
func (m *Machine) SelfGrant() bool {
	return m.cfg.Mode == TwoNode && m.started && m.paired
}

// Paired (two-node) reports whether this node has joined its peer since it
// started or re-added it (PeerJoined, PeerReadded), and has not recovered
// raft to itself alone since.
func (m *Machine) Paired() bool { return m.paired }

// AcceptsPeer reports whether this node may deal with its peer in raft
// and grant it leases. Not after a confirmed fence until the peer has been
// re-added (two-node): a fenced peer that reboots fast could otherwise
// join raft before this node's recovery has taken it out, pair with it, and
// later win a race or start groups with the stale state it joined with
// (the model found both). The wiring must cut the peer off in consensus at
// once on a confirmed fence, not only when RecoverRaft stops raft.
func (m *Machine) AcceptsPeer() bool {
	return m.cfg.Mode == Witness || !(m.fenced || m.recovering || m.soleVoter)
}

// SoleVoter reports whether this node is, to its knowledge, raft's only voter.
func (m *Machine) SoleVoter() bool { return m.soleVoter }

func (m *Machine) fenceNow(now time.Time, why string) []Action {
	if m.fs == inflight {
		return nil
	}
	m.fs = inflight
	return []Action{{Kind: Fence, Node: m.cfg.Peer, Reason: why}}
}

// count is the race's measure: groups this node runs, groups the state
// gives the peer.
func (m *Machine) count() (mine, theirs int) {
	for _, g := range m.groups {
		if g.RunningHere {
			mine++
		} else if g.Holder == m.cfg.Peer {
			theirs++
		}
	}
	return mine, theirs
}

func (m *Machine) required(g Group) bool {
	return g.Policy == Always || (g.Policy == WhenNeeded && g.Uncovered)
}

// offer (two-node) gives the peer's groups once this node may take them.
func (m *Machine) offer() []Action {
	if !m.soleVoter || !m.fenced {
		return nil
	}
	var out []Action
	for _, g := range m.groups {
		if g.Holder == m.cfg.Peer && !m.offered[g.Name] {
			m.offered[g.Name] = true
			out = append(out, Action{Kind: MayTakeOver, Group: g.Name, Node: m.cfg.Peer, Reason: "the peer is confirmed off"})
		}
	}
	return out
}

// witnessCheck fences before a takeover the group's policy guards: when
// the old holder is not heard, or has not reported the group stopped
// within ReportWait while heard.
func (m *Machine) witnessCheck(now time.Time) []Action {
	need := false
	live := map[string]bool{}
	for _, g := range m.groups {
		if g.Holder == m.cfg.Self && g.From == m.cfg.Peer && m.required(g) && !g.FromStopped && !m.covers(g) {
			key := fmt.Sprintf("%s@%d", g.Name, g.FromEpoch)
			live[key] = true
			since, ok := m.pending[key]
			if !ok {
				since = now
				m.pending[key] = now
			}
			overdue := m.cfg.ReportWait > 0 && !now.Before(since.Add(m.cfg.ReportWait))
			if !m.heard || overdue {
				need = true
			}
		}
	}
	for key := range m.pending {
		if !live[key] {
			delete(m.pending, key)
		}
	}
	if !need && m.needFence && (m.fs == scheduled || m.fs == retrying) {
		// the takeover went elsewhere or its old holder reported the stop
		m.needFence, m.fs = false, idle
		return []Action{{Kind: FenceCancelled, Node: m.cfg.Peer, Reason: "no takeover needs it any more"}}
	}
	if !need || m.needFence {
		return m.witnessOffer()
	}
	m.needFence = true
	return m.fenceNow(now, "a takeover from the unreachable peer needs it fenced (group fence: policy)")
}

// reportDue (witness) is when the oldest guarded takeover still waiting
// for its old holder's report, while that holder is heard, stops waiting
// (zero: none, or no ReportWait, or a fence is needed already).
func (m *Machine) reportDue() time.Time {
	if m.cfg.ReportWait <= 0 || m.needFence || !m.heard {
		return time.Time{}
	}
	var due time.Time
	for _, since := range m.pending {
		if at := since.Add(m.cfg.ReportWait); due.IsZero() || at.Before(due) {
			due = at
		}
	}
	return due
}

// covers: a confirmed fence since the peer was last lost ended the
// peer's holding of g that is being taken over.
func (m *Machine) covers(g Group) bool {
	e, ok := m.covered[g.Name]
	return m.fenced && ok && g.FromEpoch <= e
}

func (m *Machine) witnessOffer() []Action {
	if !m.fenced {
		return nil
	}
	var out []Action
	for _, g := range m.groups {
		key := fmt.Sprintf("%s@%d", g.Name, g.FromEpoch) // each takeover once
		if g.Holder == m.cfg.Self && g.From == m.cfg.Peer && m.covers(g) && !m.offered[key] {
			m.offered[key] = true
			out = append(out, Action{Kind: MayTakeOver, Group: g.Name, Node: m.cfg.Peer, Reason: "the old holder is confirmed off"})
		}
	}
	return out
}
