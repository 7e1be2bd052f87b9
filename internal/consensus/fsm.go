package consensus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"

	"tandem/internal/state"
)

// maxSnapshot bounds what Restore reads. The replicated state is a few
// kilobytes (groups and nodes come from the configuration) and the
// outcomes of recent proposals some 40 KiB, so a snapshot this large is
// not ours; reading it would only hold memory. A variable
// for tests.
var maxSnapshot = 64 << 20

// errSnapshotTooLarge is a snapshot over maxSnapshot.
var errSnapshotTooLarge = errors.New("consensus: snapshot too large")

func snapshotTooLarge() error {
	return fmt.Errorf("%w: over %d bytes", errSnapshotTooLarge, maxSnapshot)
}

// fsm applies committed commands to the replicated state.
type fsm struct {
	mu      sync.RWMutex
	st      *state.State
	onApply func(st *state.State, c state.Command, err error)

	// done is the index of the newest entry applied and handed to
	// onApply; doneCh, made by a waiter, is closed when it grows.
	doneMu sync.Mutex
	done   uint64
	doneCh chan struct{}
}

// applied records that the entry at index and everything before it are
// applied and handed on.
func (f *fsm) applied(index uint64) {
	f.doneMu.Lock()
	defer f.doneMu.Unlock()
	if index <= f.done {
		return
	}
	f.done = index
	if f.doneCh != nil {
		close(f.doneCh)
		f.doneCh = nil
	}
}

// waitApplied waits until the entry at index is applied here and onApply
// has returned for it, or ctx ends.
func (f *fsm) waitApplied(ctx context.Context, index uint64) error {
	for {
		f.doneMu.Lock()
		if f.done >= index {
			f.doneMu.Unlock()
			return nil
		}
		if f.doneCh == nil {
			f.doneCh = make(chan struct{})
		}
		ch := f.doneCh
		f.doneMu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (f *fsm) Apply(l *raft.Log) any {
	defer f.applied(l.Index)
	if l.Type != raft.LogCommand {
		return nil
	}
	c, err := state.DecodeCommand(l.Data)
	f.mu.Lock()
	repeat := false
	if err == nil {
		_, repeat = f.st.Outcome(c.ID)
		err = f.st.Apply(l.Index, c)
	} else {
		f.st.Index = l.Index
	}
	var snap *state.State
	if f.onApply != nil {
		snap = f.st.Clone()
	}
	f.mu.Unlock()
	if f.onApply != nil {
		if repeat {
			// A retry of a proposal applied before changed nothing: it is
			// handed on as a no-op, so each change (a placement event) is
			// reported once. Its proposer still gets the first result.
			f.onApply(snap, state.Command{Op: state.OpNoop}, nil)
		} else {
			f.onApply(snap, c, err)
		}
	}
	return err
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	b, err := f.st.Marshal()
	if err != nil {
		return nil, err
	}
	if len(b) > maxSnapshot { // no voter would restore it
		return nil, snapshotTooLarge()
	}
	return snapshot(b), nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, int64(maxSnapshot)+1))
	if err != nil {
		return fmt.Errorf("consensus: read snapshot: %w", err)
	}
	if len(b) > maxSnapshot {
		return snapshotTooLarge()
	}
	st, err := state.Unmarshal(b)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.st = st
	snap := st.Clone()
	f.mu.Unlock()
	if f.onApply != nil {
		f.onApply(snap, state.Command{Op: state.OpNoop}, nil)
	}
	f.applied(st.Index)
	return nil
}

func (f *fsm) state() *state.State {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.Clone()
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s snapshot) Release() {}
