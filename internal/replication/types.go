package replication

import (
	"encoding/hex"
	"fmt"
)

// VolumeID names one volume on both nodes: created once, stored in both
// replicas' metadata, carried in every frame. Replicas whose IDs differ are
// never connected.
type VolumeID [16]byte

func (v VolumeID) String() string { return hex.EncodeToString(v[:]) }

// ParseVolumeID reads the form String prints.
func ParseVolumeID(s string) (VolumeID, error) {
	var v VolumeID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(v) {
		return v, fmt.Errorf("volume id %q: want %d hex digits", s, 2*len(v))
	}
	copy(v[:], b)
	return v, nil
}

// Epoch is the fencing token of S2: the group's epoch in the replicated
// cluster state (or, for a standalone `tandem volume`, a counter bumped at
// every promotion). Every write frame carries the primary's epoch; a peer
// refuses frames older than the newest epoch it has seen.
type Epoch uint64

// GenID is one generation identifier: a random non-zero value that names a
// period of a replica's data history. 0 means none.
type GenID uint64

// JustCreated is the current generation identifier of a replica whose data
// has never been written through a volume (create without initial sync
// leaves both replicas with it).
const JustCreated GenID = 4

// GenIDs is a replica's data history as DRBD keeps it: Current names the
// data as it is now; Bitmap is the Current at the moment the peer was lost
// (while the dirty bitmap records what changed since, 0 when connected and
// in sync); History holds the two generations before that, newest first.
type GenIDs struct {
	Current GenID
	Bitmap  GenID
	History [2]GenID
}

// DiskState is what a replica's data is worth.
type DiskState uint8

const (
	// Diskless: no local data (detached after an I/O error, or not attached).
	Diskless DiskState = iota
	// Inconsistent: partly written by a resync or initial sync; unusable
	// until that finishes.
	Inconsistent
	// Outdated: consistent, but known to miss writes the peer has.
	Outdated
	// UpToDate: consistent and holding every acknowledged write.
	UpToDate
)

var diskStateNames = [...]string{"Diskless", "Inconsistent", "Outdated", "UpToDate"}

func (s DiskState) String() string {
	if int(s) < len(diskStateNames) {
		return diskStateNames[s]
	}
	return fmt.Sprintf("DiskState(%d)", uint8(s))
}

// Role is a replica's role: at most one primary per volume.
type Role uint8

const (
	Secondary Role = iota
	Primary
)

func (r Role) String() string {
	if r == Primary {
		return "Primary"
	}
	return "Secondary"
}

// Mode is how a write is acknowledged.
type Mode uint8

const (
	// Sync: only once durable on both replicas (DRBD protocol C).
	Sync Mode = iota
	// Async: once durable locally; the peer trails by at most max_lag.
	Async
)

func (m Mode) String() string {
	if m == Async {
		return "async"
	}
	return "sync"
}
