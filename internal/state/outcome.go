package state

import "slices"

// Proposals are idempotent: a proposer that did not hear how its proposal
// ended (the leader lost leadership after replicating it, or the answer
// was lost on the way) proposes it again under the same ID, and if the
// first had committed after all, the repeat changes nothing and answers
// with the first result. The outcomes are part of the replicated state, in
// snapshots too, so every voter, also one restored from a snapshot taken
// between the two, treats the repeat alike.

// Outcome is what applying one proposal gave.
type Outcome struct {
	ID    string `json:"id"`
	Index uint64 `json:"index"`           // where it was applied
	Error string `json:"error,omitempty"` // "" when it applied
	Stale bool   `json:"stale,omitempty"` // Error is a stale epoch
}

// Err is the error Apply returned, as its text and class (IsStaleEpoch)
// say: equal to the first in all a caller may look at.
func (o Outcome) Err() error {
	if o.Error == "" {
		return nil
	}
	return &appliedError{msg: o.Error, stale: o.Stale}
}

// appliedError is an error Apply returned before, as recorded.
type appliedError struct {
	msg   string
	stale bool
}

func (e *appliedError) Error() string { return e.msg }

func (e *appliedError) Is(target error) bool { return e.stale && target == ErrStaleEpoch }

// keptOutcomes bounds Outcomes. A retry comes within its proposer's
// deadline (seconds), while this many other proposals are minutes of a
// busy cluster's traffic; each costs some 40 bytes of every snapshot.
const keptOutcomes = 1024

// Outcome returns the recorded outcome of the proposal named id.
func (s *State) Outcome(id string) (Outcome, bool) {
	if id == "" {
		return Outcome{}, false
	}
	for i := len(s.Outcomes) - 1; i >= 0; i-- {
		if s.Outcomes[i].ID == id {
			return s.Outcomes[i], true
		}
	}
	return Outcome{}, false
}

// record keeps the outcome of the proposal named id (none for a command
// without an ID), dropping the oldest beyond keptOutcomes.
func (s *State) record(index uint64, id string, err error) {
	if id == "" {
		return
	}
	o := Outcome{ID: id, Index: index}
	if err != nil {
		o.Error, o.Stale = err.Error(), IsStaleEpoch(err)
	}
	if len(s.Outcomes) >= keptOutcomes {
		s.Outcomes = slices.Delete(s.Outcomes, 0, len(s.Outcomes)-keptOutcomes+1)
	}
	s.Outcomes = append(s.Outcomes, o)
}
