package consensus

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"tandem/internal/state"
)

// seedCommands is a log that reaches every op of state.Apply.
func seedCommands() [][]byte {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cmds := []state.Command{
		{Op: state.OpPlace, Time: t0, Group: "web", Holder: "a", Reason: "start"},
		{Op: state.OpStarted, Time: t0, Group: "web", Node: "a", Epoch: 1},
		{Op: state.OpPhase, Time: t0, Group: "web", Node: "a", Epoch: 1, Phase: "running"},
		{Op: state.OpFailure, Time: t0, Group: "web", Node: "a", Epoch: 1, Severity: "hard", Reason: "nginx died"},
		{Op: state.OpPlace, Time: t0, Group: "web", Holder: "b", Epoch: 1, Takeover: &state.Takeover{From: "a", To: "b", At: t0, DetectMs: 900}},
		{Op: state.OpHandover, Time: t0, Actor: "admin", Group: "web", Holder: "a", Epoch: 2},
		{Op: state.OpHandedOver, Time: t0, Group: "web", Node: "b", Epoch: 2},
		{Op: state.OpCleanup, Time: t0, Group: "web"},
		{Op: state.OpStandby, Time: t0, Node: "b", On: true},
		{Op: state.OpMaintenance, Time: t0, On: true},
		{Op: state.OpMaintenance, Time: t0, Node: "a", On: true},
		{Op: state.OpLeaving, Time: t0, Node: "a", On: true},
		{Op: state.OpConfig, Time: t0, Node: "a", Digest: "sha256:00"},
		{Op: state.OpNoop},
	}
	out := make([][]byte, len(cmds))
	for i, c := range cmds {
		out[i] = c.Encode()
	}
	return out
}

// checkState fails t unless st is what every reader of the state may
// assume: maps present and no entry nil (the agent ranges over them and
// reads each entry's fields).
func checkState(t *testing.T, st *state.State) {
	t.Helper()
	if st.Groups == nil || st.Nodes == nil {
		t.Fatalf("state with a nil map: %+v", st)
	}
	for name, g := range st.Groups {
		if g == nil {
			t.Fatalf("group %q is nil", name)
		}
		for n, f := range g.Failures {
			if f == nil {
				t.Fatalf("group %q: failure on %q is nil", name, n)
			}
		}
	}
	for name, n := range st.Nodes {
		if n == nil {
			t.Fatalf("node %q is nil", name)
		}
	}
}

// snapshotBytes is what fsm persists as its snapshot.
func snapshotBytes(t *testing.T, f *fsm) []byte {
	t.Helper()
	s, err := f.Snapshot()
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return []byte(s.(snapshot))
}

