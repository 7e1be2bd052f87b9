package replication

import "fmt"

// EventKind names a transition worth the audit log.
type EventKind uint8

const (
	EventConnected EventKind = iota
	EventDisconnected
	EventConnectRefused // unrelated data, refused by disk states or roles, size or volume mismatch
	EventSplitBrain
	EventResyncStarted
	EventResyncFinished
	EventVerifyMismatch
	EventVerifyFinished
	EventPeerOutdated
	EventFenceFailed
	EventOutdated // this replica was marked Outdated
	EventDiskDetached
	EventPeerDetached
	EventPromoted
	EventDemoted
	EventDeposed // a newer epoch was seen while primary
	EventStaleFrame
	EventAhead
)

var eventNames = [...]string{"connected", "disconnected", "connect_refused", "split_brain", "resync_started",
	"resync_finished", "verify_mismatch", "verify_finished", "peer_outdated", "fence_failed", "outdated",
	"disk_detached", "peer_detached", "promoted", "demoted", "deposed", "stale_frame", "ahead"}

func (k EventKind) String() string {
	if int(k) < len(eventNames) {
		return eventNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is one transition. Fields not meaningful for a kind are zero.
type Event struct {
	Kind     EventKind
	Decision Decision // connect decisions, split brain
	Reason   string
	// Bytes: resync started (to move) / finished (moved); verify finished
	// (checked).
	Bytes int64
	// SelfDirty / PeerDirty: split brain, and connected as a resync's
	// source or target: what each side wrote since they parted
	// (bitmap-rounded bytes; a target's own are overwritten, discarded
	// when a split brain was resolved against it); verify finished:
	// mismatched bytes.
	SelfDirty, PeerDirty int64
	Region               int   // verify mismatch
	Epoch                Epoch // promoted, deposed, stale frame
	Full                 bool  // resync started
}

func (e Event) String() string {
	s := e.Kind.String()
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}
