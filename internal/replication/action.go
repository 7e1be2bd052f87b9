package replication

import (
	"errors"
	"fmt"
)

// Op is what a client request asks.
type Op uint8

const (
	OpWrite Op = iota
	OpFlush
	OpRead
)

func (o Op) String() string { return [...]string{"write", "flush", "read"}[o] }

// Request is one block-layer request from the client (the NBD server).
// Data is the write's buffer; the machine hands it on (to WriteLocal and
// FrameData) without copying, so the caller keeps it until Complete.
type Request struct {
	ID   uint64 // the caller's, echoed in Complete
	Op   Op
	Off  int64
	Len  int64 // reads; writes take len(Data)
	Data []byte
	FUA  bool // write: durable on every replica holding it before it completes
}

// Action is something the machine asks its adapter to do, in the order
// returned. Persist, SetBits and ALBegin must be durable before the adapter
// carries out any later action; local I/O and sends may run concurrently
// (sends are FIFO per link), each local operation answering through Done.
type Action interface{ action() }

// WriteLocal writes Data at Off on the local backing device (FUA: durable
// when done). Its completion comes back through Done with the same ID.
type WriteLocal struct {
	ID   uint64
	Off  int64
	Data []byte
	FUA  bool
}

// FlushLocal makes every local write completed before it durable.
type FlushLocal struct{ ID uint64 }

// ReadLocal reads Len bytes at Off; with DigestEach > 0 the adapter
// answers with RegionDigests(data, DigestEach) instead of the data (a
// verify reads a chunk of regions and digests each).
type ReadLocal struct {
	ID         uint64
	Off        int64
	Len        int64
	DigestEach int64
}

// Send queues a frame on the link to the peer (dropped if the link is down).
type Send struct{ Frame Frame }

// Complete answers client request ID: Err nil means done (for a write in
// sync mode: on both replicas, or on this one with the peer outdated);
// reads carry Data.
type Complete struct {
	ID   uint64
	Err  error
	Data []byte
}

// SetBits marks regions dirty (the peer may lack them): durable before
// the adapter goes on. ClearBits may be written lazily: a region left
// dirty is only resynced once more. Region r covers bytes
// [r*RegionSize, (r+1)*RegionSize).
type SetBits struct{ Ranges []RegionRange }
type ClearBits struct{ Ranges []RegionRange }

// ALBegin adds extents to the activity log: durable before the adapter
// goes on (the writes that follow may land in them). ALEnd may be lazy.
type ALBegin struct{ Extents []int }
type ALEnd struct{ Extents []int }

// Persist writes the metadata: durable before the adapter goes on.
type Persist struct{ Meta Meta }

// Fence asks the PeerFencer to mark the peer Outdated somewhere durable,
// on behalf of the primary of Epoch; the answer comes back through
// FenceDone. The fencer must refuse if the peer is primary or if Epoch is
// no longer the current holder's (this node was deposed or demoted
// meanwhile): a stale request must not outdate a peer the cluster chose.
type Fence struct{ Epoch Epoch }

// Suspend and Resume tell the adapter that client I/O is frozen (the
// machine queues requests meanwhile) and thawed; for status and events.
type Suspend struct{ Why string }
type Resume struct{}

// DropLink closes the connection to the peer; with Reconnect false the
// link must stay down until Connect (split brain, unrelated data, admin
// disconnect).
type DropLink struct {
	Reason    string
	Reconnect bool
}

func (WriteLocal) action() {}
func (FlushLocal) action() {}
func (ReadLocal) action()  {}
func (Send) action()       {}
func (Complete) action()   {}
func (SetBits) action()    {}
func (ClearBits) action()  {}
func (ALBegin) action()    {}
func (ALEnd) action()      {}
func (Persist) action()    {}
func (Fence) action()      {}
func (Suspend) action()    {}
func (Resume) action()     {}
func (DropLink) action()   {}
func (Event) action()      {}

// Meta is the metadata a replica keeps durable, besides its dirty bitmap
// and activity log.
type Meta struct {
	GenIDs GenIDs
	Disk   DiskState
	// Epoch is the newest epoch this replica has seen.
	Epoch Epoch
	// PrimaryEpoch is the epoch of its newest promotion.
	PrimaryEpoch Epoch
	// Primary is set while it is primary; found set at start, it means the
	// node crashed as primary (the activity log is folded into the bitmap).
	Primary bool
}

// Persisted is what the adapter read back at start.
type Persisted struct {
	Meta   Meta
	Dirty  []RegionRange
	Active []int // activity-log extents
}

// Completion is the answer to a local operation.
type Completion struct {
	ID      uint64
	Err     error
	Data    []byte   // ReadLocal
	Digests []Digest // ReadLocal with DigestEach
}

// Errors returned by admin commands and in Complete.
var (
	ErrStaleEpoch   = errors.New("replication: epoch older than the newest seen")
	ErrNotUpToDate  = errors.New("replication: replica is not UpToDate (use force)")
	ErrPeerPrimary  = errors.New("replication: the peer is primary")
	ErrBusy         = errors.New("replication: busy")
	ErrNotPrimary   = errors.New("replication: not primary")
	ErrNoData       = errors.New("replication: no usable data (local disk detached and no UpToDate peer)")
	ErrNotConnected = errors.New("replication: not connected")
	ErrIO           = errors.New("replication: I/O error")
)

// ErrResyncTarget refuses to promote a resync target until its resync
// ends. It is an ErrNotUpToDate that passes on its own while the link
// holds: the source is sending what the target lacks.
var ErrResyncTarget error = resyncTargetError{}

type resyncTargetError struct{}

func (resyncTargetError) Error() string {
	return "replication: a resync target is not UpToDate until its resync ends"
}

func (resyncTargetError) Is(target error) bool { return target == ErrNotUpToDate }

// IsStaleEpoch reports whether err says an epoch was too old.
func IsStaleEpoch(err error) bool { return errors.Is(err, ErrStaleEpoch) }

// IsBusy reports whether err asks to try again later.
func IsBusy(err error) bool { return errors.Is(err, ErrBusy) }

func busy(why string) error { return fmt.Errorf("%w: %s", ErrBusy, why) }
