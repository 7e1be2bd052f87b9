package consensus

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"tandem/internal/state"
)

// Two-node mode (docs/two-node.md): two voters and no witness. When one is
// confirmed fenced, the survivor cannot commit with one vote of two: it
// recovers raft to a configuration of itself alone (Recover), runs on as
// the only voter, and adds its peer back when the peer has returned
// (AddVoter). Between the fence and the recovery it deals with the peer
// no more (SetRefused). internal/fencepolicy decides when; these are the
// steps.

// Voters returns the voters of raft's latest configuration, as this member
// knows it (persisted: after a restart it is what Recover or AddVoter
// left).
func (c *Consensus) Voters() ([]string, error) {
	f := c.r().GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("consensus: configuration: %w", err)
	}
	var vs []string
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			vs = append(vs, string(s.ID))
		}
	}
	return vs, nil
}

// SoleVoter reports whether this member is the only voter of raft's
// latest configuration.
func (c *Consensus) SoleVoter() bool {
	vs, err := c.Voters()
	return err == nil && len(vs) == 1 && vs[0] == c.cfg.Self
}

// CaughtUp reports whether a leader is known and this member has applied
// what it knows the leader committed, and at least applied (the index a
// peer last reported applied: a follower learns the leader's commit only
// from an append, and one whose log did not match has not learnt it yet).
func (c *Consensus) CaughtUp(applied uint64) bool {
	r := c.r()
	if r.State() == raft.Leader {
		return true
	}
	if c.Leader() == "" {
		return false
	}
	mine := r.AppliedIndex()
	return mine >= r.CommitIndex() && mine >= applied
}

// SetRefused cuts voter off (refused) or lets it back: while refused, no
// raft or forwarding connection to or from it is made or kept. The
// survivor of a fence refuses its peer from the confirmed fence until its
// recovery has taken the peer out of raft's configuration: a fenced peer
// that reboots fast must not rejoin the old two-voter configuration.
func (c *Consensus) SetRefused(voter string, refused bool) {
	if refused {
		c.refused.Store(voter, true)
	} else {
		c.refused.Delete(voter)
	}
}

// Recover makes this member the only voter: it stops raft, rewrites the
// configuration in its own stores to itself alone (raft.RecoverCluster,
// which also applies every entry in its log, committed or not: with two
// voters nothing committed can be missing here, and an entry this member
// had appended is as good as committed once the other voter is off), and
// starts raft again on the same stores and transport. The state machine is
// then restored from the snapshot the recovery wrote (OnApply is told).
// Only for a confirmed-off peer: with the peer running, both could end up
// alone. If it fails, raft is started again as it was and Recover may be
// tried again.
func (c *Consensus) Recover() error {
	c.recoverMu.Lock()
	defer c.recoverMu.Unlock()
	select {
	case <-c.stop:
		return errors.New("consensus: shut down")
	default:
	}
	if c.SoleVoter() {
		return nil
	}
	old := c.r()
	if err := old.Shutdown().Error(); err != nil {
		return fmt.Errorf("consensus: recover: stop raft: %w", err)
	}
	solo := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(c.cfg.Self), Address: raft.ServerAddress(c.cfg.Self)}}}
	// A scratch state machine: the replay must not reach OnApply as if it
	// were news; the real one is restored from the snapshot below.
	recErr := raft.RecoverCluster(c.rc, &fsm{st: state.New()}, c.logs, c.stable, c.snaps, keepOpen{c.trans}, solo)
	// Raft starts as a follower and campaigns after a heartbeat timeout
	// (1 to 2 of them): with the configured one the takeover that waits
	// for this commit would wait a second or two more. The only voter
	// wins at once, so it starts with short timeouts; AddVoter starts it
	// again with the configured ones before it adds the peer (a leader
	// with a peer and a 20 ms leader lease would step down all the time).
	rc := c.rc
	if recErr == nil {
		fast := *c.rc
		fast.HeartbeatTimeout, fast.ElectionTimeout, fast.LeaderLeaseTimeout = fastTimeout, fastTimeout, fastTimeout
		rc = &fast
	}
	if err := c.restart(rc); err != nil {
		return fmt.Errorf("consensus: recover: start raft again: %w (recovery: %v)", err, recErr)
	}
	c.fast = recErr == nil
	if recErr != nil {
		return fmt.Errorf("consensus: recover: %w", recErr)
	}
	return nil
}

// fastTimeout is raft's timeouts while this member is the only voter
// after Recover, until AddVoter.
const fastTimeout = 20 * time.Millisecond

// restart starts a raft member with rc on the stores and transport (the
// old one is shut down); recoverMu is held.
func (c *Consensus) restart(rc *raft.Config) error {
	r, err := raft.NewRaft(rc, c.fsm, c.logs, c.stable, c.snaps, keepOpen{c.trans})
	if err != nil {
		return err
	}
	c.setRaft(r)
	return nil
}

// AddVoter adds voter back to raft's configuration (this member leads as
// the only voter). It returns once the configuration with both voters is
// committed, which needs the peer to have caught up, or timeout.
func (c *Consensus) AddVoter(voter string, timeout time.Duration) error {
	if err := c.slowDown(timeout); err != nil {
		return err
	}
	if err := c.r().AddVoter(raft.ServerID(voter), raft.ServerAddress(voter), 0, timeout).Error(); err != nil {
		return fmt.Errorf("consensus: add voter %s: %w", voter, err)
	}
	return nil
}

// slowDown starts the member again with the configured timeouts if it
// runs with Recover's short ones, and waits (at most timeout) until it
// leads again, as the only voter it is.
func (c *Consensus) slowDown(timeout time.Duration) error {
	c.recoverMu.Lock()
	defer c.recoverMu.Unlock()
	if !c.fast {
		return nil
	}
	select {
	case <-c.stop:
		return errors.New("consensus: shut down")
	default:
	}
	if err := c.r().Shutdown().Error(); err != nil {
		return fmt.Errorf("consensus: stop raft: %w", err)
	}
	if err := c.restart(c.rc); err != nil {
		return fmt.Errorf("consensus: start raft again: %w", err)
	}
	c.fast = false
	deadline := time.Now().Add(timeout)
	for !c.IsLeader() {
		if time.Now().After(deadline) {
			return fmt.Errorf("consensus: not leading %v after a restart as the only voter", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}
