package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"tandem/internal/config"
	"tandem/internal/fence"
	"tandem/internal/fencepolicy"
	"tandem/internal/state"
)

// fencing is the adapter of internal/fencepolicy on a data node: it feeds
// the machine the peer's heartbeats and the applied state, runs the fences
// it asks for through internal/fence, records a confirmed fence in the
// replicated state and gates the manager's starts on MayStart. In
// two-node mode (no witness, docs/two-node.md) it also feeds the machine
// raft's joins, recovers raft to this node alone and adds the peer back
// when the machine says so, and applies its lease rules to the heartbeat
// runner and its cut-off of the peer to consensus.
type fencing struct {
	n      *Node
	peer   string
	fencer fencepolicy.Fencer
	// policy and uncovered, by group: the group's fence: policy and
	// whether it has a resource the lease cannot stop by itself.
	policy    map[string]fencepolicy.Policy
	uncovered map[string]bool
	// timeout bounds one Fence call: every level's devices with their
	// retries, and then some.
	timeout time.Duration

	mu    sync.Mutex
	m     *fencepolicy.Machine
	st    *state.State
	timer *time.Timer
	ctx   context.Context
	last  string // the machine's last report, for status
	// twoNode: the machine runs in two-node mode; peerIdx is the peer's
	// index among the voters. readding: an AddVoter is under way.
	twoNode  bool
	peerIdx  int
	readding bool
	// joinPoke wakes watchJoin at once (an applied state, the peer heard).
	joinPoke chan struct{}
}

// newFencing returns the adapter, or nil when no device can fence the
// peer (then no takeover waits on a fence: config refuses a group with
// fence: always without one).
func newFencing(n *Node, f *fence.Fencer) (*fencing, error) {
	cfg := n.cfg
	if len(cfg.Nodes) != 2 {
		return nil, nil // fencing decisions are about a pair
	}
	peer := ""
	for _, v := range cfg.Nodes {
		if v.Name != n.self {
			peer = v.Name
		}
	}
	topo, ok := f.Topologies[peer]
	if peer == "" || !ok || len(topo.Levels) == 0 {
		if cfg.IsTwoNode() { // config refuses it; a pair without it could never fail over
			return nil, fmt.Errorf("two-node mode needs a fence device for %s", peer)
		}
		return nil, nil
	}
	var fencer fencepolicy.Fencer = fence.OffConfirmer{F: f}
	if n.opts.Fencer != nil {
		fencer = n.opts.Fencer
	}
	a := &fencing{n: n, peer: peer, fencer: fencer, joinPoke: make(chan struct{}, 1),
		policy: map[string]fencepolicy.Policy{}, uncovered: map[string]bool{}, st: state.New()}
	a.timeout = topo.Budget() + 10*time.Second
	// A heard old holder's stop report is due within its lease, its
	// slowest stop and a commit; past that it is fenced all the same (its
	// report may have no way to the leader).
	var stop time.Duration
	for _, g := range cfg.Groups {
		a.policy[g.Name] = policyOf(g.Fence)
		a.uncovered[g.Name] = uncovered(g)
		for _, r := range g.Resources {
			stop = max(stop, r.StopTimeout.D())
		}
	}
	reportWait := cfg.Timing.Lease.D() + stop + cfg.Timing.RaftTimeout.D() + time.Second
	mc := fencepolicy.Config{Self: n.self, Peer: peer, Mode: fencepolicy.Witness,
		Preferred: cfg.Nodes[0].Name, RetryMin: time.Second, RetryMax: 30 * time.Second, ReportWait: reportWait}
	if cfg.IsTwoNode() {
		tn := cfg.TwoNodeSettings()
		mc.Mode, mc.Preferred, mc.FenceDelay, mc.ReportWait = fencepolicy.TwoNode, tn.Preferred, tn.FenceDelay.D(), 0
		a.twoNode = true
	}
	for i, v := range n.voters {
		if v.Name == peer {
			a.peerIdx = i
		}
	}
	m, err := fencepolicy.New(mc)
	if err != nil {
		return nil, err
	}
	a.m = m
	return a, nil
}

