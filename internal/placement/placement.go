// Package placement owns the decision of where each group should run. It is
// pure: Decide takes the configuration of the groups, the replicated state,
// what the deciding node knows of liveness, and the time, and returns the
// place commands to propose. Only the consensus leader runs it. It imports
// internal/config (types only) and internal/state.
//
// Rules, per group:
//   - A node is eligible when it is in the group's nodes, reachable, not in
//     standby or maintenance, and not banned for the group (a hard failure,
//     or restarts exhausted, within failure_timeout). A blocked group (fatal
//     failure) is eligible nowhere.
//   - score(n) = 100 × (len(prefer) − position of n in prefer), 0 if absent.
//   - A group pinned by an admin failover stays on its pinned node while
//     that node is eligible (no failback away from it), and goes there first
//     when it has to move.
//   - No holder: place on the best eligible node (highest score, then config
//     order). A never-placed group waits up to Settle after the decider
//     became leader for its best-scored node to show up, so a cold start
//     places it once, on its preferred node.
//   - Holder not eligible: move to the best eligible node; if there is none,
//     stop it ("") when the holder is alive, or leave it when the holder is
//     unreachable (nobody can run it safely anyway).
//   - Holder eligible: failback when a better node exists and
//     score(best) > score(holder) + stickiness: manual never; auto once best
//     has been reachable for Settle; delay D once best has been reachable for D.
//     After a takeover away from best, also not before best has been
//     reachable for the group's failback_hold (a blip is one move, not two).
//   - A move off a reachable holder is a handover (DESIGN S1, "a planned
//     move stops the old node completely before the new one starts"): the
//     holder keeps the group at its epoch, stops it, releases the lease and
//     reports it handed over; only then does the target get it. A move off
//     an unreachable holder is a takeover at once (the new holder still
//     waits for the old lease to end). A pending handover whose target is no
//     longer eligible is redirected to the best node, or called off when the
//     holder may keep the group.
//   - A node whose agent is shutting down (leaving) is not eligible: its
//     groups are handed over before it stops.
//   - A node whose replica of a volume the group promotes is known not to
//     be UpToDate (the holder reported it Outdated or Inconsistent) is not
//     eligible as a target: starting there would serve stale data. A
//     replica never reported (a new volume) is left to the replication
//     engine, which refuses to promote what is not UpToDate.
//   - With BlockDrift, a node whose announced configuration digest differs
//     from the one a majority of voters run is not eligible as a target
//     (a group it holds stays: moving it would be an outage of its own).
//   - Cluster maintenance: no decisions. A holder in node maintenance is left
//     alone.
package placement

import (
	"fmt"
	"time"

	"tandem/internal/config"
	"tandem/internal/state"
)

// Input is everything a decision depends on.
type Input struct {
	Now    time.Time
	Groups []config.Group
	State  *state.State
	// Reachable: nodes the decider believes alive (seen by it, or by a
	// voter it sees). ReachableSince: since when, continuously.
	Reachable      map[string]bool
	ReachableSince map[string]time.Time
	// LastHeard and DownAt describe an unreachable node, to time takeovers.
	LastHeard map[string]time.Time
	DownAt    map[string]time.Time
	// LeaderSince is when the decider became leader.
	LeaderSince time.Time
	// Settle is how long a returning or starting node must be reachable
	// before a group moves to it by preference (not by necessity).
	Settle time.Duration
	// Voters are every voter's name (for the cluster's configuration
	// digest); BlockDrift makes a node whose configuration differs from
	// the cluster's ineligible as a target (config_mismatch: block).
	Voters     []string
	BlockDrift bool
}

// Decide returns the place commands for every group that should move.
func Decide(in Input) []state.Command {
	if in.State.Maintenance {
		return nil
	}
	var out []state.Command
	for i := range in.Groups {
		if c, ok := decideGroup(in, &in.Groups[i]); ok {
			out = append(out, c)
		}
	}
	return out
}

