package replication

import "fmt"

// Side is what one replica tells the other in the connect handshake: what
// Decide needs to choose the sync direction, and what the split-brain
// policies need to pick a victim.
type Side struct {
	// Node names the replica's node; it breaks ties (the lower name wins)
	// where nothing else can. The two sides' names differ.
	Node   string
	GenIDs GenIDs
	Disk   DiskState
	Role   Role
	// CrashedPrimary: the replica was primary when its node last stopped
	// without demoting it (its activity log was folded into its bitmap).
	CrashedPrimary bool
	// DirtyBytes is what its dirty bitmap covers: what it wrote that the
	// peer may lack (region-rounded).
	DirtyBytes int64
	// PrimaryEpoch is the epoch of its newest promotion (0: never primary).
	PrimaryEpoch Epoch
	// Discard: `resolve --discard` named this replica; a split brain is
	// resolved by making it the sync target.
	Discard bool
}

// Verdict is what the handshake decided for this side.
type Verdict uint8

const (
	// NoSync: the replicas hold the same data.
	NoSync Verdict = iota
	// SyncSource: this side sends the peer what it lacks.
	SyncSource
	// SyncTarget: this side receives what it lacks; Inconsistent until done.
	SyncTarget
	// SplitBrain: both sides changed the data apart; nothing moves until a
	// policy or `resolve --discard` picks the side whose changes are lost.
	SplitBrain
	// Unrelated: the replicas share no history; the connection is refused.
	Unrelated
	// Refused: the ids would allow a sync, but the disk states or roles
	// forbid it (an Inconsistent source, a primary target).
	Refused
)

var verdictNames = [...]string{"no-sync", "sync-source", "sync-target", "split-brain", "unrelated", "refused"}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return fmt.Sprintf("Verdict(%d)", uint8(v))
}

// Decision is the outcome of a connect handshake from one side's view.
type Decision struct {
	Verdict Verdict
	// Full: for SyncSource/SyncTarget every region moves, not only the
	// dirty ones; for SplitBrain there is no common bitmap ancestor, so a
	// resolution moves every region.
	Full bool
	// Rule names the table row that decided (docs/replication.md).
	Rule   string
	Reason string
}

// Mirror is the same decision seen from the other side.
func (d Decision) Mirror() Decision {
	switch d.Verdict {
	case SyncSource:
		d.Verdict = SyncTarget
	case SyncTarget:
		d.Verdict = SyncSource
	}
	return d
}

func (d Decision) String() string {
	s := d.Verdict.String()
	if d.Full {
		s += " (full)"
	}
	return s + ": " + d.Rule + ": " + d.Reason
}

// Decide compares two replicas' histories at connect, as DRBD's
// drbd_uuid_compare does, and says what self must do. It is symmetric:
// Decide(b, a) is Decide(a, b).Mirror(). The rows, in order, are in
// docs/replication.md; split brains are returned unresolved (see Resolve).
func Decide(self, peer Side) Decision {
	if self.Disk == Diskless || peer.Disk == Diskless {
		return Decision{NoSync, false, "diskless", "a diskless replica has no data to compare; I/O goes to the replica with a disk"}
	}
	d := compareGenIDs(self, peer)
	return applyDiskStates(d, self, peer)
}

// compareGenIDs is the generation-identifier table proper.
func compareGenIDs(self, peer Side) Decision {
	s, p := self.GenIDs, peer.GenIDs
	sNew := s.Current == JustCreated || s.Current == 0
	pNew := p.Current == JustCreated || p.Current == 0
	switch {
	case sNew && pNew:
		return Decision{NoSync, false, "both-just-created", "neither replica was ever written through the volume"}
	case sNew:
		return Decision{SyncTarget, true, "self-just-created", "this replica was never written; it takes all of the peer's data"}
	case pNew:
		return Decision{SyncSource, true, "peer-just-created", "the peer was never written; it takes all of this replica's data"}
	}
	if s.Current == p.Current {
		return equalCurrent(self, peer)
	}
	sBmP, pBmS := s.Bitmap != 0 && s.Bitmap == p.Current, p.Bitmap != 0 && p.Bitmap == s.Current
	switch {
	case sBmP && pBmS:
		return Decision{SplitBrain, true, "bitmaps-crossed", "each side's bitmap id is the other's current id"}
	case sBmP:
		return Decision{SyncSource, false, "self-bitmap-is-peer-current", "the peer is where this replica was when it lost the peer; the bitmap says what changed"}
	case pBmS:
		return Decision{SyncTarget, false, "peer-bitmap-is-self-current", "this replica is where the peer was when it lost this one; the peer's bitmap says what changed"}
	}
	// A sync target whose source recorded the end of the resync and the
	// target did not: it lacks only what both bitmaps cover.
	sEndedP := peer.Disk == Inconsistent && p.Current == s.History[0] && s.History[0] != 0
	pEndedS := self.Disk == Inconsistent && s.Current == p.History[0] && p.History[0] != 0
	switch {
	case sEndedP && !pEndedS:
		return Decision{SyncSource, false, "resync-end-on-self-only", "the peer is the Inconsistent target of a resync this replica recorded as done; the bitmaps cover the rest"}
	case pEndedS && !sEndedP:
		return Decision{SyncTarget, false, "resync-end-on-peer-only", "this replica is the Inconsistent target of a resync the peer recorded as done; the bitmaps cover the rest"}
	}
	sHasP, pHasS := inHistory(p.Current, s), inHistory(s.Current, p)
	switch {
	case sHasP && pHasS:
		return Decision{SplitBrain, true, "histories-crossed", "each side's current id is in the other's history"}
	case sHasP:
		return Decision{SyncSource, true, "peer-current-in-self-history", "the peer holds an older generation of this replica's data, beyond what the bitmap covers"}
	case pHasS:
		return Decision{SyncTarget, true, "self-current-in-peer-history", "this replica holds an older generation of the peer's data, beyond what the bitmap covers"}
	}
	if s.Bitmap != 0 && s.Bitmap == p.Bitmap {
		return Decision{SplitBrain, false, "common-bitmap", "both sides changed the data since they parted at the same generation; the two bitmaps cover every difference"}
	}
	if commonAncestor(s, p) {
		return Decision{SplitBrain, true, "common-history", "both sides changed the data and share only an older generation; only a full sync can resolve it"}
	}
	// The Inconsistent target of an initial sync the source never recorded.
	sInit := self.Disk == Inconsistent && s.Bitmap == 0 && s.History[0] == JustCreated
	pInit := peer.Disk == Inconsistent && p.Bitmap == 0 && p.History[0] == JustCreated
	switch {
	case pInit && !sInit:
		return Decision{SyncSource, true, "peer-initial-sync", "the peer is the target of an initial sync this replica never recorded; it takes all of this replica's data"}
	case sInit && !pInit:
		return Decision{SyncTarget, true, "self-initial-sync", "this replica is the target of an initial sync the peer never recorded; it takes all of the peer's data"}
	}
	return Decision{Unrelated, false, "unrelated", "the replicas share no generation: different data, refused"}
}