func policyOf(s string) fencepolicy.Policy {
	switch s {
	case config.FenceAlways:
		return fencepolicy.Always
	case config.FenceNever:
		return fencepolicy.Never
	}
	return fencepolicy.WhenNeeded
}

// uncovered: g has a resource that neither the kernel lease (VIPs) nor the
// epochs (replicated volumes) stop on a holder whose agent is dead or
// frozen.
func uncovered(g config.Group) bool {
	for i := range g.Resources {
		switch g.Resources[i].Kind() {
		case "vip", "volume":
		default:
			return true
		}
	}
	return false
}

// start begins the machine; ctx ends the fences in flight at Stop.
func (a *fencing) start(ctx context.Context) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ctx = ctx
	sole := a.twoNode && a.n.cons.SoleVoter()
	if sole {
		a.n.log.Warn("this node is raft's only voter (it fenced its peer before it restarted): it fences the peer again before it starts anything")
	}
	a.run(a.m.Start(time.Now(), sole))
	go a.watchFreeze(ctx)
	if a.twoNode {
		go a.watchJoin(ctx)
	}
}

// joinTick is how often watchJoin looks for a join while not paired.
const joinTick = 100 * time.Millisecond

// watchJoin (two-node) tells the machine when this node has joined its
// peer: raft's configuration has both voters, a leader is known, this node
// has caught up with it, and the peer is heard. Until then a restarted node
// waits for all.
func (a *fencing) watchJoin(ctx context.Context) {
	tick := time.NewTicker(joinTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-a.joinPoke:
		}
		a.mu.Lock()
		paired := a.m.Paired() || a.m.SoleVoter()
		a.mu.Unlock()
		if paired || !a.joined() {
			continue
		}
		a.mu.Lock()
		if !a.m.Paired() && !a.m.SoleVoter() {
			a.n.log.Info("joined the peer: both voters, caught up with the leader", "peer", a.peer)
			a.run(a.m.PeerJoined(time.Now()))
		}
		a.mu.Unlock()
	}
}

// joined reports whether this node has joined its peer (see watchJoin).
func (a *fencing) joined() bool {
	vs, err := a.n.cons.Voters()
	if err != nil || len(vs) != 2 || !a.n.hb.Up(a.peerIdx) {
		return false
	}
	return a.n.cons.CaughtUp(a.n.hb.Applied(a.peerIdx))
}

// freezeTick is how often watchFreeze looks at the clock.
const freezeTick = 50 * time.Millisecond

// watchFreeze tells the machine when this agent was not running for a
// node timeout or more (SIGSTOP, a VM paused, a stalled machine): what it
// heard of its peer before is stale (fencepolicy's Resume). The heartbeat
// runner judges the peer afresh over the next node timeout; then the
// machine is told what it found, so a loss it reported during the gap,
// or a peer that is gone, is not forgotten.
func (a *fencing) watchFreeze(ctx context.Context) {
	t := a.n.cfg.Timing
	limit := t.NodeTimeout.D()
	tick := time.NewTicker(freezeTick)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			gap := now.Sub(last)
			last = now
			if gap < limit+freezeTick {
				continue
			}
			a.n.log.Warn("this agent did not run for a while; what it heard of its peer is stale", "gap", gap.Round(time.Millisecond))
			a.mu.Lock()
			a.run(a.m.Resume(now))
			a.mu.Unlock()
			time.AfterFunc(limit+2*t.HeartbeatInterval.D(), a.refeed)
		}
	}
}

// refeed gives the machine the heartbeat runner's current judgement of
// the peer.
func (a *fencing) refeed() {
	for i, v := range a.n.voters {
		if v.Name != a.peer {
			continue
		}
		if a.n.hb.Up(i) {
			a.peerHeard()
		} else {
			a.peerLost()
		}
	}
}

