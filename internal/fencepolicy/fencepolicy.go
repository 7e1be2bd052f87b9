// Package fencepolicy owns the decisions of fencing (issue 13,
// docs/two-node.md): when a node fences its peer, now or after the race
// delay, when a failed fence is retried, when a two-node survivor recovers
// raft to a single voter and re-adds its peer, when a group may be taken
// over from the peer, and wait-for-all after a restart. It is pure: every
// input carries the time, nothing here sleeps, reads a clock or does I/O.
// It does not drive fence devices (internal/fence does, behind Fencer) and
// does not decide where groups run (internal/placement does); it gates.
//
// One Machine per data node, about its one peer (tandem runs pairs).
//
// It imports nothing of tandem's; internal/node is meant to wire it.
package fencepolicy

import (
	"context"
	"fmt"
	"time"
)

// Fencer is the seam to the fence devices: Fence powers node off and
// reports confirmed only on a verified off (off, or reboot then status
// off). internal/fence implements it; Memory is the in-memory twin.
type Fencer interface {
	Fence(ctx context.Context, node, reason string) (confirmedOff bool, err error)
}

// Mode is how the cluster keeps its quorum.
type Mode int

const (
	// Witness: three voters; the quorum lease protects the groups and
	// fencing is by group policy.
	Witness Mode = iota
	// TwoNode: two voters and no witness; every takeover from the lost
	// peer fences it first.
	TwoNode
)

// Policy is a group's fence: policy (consulted in witness mode only).
type Policy int

const (
	// WhenNeeded fences before a takeover from an unreachable holder when
	// the group has a resource the lease cannot stop by itself.
	WhenNeeded Policy = iota
	// Always fences before every takeover from an unreachable holder.
	Always
	// Never fences.
	Never
)

// Outcome is the result of one fence attempt.
type Outcome int

const (
	Confirmed Outcome = iota // the peer is verified off
	Failed                   // the device said no, or the peer is not verified off
	TimedOut                 // no answer within the device's timeout
)

func (o Outcome) String() string {
	switch o {
	case Confirmed:
		return "confirmed"
	case Failed:
		return "failed"
	case TimedOut:
		return "timed out"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Config is a machine's fixed setup.
type Config struct {
	Self, Peer string
	Mode       Mode
	// Preferred breaks the race when both nodes run as many groups: it
	// fences at once, the other waits FenceDelay. Must be the same on both.
	Preferred string
	// FenceDelay: how long the race's loser waits after losing the peer.
	// Must exceed detection skew plus the longest confirmed fence.
	FenceDelay time.Duration
	// RetryMin, RetryMax bound the doubling backoff between attempts, and
	// RetryMin paces a re-add that did not happen.
	RetryMin, RetryMax time.Duration
	// ReportWait (witness mode): how long a guarded takeover waits for
	// the old holder's stop report while this node still hears it; then
	// it fences it anyway (0: never while heard). A holder this node hears
	// but the leader does not (its link to the witness cut) loses its
	// lease and stops, but its report cannot reach the leader: without
	// this the takeover would wait for as long as the link is cut.
	ReportWait time.Duration
}

// Validate reports a configuration the machine cannot work with.
func (c Config) Validate() error {
	switch {
	case c.Self == "" || c.Peer == "" || c.Self == c.Peer:
		return fmt.Errorf("fencepolicy: self %q and peer %q must be two names", c.Self, c.Peer)
	case c.Preferred != c.Self && c.Preferred != c.Peer:
		return fmt.Errorf("fencepolicy: preferred node %q is neither %q nor %q", c.Preferred, c.Self, c.Peer)
	case c.RetryMin <= 0 || c.RetryMax < c.RetryMin:
		return fmt.Errorf("fencepolicy: retry backoff %v..%v", c.RetryMin, c.RetryMax)
	case c.Mode == TwoNode && c.FenceDelay <= 0:
		return fmt.Errorf("fencepolicy: two-node mode needs a fence delay > 0")
	}
	return nil
}

// Group is what the machine needs of one group.
type Group struct {
	Name string
	// Holder is the holder in this node's replicated state ("" none).
	Holder string
	// From is the holder it is being taken over from, when Holder is this
	// node and the takeover has not started yet ("" otherwise).
	From string
	// FromEpoch is the epoch at which From held the group (witness mode:
	// a confirmed fence covers only holdings it can have ended, those at
	// an epoch not newer than the state showed when it was confirmed).
	FromEpoch uint64
	// Epoch is the group's epoch in this node's replicated state.
	Epoch uint64
	// FromStopped: From reported the group stopped (a handover, or a stop
	// at its lease's end) through the replicated state.
	FromStopped bool
	// RunningHere: this node runs (part of) the group now.
	RunningHere bool
	Policy      Policy
	// Uncovered: the group has a resource the lease cannot stop by itself
	// (anything but VIPs and replicated volumes).
	Uncovered bool
}

// Kind is the kind of an action.
type Kind int

const (
	Fence          Kind = iota // fence Node now
	FenceScheduled             // the race's loser will fence Node at At
	RetryScheduled             // an attempt failed; the next is at At
	FenceCancelled             // the peer was heard again: a scheduled fence is off
	RecoverRaft                // two-node: make this node raft's only voter (offline)
	ReaddPeer                  // two-node: add Node back as a voter
	MayTakeOver                // Group, held by the peer, may be taken over now
	Waiting                    // nothing may start yet; Reason says why
	Report                     // for the log and events
)

var kindNames = [...]string{"fence", "fence-scheduled", "retry-scheduled", "fence-cancelled", "recover-raft", "readd-peer", "may-take-over", "waiting", "report"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Action is one output.
type Action struct {
	Kind   Kind
	Node   string
	Group  string
	At     time.Time
	Reason string
}

func (a Action) String() string {
	s := a.Kind.String()
	if a.Node != "" {
		s += " " + a.Node
	}
	if a.Group != "" {
		s += " " + a.Group
	}
	if !a.At.IsZero() {
		s += " at " + a.At.Format("15:04:05.000")
	}
	if a.Reason != "" {
		s += ": " + a.Reason
	}
	return s
}
