package replication

import (
	"fmt"
	"strings"
)

// SplitBrainPolicy says what happens, without an operator, when the
// handshake finds a split brain that a bitmap resync can heal (both sides
// parted at the same generation). A split brain without a common bitmap
// ancestor is never resolved automatically: only `resolve --discard` does.
type SplitBrainPolicy uint8

const (
	// Disconnect (the default): report the split brain and stay apart
	// until `resolve --discard NODE`.
	Disconnect SplitBrainPolicy = iota
	// DiscardZeroChanges: if exactly one side wrote nothing since the
	// split, it becomes the target (nothing is lost); if neither wrote,
	// the lower node name is the source; otherwise disconnect.
	DiscardZeroChanges
	// DiscardYoungerPrimary: the side promoted at the newer epoch loses
	// its changes (DRBD's meaning: the older primary kept the service);
	// equal epochs disconnect.
	DiscardYoungerPrimary
	// DiscardOlderPrimary: the side promoted at the older epoch loses its
	// changes. With the cluster's epochs this is the safe automatic
	// choice: the newer epoch is the holder the cluster chose, and in sync
	// mode the older primary acknowledged nothing the newer one lacks
	// (its fencer could not outdate a promoted peer). Equal epochs
	// disconnect.
	DiscardOlderPrimary
)

var policyNames = [...]string{"disconnect", "discard-zero-changes", "discard-younger-primary", "discard-older-primary"}

func (p SplitBrainPolicy) String() string {
	if int(p) < len(policyNames) {
		return policyNames[p]
	}
	return fmt.Sprintf("SplitBrainPolicy(%d)", uint8(p))
}

// ParseSplitBrainPolicy reads the form String prints.
func ParseSplitBrainPolicy(s string) (SplitBrainPolicy, error) {
	for i, n := range policyNames {
		if n == s {
			return SplitBrainPolicy(i), nil
		}
	}
	return 0, fmt.Errorf("replication: split-brain policy %q: want one of %v", s, policyNames)
}

// Resolve turns a SplitBrain decision into a sync direction when an
// operator named the victim (Side.Discard on exactly one side) or the
// policy picks one; anything else stays SplitBrain with the reason. It is
// symmetric like Decide. A primary is never made the target: its changes
// are in use.
func Resolve(d Decision, self, peer Side, policy SplitBrainPolicy) Decision {
	if d.Verdict != SplitBrain {
		return d
	}
	victim, how := pickVictim(d, self, peer, policy)
	switch victim {
	case 0:
		d.Reason += "; " + how
		return d
	case 1:
		if why := unfitPair(peer, self); why != "" {
			d.Reason += "; " + how + ", but " + why
			return d
		}
		return Decision{SyncTarget, d.Full, d.Rule, resolvedPrefix + how}
	default:
		if why := unfitPair(self, peer); why != "" {
			d.Reason += "; " + how + ", but " + why
			return d
		}
		return Decision{SyncSource, d.Full, d.Rule, resolvedPrefix + how}
	}
}

const resolvedPrefix = "split brain resolved: "

// ResolvedSplitBrain reports whether d is a sync direction Resolve chose
// for a split brain (a policy or resolve --discard): the target's own
// writes since the split are discarded.
func (d Decision) ResolvedSplitBrain() bool { return strings.HasPrefix(d.Reason, resolvedPrefix) }

// unfitPair says why source cannot sync to target ("" if it can).
func unfitPair(source, target Side) string {
	switch {
	case target.Role == Primary:
		return target.Node + " is primary: demote it first"
	case source.Disk == Inconsistent:
		return source.Node + " is Inconsistent and cannot be the source"
	}
	return ""
}

// pickVictim: 0 none, 1 self, 2 peer; and why.
func pickVictim(d Decision, self, peer Side, policy SplitBrainPolicy) (int, string) {
	switch {
	case self.Discard && peer.Discard:
		return 0, "both sides were told to discard their data"
	case self.Discard:
		return 1, "discarding " + self.Node + "'s changes (resolve --discard)"
	case peer.Discard:
		return 2, "discarding " + peer.Node + "'s changes (resolve --discard)"
	}
	if d.Full {
		return 0, "no common bitmap ancestor: only resolve --discard NODE can heal it (full sync)"
	}
	switch policy {
	case DiscardZeroChanges:
		switch {
		case self.DirtyBytes == 0 && peer.DirtyBytes == 0:
			if self.Node < peer.Node {
				return 2, "neither side wrote since the split (discard-zero-changes)"
			}
			return 1, "neither side wrote since the split (discard-zero-changes)"
		case self.DirtyBytes == 0:
			return 1, self.Node + " wrote nothing since the split (discard-zero-changes)"
		case peer.DirtyBytes == 0:
			return 2, peer.Node + " wrote nothing since the split (discard-zero-changes)"
		}
		return 0, "both sides wrote since the split (discard-zero-changes cannot choose)"
	case DiscardYoungerPrimary:
		switch {
		case self.PrimaryEpoch > peer.PrimaryEpoch:
			return 1, self.Node + " is the younger primary (discard-younger-primary)"
		case peer.PrimaryEpoch > self.PrimaryEpoch:
			return 2, peer.Node + " is the younger primary (discard-younger-primary)"
		}
		return 0, "both primaries are of the same epoch (discard-younger-primary cannot choose)"
	case DiscardOlderPrimary:
		switch {
		case self.PrimaryEpoch < peer.PrimaryEpoch:
			return 1, self.Node + " is the older primary (discard-older-primary)"
		case peer.PrimaryEpoch < self.PrimaryEpoch:
			return 2, peer.Node + " is the older primary (discard-older-primary)"
		}
		return 0, "both primaries are of the same epoch (discard-older-primary cannot choose)"
	}
	return 0, "policy disconnect: resolve it with resolve --discard NODE"
}