// FuzzApplyLog feeds the FSM log entries it decodes as commands, one per
// line of the input, as raft hands it committed entries. Whatever the
// entries hold, Apply must not panic, must return nil or an error (a
// bad entry is "state: bad command"), must leave a state every reader
// can use, and the result must be deterministic and survive a snapshot
// and restore unchanged: every voter computes the same state. A repeat of
// a proposal ID it still keeps must change nothing but the index and
// return the first result.
func FuzzApplyLog(f *testing.F) {
	// Short seeds: Go minimizes each new input by trying to remove every
	// range of its bytes, quadratic in its length, so a long seed (the
	// whole log) has the fuzzer minimizing instead of exploring.
	cmds := seedCommands()
	for _, c := range cmds[1:] {
		f.Add(bytes.Join([][]byte{cmds[0], c}, []byte("\n")))
	}
	f.Add([]byte(`{"op":"place","group":"g","holder":"a","epoch":0}` + "\n" + `{"op":"bogus"}` + "\n" + `not json`))
	f.Add([]byte(`{"op":"failure","group":"g","node":"a","severity":"fatal","time":"9999-12-31T23:59:59+23:59"}`))
	f.Add([]byte(`{"op":"place","group":"g","holder":"a","takeover":null,"time":"0000-01-01T00:00:00-00:01"}`))
	f.Add([]byte(`{"op":"place","id":"p","group":"g","holder":"a"}` + "\n" + `{"op":"failure","id":"f","group":"g","node":"a","epoch":1}` + "\n" +
		`{"op":"place","id":"p","group":"g","holder":"a"}` + "\n" + `{"op":"failure","id":"f","group":"g","node":"a","epoch":1}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		run := func() (*fsm, []byte) {
			var seen *state.State
			m := &fsm{st: state.New(), onApply: func(st *state.State, _ state.Command, _ error) { seen = st }}
			for i, entry := range bytes.Split(in, []byte("\n")) {
				index := uint64(i + 1)
				var kept *state.Outcome
				var before []byte
				if c, err := state.DecodeCommand(entry); err == nil {
					if o, ok := m.st.Outcome(c.ID); ok {
						kept, before = &o, snapshotBytes(t, m)
					}
				}
				res := m.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: entry})
				if kept != nil {
					m.st.Index = index - 1
					if after := snapshotBytes(t, m); !bytes.Equal(after, before) {
						t.Fatalf("entry %d repeats proposal %q but changed the state:\n%s\n%s", index, kept.ID, before, after)
					}
					m.st.Index = index
					if fmt.Sprint(res) != fmt.Sprint(kept.Err()) {
						t.Fatalf("entry %d repeats proposal %q: %v, want its first result %v", index, kept.ID, res, kept.Err())
					}
				}
				if res != nil {
					err, ok := res.(error)
					if !ok {
						t.Fatalf("entry %d: Apply returned %T %v, want an error or nil", index, res, res)
					}
					if !strings.HasPrefix(err.Error(), "state: ") {
						t.Fatalf("entry %d: error without the package prefix: %v", index, err)
					}
					if _, decodeErr := state.DecodeCommand(entry); decodeErr != nil && !strings.HasPrefix(err.Error(), "state: bad command") {
						t.Fatalf("entry %d: an entry that does not decode gave %v", index, err)
					}
				}
				if seen == nil || seen.Index != index {
					t.Fatalf("entry %d: the state handed on is at %+v", index, seen)
				}
				checkState(t, seen)
			}
			return m, snapshotBytes(t, m)
		}
		_, snap := run()
		if _, again := run(); !bytes.Equal(snap, again) {
			t.Fatalf("the same log gave two states:\n%s\n%s", snap, again)
		}
		r := &fsm{st: state.New()}
		if err := r.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
			t.Fatalf("its own snapshot does not restore: %v\n%s", err, snap)
		}
		if got := snapshotBytes(t, r); !bytes.Equal(got, snap) {
			t.Fatalf("restored state differs:\n%s\n%s", snap, got)
		}
	})
}

// FuzzRestore restores arbitrary bytes as a snapshot. It must not panic;
// what it refuses is a clear error ("state: bad snapshot: …") that
// leaves the FSM's state as it was; what it accepts is a state every
// reader can use, that takes further commands and snapshots to the same
// bytes again. testdata/fuzz/FuzzRestore holds the null entries that
// crashed the agent when it read the restored state.
func FuzzRestore(f *testing.F) {
	m := &fsm{st: state.New()}
	for i, c := range seedCommands() {
		m.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: c})
	}
	full, err := m.Snapshot()
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(full.(snapshot)))
	f.Add([]byte(`{"groups":null,"nodes":null,"maintenance":true}`))
	f.Add([]byte(`{"index":-1}`))
	f.Add([]byte(`{"index":3,"groups":{},"nodes":{},"maintenance":false,"outcomes":[{"id":"p","index":1},` +
		`{"id":"s","index":2,"error":"state: stale epoch: x","stale":true},{"id":"","index":0},{"id":"p","index":3}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, in []byte) {
		before := &fsm{st: state.New()}
		before.st.Index = 42
		var handed *state.State
		before.onApply = func(st *state.State, _ state.Command, _ error) { handed = st }
		err := before.Restore(io.NopCloser(bytes.NewReader(in)))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "state: bad snapshot") && !errors.Is(err, errSnapshotTooLarge) {
				t.Fatalf("unclear error: %v", err)
			}
			if before.st.Index != 42 || handed != nil {
				t.Fatal("a refused snapshot changed the state")
			}
			return
		}
		if handed == nil {
			t.Fatal("a restored state was not handed on")
		}
		checkState(t, handed)
		snap := snapshotBytes(t, before)
		again := &fsm{st: state.New()}
		if err := again.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
			t.Fatalf("a restored state's own snapshot does not restore: %v", err)
		}
		if got := snapshotBytes(t, again); !bytes.Equal(got, snap) {
			t.Fatalf("snapshot, restore, snapshot changed it:\n%s\n%s", snap, got)
		}
		index := before.st.Index
		for _, c := range seedCommands() {
			index++
			before.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: c})
			checkState(t, handed)
		}
	})
}

// endless is a snapshot of JSON white space that never ends.
type endless struct{}

var spaces = bytes.Repeat([]byte{' '}, 1<<16)

func (endless) Read(p []byte) (int, error) { return copy(p, spaces), nil }

// TestRestoreStopsAtTheCap: a snapshot stream without end is refused
// once maxSnapshot is read, instead of growing memory until the agent is
// killed.
func TestRestoreStopsAtTheCap(t *testing.T) {
	defer func(was int) { maxSnapshot = was }(maxSnapshot)
	maxSnapshot = 1 << 20
	m := &fsm{st: state.New()}
	if err := m.Restore(io.NopCloser(endless{})); !errors.Is(err, errSnapshotTooLarge) {
		t.Fatalf("Restore = %v, want %v", err, errSnapshotTooLarge)
	}
}
