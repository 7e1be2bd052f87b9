package replication

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// PeerFencer marks a volume's peer replica Outdated somewhere durable (the
// cluster's replicated state; a local record for a standalone volume) on
// behalf of the primary of epoch. The adapter calls it for a Fence action
// and reports the result through Machine.FenceDone. It must refuse when
// the peer is the holder the cluster chose, or when epoch is no longer the
// holder's: a deposed primary must not outdate its successor.
type PeerFencer interface {
	OutdatePeer(ctx context.Context, volume VolumeID, peer string, epoch Epoch) error
}

// ErrFenceRefused is returned by a PeerFencer that will not outdate the
// peer (it is the holder, or the epoch is stale).
var ErrFenceRefused = errors.New("replication: fencing refused")

// MemFencer is the in-memory PeerFencer: it records which replicas are
// Outdated, and the holder and epoch of each volume as a test's cluster
// sets them. Safe for concurrent use.
type MemFencer struct {
	mu       sync.Mutex
	holder   map[VolumeID]holder
	outdated map[VolumeID]map[string]bool
	fail     error
}

type holder struct {
	node  string
	epoch Epoch
}

// NewMemFencer returns an empty MemFencer.
func NewMemFencer() *MemFencer {
	return &MemFencer{holder: map[VolumeID]holder{}, outdated: map[VolumeID]map[string]bool{}}
}

// SetHolder records that node holds volume at epoch (a promotion); its own
// Outdated mark is cleared, as the cluster does for the replica it promotes.
func (f *MemFencer) SetHolder(volume VolumeID, node string, epoch Epoch) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.holder[volume] = holder{node, epoch}
	delete(f.outdated[volume], node)
}

// Outdated reports whether node's replica of volume was marked Outdated.
func (f *MemFencer) Outdated(volume VolumeID, node string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.outdated[volume][node]
}

// FailWith makes every later call fail with err (nil: work again), as an
// unreachable cluster would.
func (f *MemFencer) FailWith(err error) {
	f.mu.Lock()
	f.fail = err
	f.mu.Unlock()
}

// OutdatePeer marks peer Outdated unless it is the holder or epoch is not
// the holder's.
func (f *MemFencer) OutdatePeer(ctx context.Context, volume VolumeID, peer string, epoch Epoch) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	h := f.holder[volume]
	switch {
	case h.node == peer:
		return fmt.Errorf("%w: %s holds %v at epoch %d", ErrFenceRefused, peer, volume, h.epoch)
	case h.epoch != epoch:
		return fmt.Errorf("%w: epoch %d is not the holder's (%d)", ErrFenceRefused, epoch, h.epoch)
	}
	if f.outdated[volume] == nil {
		f.outdated[volume] = map[string]bool{}
	}
	f.outdated[volume][peer] = true
	return nil
}