// equalCurrent: the same generation on both sides. Data differs only where
// one side wrote without the peer and without starting a new generation:
// a crashed primary (its activity log), a primary that lost its peer and
// is still waiting for the fencer, a verify repair, a source whose
// target acknowledged regions it then lost.
func equalCurrent(self, peer Side) Decision {
	if self.CrashedPrimary && peer.CrashedPrimary {
		if self.Node < peer.Node {
			return Decision{SyncSource, false, "both-crashed-primary", "both were primary at a crash; the lower node name is the source"}
		}
		return Decision{SyncTarget, false, "both-crashed-primary", "both were primary at a crash; the lower node name is the source"}
	}
	if self.CrashedPrimary != peer.CrashedPrimary {
		if self.CrashedPrimary {
			return Decision{SyncSource, false, "self-crashed-primary", "this replica crashed as primary; its activity-log regions go to the peer"}
		}
		return Decision{SyncTarget, false, "peer-crashed-primary", "the peer crashed as primary; its activity-log regions come here"}
	}
	sAhead := self.GenIDs.Bitmap != 0 || self.DirtyBytes > 0
	pAhead := peer.GenIDs.Bitmap != 0 || peer.DirtyBytes > 0
	switch {
	case sAhead && pAhead:
		return Decision{SplitBrain, false, "equal-both-dirty", "both sides wrote on the same generation without the other"}
	case sAhead && peer.Role == Primary && self.Role != Primary:
		return Decision{SyncTarget, false, "equal-peer-primary", "same generation; this replica has dirty regions (a verify repair, a demoted primary's) but the peer is primary: its data moves over both bitmaps"}
	case pAhead && self.Role == Primary && peer.Role != Primary:
		return Decision{SyncSource, false, "equal-self-primary", "same generation; the peer has dirty regions (a verify repair, a demoted primary's) but this replica is primary: its data moves over both bitmaps"}
	case sAhead:
		return Decision{SyncSource, false, "equal-self-dirty", "same generation, but this replica holds writes the peer lacks"}
	case pAhead:
		return Decision{SyncTarget, false, "equal-peer-dirty", "same generation, but the peer holds writes this replica lacks"}
	}
	return Decision{NoSync, false, "equal", "the same generation and nothing written apart"}
}

func inHistory(id GenID, g GenIDs) bool {
	return id != 0 && (g.History[0] == id || g.History[1] == id)
}

// commonAncestor: some generation other than the current ones appears on
// both sides (bitmap or history).
func commonAncestor(s, p GenIDs) bool {
	for _, a := range [3]GenID{s.Bitmap, s.History[0], s.History[1]} {
		if a == 0 || a == JustCreated {
			continue
		}
		for _, b := range [3]GenID{p.Bitmap, p.History[0], p.History[1]} {
			if a == b {
				return true
			}
		}
	}
	return false
}

// applyDiskStates lets disk states override or veto the table: an
// Inconsistent replica facing a consistent one is always the target; a
// source must be consistent; a primary is never a target.
func applyDiskStates(d Decision, self, peer Side) Decision {
	if d.Verdict == Unrelated {
		return d
	}
	sInc, pInc := self.Disk == Inconsistent, peer.Disk == Inconsistent
	if sInc != pInc {
		full := d.Full // a full sync, or a split brain without a common bitmap
		if sInc && d.Verdict != SyncTarget {
			d = Decision{SyncTarget, full, "self-inconsistent", "this replica is Inconsistent and the peer is not"}
		} else if pInc && d.Verdict != SyncSource {
			d = Decision{SyncSource, full, "peer-inconsistent", "the peer is Inconsistent and this replica is not"}
		}
	}
	switch {
	case d.Verdict == SyncSource && sInc, d.Verdict == SyncTarget && pInc:
		return Decision{Refused, d.Full, d.Rule, "the sync source would be Inconsistent (" + d.Reason + ")"}
	case d.Verdict == SyncTarget && self.Role == Primary, d.Verdict == SyncSource && peer.Role == Primary:
		return Decision{Refused, d.Full, d.Rule, "the sync target would be the primary (" + d.Reason + ")"}
	}
	return d
}
