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
// replicated state and gates the manager's starts on MayStart.
//
// Witness mode only: two-node mode (no witness) also needs raft recovered
// to one voter and the self-granted lease (docs/two-node.md, "What the
// integration needs"), which are not wired yet; config still requires a
// witness.
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
}

// newFencing returns the adapter, or nil when no device can fence the
// peer (then no takeover waits on a fence: config refuses a group with
// fence: always without one).
func newFencing(n *Node, f *fence.Fencer) (*fencing, error) {
	cfg := n.cfg
	if cfg.Witness == nil {
		return nil, nil
	}
	peer := ""
	for _, v := range cfg.Nodes {
		if v.Name != n.self {
			peer = v.Name
		}
	}
	topo, ok := f.Topologies[peer]
	if peer == "" || !ok || len(topo.Levels) == 0 {
		return nil, nil
	}
	var fencer fencepolicy.Fencer = fence.OffConfirmer{F: f}
	if n.opts.Fencer != nil {
		fencer = n.opts.Fencer
	}
	a := &fencing{n: n, peer: peer, fencer: fencer,
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
	m, err := fencepolicy.New(fencepolicy.Config{Self: n.self, Peer: peer, Mode: fencepolicy.Witness,
		Preferred: cfg.Nodes[0].Name, RetryMin: time.Second, RetryMax: 30 * time.Second, ReportWait: reportWait})
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
	a.run(a.m.Start(time.Now(), false))
	go a.watchFreeze(ctx)
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

// run carries out the machine's actions; a.mu is held.
func (a *fencing) run(acts []fencepolicy.Action) {
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
		case fencepolicy.Waiting, fencepolicy.Report:
			a.n.log.Info("fencing", "peer", act.Node, "group", act.Group, "note", act.Reason)
			a.last = act.Reason
		case fencepolicy.RecoverRaft, fencepolicy.ReaddPeer:
			// two-node mode only, which newFencing does not build
			a.n.log.Error("fencing: two-node action without two-node wiring", "action", act.String())
		}
	}
	a.schedule()
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