// peerHeard and peerLost come from the heartbeat runner.
func (a *fencing) peerHeard() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.run(a.m.PeerHeard(time.Now()))
	a.pokeJoin()
}

func (a *fencing) peerLost() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.run(a.m.PeerLost(time.Now()))
}

// setState gives the machine the groups of a newly applied state.
func (a *fencing) setState(st *state.State) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.st = st
	var gs []fencepolicy.Group
	for _, g := range a.n.cfg.Groups {
		if s := st.Groups[g.Name]; s != nil {
			gs = append(gs, a.group(g.Name, s))
		}
	}
	a.run(a.m.SetGroups(time.Now(), gs))
	a.pokeJoin()
}

// pokeJoin has watchJoin look for a join now rather than at its next tick.
func (a *fencing) pokeJoin() {
	select {
	case a.joinPoke <- struct{}{}:
	default:
	}
}

func (a *fencing) group(name string, s *state.Group) fencepolicy.Group {
	g := fencepolicy.Group{Name: name, Holder: s.Holder, Epoch: s.Epoch,
		RunningHere: s.Holder == a.n.self && s.Running,
		Policy:      a.policy[name], Uncovered: a.uncovered[name]}
	if t := s.Takeover; t != nil && t.Epoch == s.Epoch && s.Holder == a.n.self {
		g.From, g.FromEpoch, g.FromStopped = t.From, t.FromEpoch, t.FromStopped
	}
	return g
}

// mayStart is the manager's gate: group may start here at epoch as far
// as fencing goes. A state behind the lease's epoch says no until it
// catches up (the manager asks again on every applied state).
func (a *fencing) mayStart(group string, epoch uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.st.Groups[group]
	if s == nil || s.Epoch != epoch || s.Holder != a.n.self {
		return false
	}
	return a.m.MayStart(a.group(group, s))
}

// waitingFor says what a start of group here waits for ("" nothing).
func (a *fencing) waitingFor(group string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.st.Groups[group]
	if s == nil || s.Holder != a.n.self {
		return ""
	}
	g := a.group(group, s)
	if g.From == "" || a.m.MayStart(g) {
		return ""
	}
	w := fmt.Sprintf("%s's stop report or a confirmed fence of %s", g.From, g.From)
	if a.last != "" {
		w += " (" + a.last + ")"
	}
	return w
}

// run carries out the machine's actions; a.mu is held. Nothing once the
// agent stops (its context ends): a dead agent fences nobody.
func (a *fencing) run(acts []fencepolicy.Action) {
	if a.ctx != nil && a.ctx.Err() != nil {
		return
	}
	for _, act := range acts {
		switch act.Kind {
		case fencepolicy.Fence:
			a.n.log.Warn("fencing the peer", "peer", act.Node, "why", act.Reason)
			go a.fence(act.Node, act.Reason)
		case fencepolicy.FenceScheduled, fencepolicy.RetryScheduled:
			a.n.log.Info("fence scheduled", "peer", act.Node, "at", act.At, "why", act.Reason)
		case fencepolicy.FenceCancelled:
			a.n.log.Info("fence cancelled", "peer", act.Node, "why", act.Reason)
		case fencepolicy.MayTakeOver:
			a.recordFenced(act.Group)
			if a.n.mgr != nil {
				a.n.mgr.MayStartChanged(act.Group)
			}
			a.n.poke() // two-node: placement may move the group here now
		case fencepolicy.Waiting, fencepolicy.Report:
			a.n.log.Info("fencing", "peer", act.Node, "group", act.Group, "note", act.Reason)
			a.last = act.Reason
		case fencepolicy.RecoverRaft:
			a.n.log.Warn("recovering raft to this node alone", "why", act.Reason)
			go a.recoverRaft()
		case fencepolicy.ReaddPeer:
			if !a.readding {
				a.readding = true
				go a.readd()
			}
		}
	}
	a.applyGates()
	a.schedule()
}

