package consensus

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"tandem/internal/state"
)

// A leader that loses leadership after replicating a proposal tells its
// proposer so (raft's ErrLeadershipLost), yet the entry commits under the
// next leader. Propose retries it; the retry must report the first
// application's result and change nothing. Without proposal IDs a
// committed place came back as a stale epoch against itself, and a
// retried failure counted twice.
func TestCommittedProposalRetriedAfterLeadershipLoss(t *testing.T) {
	var lostPlace, lostFailure atomic.Bool // the first of each was answered so
	cl := startClusterWith(t, bytes.Repeat([]byte{1}, 32), "", func(cfg *Config) {
		cfg.afterCommit = func(cmd state.Command) error {
			if (cmd.Op == state.OpPlace && !lostPlace.Swap(true)) || (cmd.Op == state.OpFailure && !lostFailure.Swap(true)) {
				return raft.ErrLeadershipLost
			}
			return nil
		}
	})
	cl.waitLeader(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for name, c := range cl.members {
		if err := c.Propose(ctx, state.Command{Op: state.OpPlace, Group: "g", Holder: "a"}); err != nil {
			t.Fatalf("place from %s, committed before the leadership loss: %v", name, err)
		}
		if err := c.Propose(ctx, state.Command{Op: state.OpFailure, Group: "g", Node: "a", Epoch: 1, Severity: "soft"}); err != nil {
			t.Fatalf("failure from %s, committed before the leadership loss: %v", name, err)
		}
		break
	}
	if !lostPlace.Load() || !lostFailure.Load() {
		t.Fatal("the leadership loss was not reported")
	}
	cl.appliedOnce(t, "g", func(g *state.Group) bool {
		return g.Holder == "a" && g.Epoch == 1 && g.Failures["a"] != nil && g.Failures["a"].Count == 1
	}, state.OpPlace, state.OpFailure)
}

// A follower forwards a proposal; the leader commits it but the answer
// never arrives (the connection drops). Propose retries through the
// leader, and the retry reports the first result: it used to return the
// read error although the proposal had committed.
func TestForwardedProposalWhoseAnswerWasLost(t *testing.T) {
	var dropped atomic.Bool
	cl := startClusterWith(t, bytes.Repeat([]byte{1}, 32), "", func(cfg *Config) {
		cfg.dropAnswer = func(state.Command) bool { return dropped.CompareAndSwap(false, true) }
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A proposal is forwarded only while its proposer follows: on a busy
	// machine the one picked may lead by the time it proposes. Each try
	// places a group of its own; the last one's answer was dropped.
	var groups []string
	for try := 0; !dropped.Load(); try++ {
		if try == 5 {
			t.Fatal("five proposals from followers, none forwarded")
		}
		group := fmt.Sprintf("g%d", try)
		if err := cl.follower(t).Propose(ctx, state.Command{Op: state.OpPlace, Group: group, Holder: "a"}); err != nil {
			t.Fatalf("place %s, forwarded and committed before its answer was lost: %v", group, err)
		}
		groups = append(groups, group)
	}
	for _, group := range groups {
		cl.appliedOnce(t, group, func(g *state.Group) bool { return g.Holder == "a" && g.Epoch == 1 }, state.OpPlace)
	}
}

// follower returns a member that does not lead now.
func (cl *cluster) follower(t *testing.T) *Consensus {
	t.Helper()
	leader := cl.waitLeader(t, "")
	for name, c := range cl.members {
		if name != leader {
			return c
		}
	}
	t.Fatal("no follower")
	return nil
}

// appliedOnce waits until every member's state of group satisfies ok,
// and checks that each member applied exactly ops to it, once each: a
// retry of a proposal already applied reaches OnApply as a no-op.
func (cl *cluster) appliedOnce(t *testing.T, group string, ok func(*state.Group) bool, ops ...state.Op) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		done := true
		for _, c := range cl.members {
			g := c.State().Groups[group]
			done = done && g != nil && ok(g)
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			for n, c := range cl.members {
				t.Logf("%s: %+v", n, c.State().Groups[group])
			}
			t.Fatalf("group %s did not reach every member as wanted", group)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for n := range cl.members {
		var got []state.Op
		for _, c := range cl.applied[n] {
			if c.Group == group {
				got = append(got, c.Op)
			}
		}
		if !slices.Equal(got, ops) {
			t.Errorf("%s applied %v to group %s, want %v", n, got, group, ops)
		}
	}
}
