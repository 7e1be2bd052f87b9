package consensus

import (
	"io"
	"sync"

	"github.com/hashicorp/raft"

	"tandem/internal/state"
)

// fsm applies committed commands to the replicated state.
type fsm struct {
	mu      sync.RWMutex
	st      *state.State
	onApply func(st *state.State, c state.Command, err error)
}

func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	c, err := state.DecodeCommand(l.Data)
	f.mu.Lock()
	if err == nil {
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
		f.onApply(snap, c, err)
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
	return snapshot(b), nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
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