// applyGates hands the machine's two-node lease rules to the heartbeat
// runner and its cut-off of the peer to consensus; a.mu is held. Between a
// confirmed fence and the recovery the peer is still in raft's
// configuration, so consensus must refuse it: a fenced peer that reboots
// fast would otherwise rejoin the old pair. Once this node is the only
// voter raft refuses the peer by itself, and must reach it to add it back.
func (a *fencing) applyGates() {
	if !a.twoNode {
		return
	}
	accepts := a.m.AcceptsPeer()
	a.n.hb.SetTwoNode(a.m.SelfGrant(), !accepts)
	if a.n.cons != nil {
		a.n.cons.SetRefused(a.peer, !accepts && !a.m.SoleVoter())
	}
}

// recoverRaft runs consensus's Recover and tells the machine (outside
// a.mu: raft's shutdown waits for the state machine's apply, which takes
// a.mu).
func (a *fencing) recoverRaft() {
	start := time.Now()
	err := a.n.cons.Recover()
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.n.log.Error("raft recovery failed", "err", err)
		a.run(a.m.RaftRecoverFailed(time.Now(), err))
		return
	}
	a.n.log.Warn("raft recovered: this node is the only voter", "took", time.Since(start).Round(time.Millisecond))
	a.run(a.m.RaftRecovered(time.Now()))
	a.n.poke()
}

// readd adds the peer back as a voter (the machine asks again, paced, if
// it does not commit).
func (a *fencing) readd() {
	err := a.n.cons.AddVoter(a.peer, 10*time.Second)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.readding = false
	if err != nil {
		a.n.log.Info("peer not re-added yet", "peer", a.peer, "err", err)
		return
	}
	a.n.log.Warn("peer re-added as a voter", "peer", a.peer)
	a.run(a.m.PeerReadded(time.Now()))
}

// schedule arms the timer for the machine's next Tick; a.mu is held.
func (a *fencing) schedule() {
	next := a.m.NextTick()
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
	if next.IsZero() {
		return
	}
	a.timer = time.AfterFunc(max(time.Until(next), 0), func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.run(a.m.Tick(time.Now()))
	})
}

// fence runs one fence of the peer and hands the machine its outcome.
func (a *fencing) fence(peer, reason string) {
	a.mu.Lock()
	parent := a.ctx
	a.mu.Unlock()
	if parent.Err() != nil {
		return // the agent stopped before the fence began
	}
	ctx, cancel := context.WithTimeout(parent, a.timeout)
	ok, err := a.fencer.Fence(ctx, peer, reason)
	cancel()
	if parent.Err() != nil {
		return // the agent stops
	}
	o := fencepolicy.OutcomeOf(ok, err)
	if fence.IsTimeout(err) {
		o = fencepolicy.TimedOut
	}
	detail := ""
	if err != nil {
		detail = err.Error()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.run(a.m.FenceDone(time.Now(), o, detail))
}

// manual: the operator fenced the peer through this agent and it is
// confirmed off (fencepolicy's ManualFence).
func (a *fencing) manual() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.run(a.m.ManualFence(time.Now()))
}

// recordFenced writes a confirmed fence into the replicated state as the
// old holder's release of group: the takeover's start then no longer
// depends on this agent's memory (a restart forgets the fence, and must
// not stop the group it started on it). a.mu is held.
func (a *fencing) recordFenced(group string) {
	s := a.st.Groups[group]
	if s == nil || s.Takeover == nil || s.Takeover.FromStopped {
		return
	}
	c := state.Command{Op: state.OpReleased, Time: time.Now(), Group: group, Node: s.Takeover.From,
		Epoch: s.Takeover.FromEpoch, Actor: a.n.self,
		Reason: fmt.Sprintf("%s confirmed off by a fence from %s", s.Takeover.From, a.n.self)}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.n.cons.Propose(ctx, c); err != nil && !state.IsStaleEpoch(err) {
			a.n.log.Warn("fence not recorded in the cluster state", "group", group, "err", err)
		}
	}()
}
