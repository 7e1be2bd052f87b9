package volumecli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"tandem/internal/replication"
)

// localFencer is the standalone PeerFencer: it records, durably in the
// state dir, that the peer's replica is Outdated, on behalf of this node's
// newest promotion. Without a cluster nothing else can know whether the
// peer was promoted meanwhile: a standalone pair is run by an operator
// who promotes one side at a time (the cluster's volume resource replaces
// this with raft, which refuses to outdate the holder it chose). It
// refuses a request of an epoch older than this node's newest promotion,
// so a deposed primary's late request changes nothing.
type localFencer struct {
	mu   sync.Mutex
	path string
}

type fenceRecord struct {
	// Holder is this node's newest promotion's epoch.
	Holder   replication.Epoch         `json:"holder_epoch"`
	Outdated map[string]outdatedRecord `json:"outdated,omitempty"`
}

type outdatedRecord struct {
	Epoch replication.Epoch `json:"epoch"`
	At    time.Time         `json:"at"`
}

func (f *localFencer) load() (fenceRecord, error) {
	var r fenceRecord
	b, err := os.ReadFile(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%s: %w", f.path, err)
	}
	return r, nil
}

// promoted records that this node was promoted at epoch.
func (f *localFencer) promoted(epoch replication.Epoch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := f.load()
	if err != nil {
		return err
	}
	r.Holder = max(r.Holder, epoch)
	return saveJSON(f.path, r)
}

func (f *localFencer) OutdatePeer(ctx context.Context, volume replication.VolumeID, peer string, epoch replication.Epoch) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := f.load()
	if err != nil {
		return err
	}
	if epoch < r.Holder {
		return fmt.Errorf("%w: epoch %d is older than this node's promotion at %d", replication.ErrFenceRefused, epoch, r.Holder)
	}
	if r.Outdated == nil {
		r.Outdated = map[string]outdatedRecord{}
	}
	r.Outdated[peer] = outdatedRecord{Epoch: epoch, At: time.Now().UTC()}
	return saveJSON(f.path, r)
}
