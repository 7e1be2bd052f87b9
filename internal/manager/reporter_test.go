package manager

import (
	"testing"
	"time"

	"tandem/internal/state"
)

// A phase report waits phaseHold for a report that replaces it; a
// handed-over report replaces it, so a handover on stop costs one commit,
// not two.
func TestReporterHoldsAPhaseForItsOutcome(t *testing.T) {
	now := time.Unix(1000, 0)
	r := &reporter{wake: make(chan struct{}, 1), now: func() time.Time { return now }}
	r.add(state.Command{Op: state.OpPhase, Phase: "stopping", Epoch: 5})
	if _, wait, ok := r.next(); ok || wait != phaseHold {
		t.Fatalf("a fresh phase: ok=%v wait=%v, want held for %v", ok, wait, phaseHold)
	}
	now = now.Add(phaseHold / 2)
	r.add(state.Command{Op: state.OpHandedOver, Epoch: 5})
	c, _, ok := r.next()
	if !ok || c.Op != state.OpHandedOver {
		t.Fatalf("next = %v %v, want the handed-over report at once", c.Op, ok)
	}
	r.done(c)
	if !r.empty() {
		t.Fatalf("queue after the handover: %v", r.queue)
	}

	// A phase alone goes out once held long enough; one followed by
	// another kind of report goes out at once, in order.
	r.add(state.Command{Op: state.OpPhase, Phase: "running", Epoch: 6})
	now = now.Add(phaseHold)
	if c, _, ok := r.next(); !ok || c.Phase != "running" {
		t.Fatalf("a phase held for phaseHold: next = %v %v", c.Phase, ok)
	}
	r.add(state.Command{Op: state.OpFailure, Epoch: 6, Severity: "soft"})
	r.add(state.Command{Op: state.OpPhase, Phase: "recovering", Epoch: 6})
	var got []state.Op
	for c, _, ok := r.next(); ok; c, _, ok = r.next() {
		got = append(got, c.Op)
		r.done(c)
		now = now.Add(phaseHold)
	}
	want := []state.Op{state.OpFailure, state.OpPhase}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("order %v, want %v (the older phase replaced)", got, want)
	}
}