func decideGroup(in Input, g *config.Group) (state.Command, bool) {
	gs := in.State.Groups[g.Name]
	if gs == nil {
		gs = &state.Group{}
	}
	holder := gs.Holder
	place := func(to, reason string) (state.Command, bool) {
		c := state.Command{Op: state.OpPlace, Time: in.Now, Group: g.Name, Holder: to, Epoch: gs.Epoch, Reason: reason}
		if holder != "" && !in.Reachable[holder] {
			c.Takeover = &state.Takeover{From: holder, To: to, At: in.Now, DownAt: in.DownAt[holder]}
			if lh, down := in.LastHeard[holder], in.DownAt[holder]; !lh.IsZero() && !down.IsZero() {
				c.Takeover.DetectMs = down.Sub(lh).Milliseconds()
			}
		}
		return c, true
	}
	// move takes the group off its holder: a handover when the holder can
	// stop it first, a takeover when it cannot be reached.
	move := func(to, reason string) (state.Command, bool) {
		if to == "" || !in.Reachable[holder] {
			return place(to, reason)
		}
		if gs.Handover == to {
			return state.Command{}, false // under way
		}
		return state.Command{Op: state.OpHandover, Time: in.Now, Group: g.Name, Holder: to, Epoch: gs.Epoch, Reason: reason}, true
	}
	if holder != "" && in.nodeState(holder).Maintenance {
		return state.Command{}, false
	}
	if gs.Blocked != "" {
		if holder != "" {
			return place("", "blocked: "+gs.Blocked)
		}
		return state.Command{}, false
	}
	best, ok := in.best(g, gs)
	if gs.Pinned != "" && in.eligible(g, gs, gs.Pinned) {
		if holder == gs.Pinned {
			return state.Command{}, false
		}
		best, ok = gs.Pinned, true
	}
	switch {
	case holder == "":
		if !ok {
			return state.Command{}, false
		}
		if gs.Epoch == 0 && score(g, best) < topScore(g) && in.Now.Sub(in.LeaderSince) < in.Settle {
			return state.Command{}, false // cold start: give the preferred node a moment
		}
		return place(best, "start")
	case !in.eligible(g, gs, holder):
		why := in.whyNot(g, gs, holder)
		if ok {
			return move(best, fmt.Sprintf("%s %s", holder, why))
		}
		if in.Reachable[holder] {
			return place("", fmt.Sprintf("%s %s and no other node is eligible", holder, why))
		}
		return state.Command{}, false
	case gs.Handover != "":
		// A handover off an eligible holder (admin failover, failback)
		// goes on while its target can take the group.
		if in.eligible(g, gs, gs.Handover) {
			return state.Command{}, false
		}
		return state.Command{Op: state.OpHandover, Time: in.Now, Group: g.Name, Holder: "", Epoch: gs.Epoch,
			Reason: fmt.Sprintf("handover called off: %s %s", gs.Handover, in.whyNot(g, gs, gs.Handover))}, true
	}
	if !ok || best == holder || score(g, best) <= score(g, holder)+g.Stickiness {
		return state.Command{}, false
	}
	up := in.Now.Sub(in.ReachableSince[best])
	if tk := gs.Takeover; tk != nil && tk.From == best && up < g.FailbackHold.D() {
		return state.Command{}, false // it lost the group by a takeover: hold it down
	}
	switch g.Failback.Mode {
	case config.FailbackAuto:
		if up >= in.Settle {
			return move(best, "failback to preferred node")
		}
	case config.FailbackDelay:
		if up >= g.Failback.Delay {
			return move(best, fmt.Sprintf("failback to preferred node after %v", g.Failback.Delay))
		}
	}
	return state.Command{}, false
}

func (in Input) nodeState(n string) state.Node {
	if s := in.State.Nodes[n]; s != nil {
		return *s
	}
	return state.Node{}
}

func (in Input) eligible(g *config.Group, gs *state.Group, n string) bool {
	return in.whyNot(g, gs, n) == ""
}

// BannedWhy says why n is banned from running g after failures, or ""
// when it is not (no ban, or it ran out: failure_timeout). The admin's
// `tandem failover --to` refuses such a target with the same rule.
func BannedWhy(g *config.Group, gs *state.Group, n string, now time.Time) string {
	if f := gs.Failures[n]; f != nil && f.Banned && f.ActiveFailure(now, g.FailureTimeout.D()) {
		return "is banned after failures (" + f.Reason + ")"
	}
	return ""
}

// whyNot says why n cannot run g, or "" when it can.
func (in Input) whyNot(g *config.Group, gs *state.Group, n string) string {
	allowed := false
	for _, m := range g.Nodes {
		allowed = allowed || m == n
	}
	switch {
	case !allowed:
		return "is not among the group's nodes"
	case !in.Reachable[n]:
		return "is unreachable"
	case in.nodeState(n).Standby:
		return "is in standby"
	case in.nodeState(n).Maintenance:
		return "is in maintenance"
	case in.nodeState(n).Leaving:
		return "is shutting down"
	case in.BlockDrift && n != gs.Holder && in.State.ConfigDiffers(n, in.Voters):
		return "runs another configuration than the cluster (config_mismatch: block)"
	}
	if why := BannedWhy(g, gs, n, in.Now); why != "" {
		return why
	}
	if n != gs.Holder {
		for _, r := range g.Resources {
			if r.Volume == nil {
				continue
			}
			if rep := in.State.ReplicaOf(r.Volume.Name, n); rep != nil && rep.Disk != state.DiskUpToDate {
				return fmt.Sprintf("holds an %s replica of volume %s (reported by %s at epoch %d)", rep.Disk, r.Volume.Name, rep.By, rep.Epoch)
			}
		}
	}
	return ""
}

func (in Input) best(g *config.Group, gs *state.Group) (string, bool) {
	best, bestScore := "", -1
	for _, n := range g.Nodes {
		if !in.eligible(g, gs, n) {
			continue
		}
		s := score(g, n)
		if n == gs.Holder {
			s += g.Stickiness
		}
		if s > bestScore {
			best, bestScore = n, s
		}
	}
	return best, best != ""
}

func score(g *config.Group, n string) int {
	for i, p := range g.Prefer {
		if p == n {
			return 100 * (len(g.Prefer) - i)
		}
	}
	return 0
}

func topScore(g *config.Group) int { return 100 * len(g.Prefer) }
