// Package consensus owns agreement on the cluster state: hashicorp/raft
// across every voter (data nodes and the witness), bbolt storage, an
// authenticated and encrypted stream layer keyed from the cluster key,
// forwarding of proposals to the leader, and steering leadership to the
// witness. Steering matters for failover time: when the witness leads, the
// death of a data node never coincides with a raft election, so the
// takeover is decided as soon as the death is detected.
//
// Imported by internal/node only; it imports internal/state.
package consensus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"tandem/internal/state"
)

// Voter is a member of the raft configuration.
type Voter struct {
	Name  string
	Addrs []netip.AddrPort // TCP addresses, one per link, in preference order
}

// Config configures a consensus member.
type Config struct {
	Self   string
	Voters []Voter
	Key    []byte // nil: plaintext (insecure: true)
	Dir    string // raft data; "" keeps everything in memory (tests)
	// Timeout is raft's heartbeat and election timeout.
	Timeout time.Duration
	Logger  *slog.Logger
	// OnApply is called, in log order, after each applied entry with a
	// copy of the new state. It must not block for long. A repeated
	// proposal (a retry of one applied before) changed nothing and comes
	// as a no-op.
	OnApply func(st *state.State, c state.Command, err error)
	// PreferLeader, if set, is a voter that should lead whenever it is up.
	PreferLeader string
	// PreferredUp reports whether PreferLeader looks alive (from heartbeats).
	PreferredUp func() bool
	// Boot is this agent's boot number (heartbeat.NextBoot): stamped on
	// each proposal whose Node is Self, so the state refuses this node's
	// commands of an earlier life once it has applied one of this life
	// (state.Command.Boot). 0 stamps nothing.
	Boot uint32
	// Cut, for in-process partition tests only, reports that traffic from
	// one voter to another is blocked.
	Cut func(from, to string) bool
	// trailingLogs, when set, replaces the snapshot threshold and the logs
	// kept after a snapshot (tests that need a snapshot sent to a voter).
	trailingLogs uint64
	// afterCommit, in tests, sees each proposal this member committed as
	// leader; an error it returns is reported in place of the result, as
	// raft reports a leadership lost after the entry reached a majority.
	afterCommit func(state.Command) error
	// dropAnswer, in tests, makes this member close a forwarded
	// proposal's connection after applying it, without answering.
	dropAnswer func(state.Command) bool
}

// Consensus is one member of the raft group.
type Consensus struct {
	cfg Config
	// rf is the raft member: replaced by Recover (two-node mode), so read
	// it through r().
	rf     atomic.Pointer[raft.Raft]
	fsm    *fsm
	mux    *mux
	trans  *raft.NetworkTransport
	closer []func() error
	stop   chan struct{}
	wg     sync.WaitGroup
	// ready is closed once raft is set: the mux accepts forwarded
	// proposals before that.
	ready chan struct{}
	fwd   forwardPool // kept connections to the leader

	// What Recover needs to stop and start raft again on the same stores.
	rc         *raft.Config
	logs       raft.LogStore
	stable     raft.StableStore
	snaps      raft.SnapshotStore
	recoverMu  sync.Mutex
	fast       bool          // raft runs with Recover's short timeouts (under recoverMu)
	leaderCh   chan bool     // LeaderCh, fed from each raft member in turn
	leaderStop chan struct{} // ends the current member's feed
	refused    sync.Map      // voter name → true: cut off (SetRefused)
}

// ErrNoLeader is returned when no leader is known (no quorum, or an
// election is in progress).
var ErrNoLeader = errors.New("consensus: no leader")

// errAnswerLost is a forwarded proposal whose answer never came: the
// leader may have committed it or not.
var errAnswerLost = errors.New("consensus: the leader's answer was lost; the proposal may have committed")

// Start opens storage, bootstraps on first start, and joins the group.
func Start(cfg Config) (*Consensus, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var self *Voter
	peers := map[raft.ServerAddress][]netip.AddrPort{}
	var servers []raft.Server
	for i := range cfg.Voters {
		v := &cfg.Voters[i]
		peers[raft.ServerAddress(v.Name)] = v.Addrs
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(v.Name), Address: raft.ServerAddress(v.Name)})
		if v.Name == cfg.Self {
			self = v
		}
	}
	if self == nil {
		return nil, fmt.Errorf("consensus: %q is not a voter", cfg.Self)
	}
	if cfg.Dir != "" {
		// Before anything listens or starts: a damaged store is refused
		// with what to do, not met later as a panic inside bbolt.
		if err := CheckStore(cfg.Dir); err != nil {
			return nil, err
		}
	}
	c := &Consensus{cfg: cfg, fsm: &fsm{st: state.New(), onApply: cfg.OnApply}, stop: make(chan struct{}), ready: make(chan struct{}),
		leaderCh: make(chan bool, 1)}
	m, err := newMux(cfg.Self, self.Addrs, peers, cfg.Key, 2*cfg.Timeout)
	if err != nil {
		return nil, err
	}
	m.cut = func(from, to string) bool {
		if cfg.Cut != nil && cfg.Cut(from, to) {
			return true
		}
		_, a := c.refused.Load(from)
		_, b := c.refused.Load(to)
		return a || b
	}
	m.log = cfg.Logger
	c.mux = m
	hlog := newRaftLogger(cfg.Logger, nil)
	c.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: m, MaxPool: 3, Timeout: 5 * cfg.Timeout, Logger: hlog,
	})
	m.start(c.serveForward)
	c.wg.Add(1)
	go c.flushRepeats(hlog.held, m.held)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.Self)
	rc.HeartbeatTimeout = cfg.Timeout
	rc.ElectionTimeout = cfg.Timeout
	rc.LeaderLeaseTimeout = cfg.Timeout / 2
	// Followers learn of commits with the next append; Propose appends a
	// no-op right after each commit, so the idle leader need not send
	// empty appends more often than it sends heartbeats.
	rc.CommitTimeout = cfg.Timeout
	rc.Logger = hlog
	rc.SnapshotThreshold = 1024
	rc.TrailingLogs = 1024
	if cfg.trailingLogs != 0 {
		rc.SnapshotThreshold, rc.TrailingLogs = cfg.trailingLogs, cfg.trailingLogs
	}
	if err := raft.ValidateConfig(rc); err != nil {
		c.shutdownTransport()
		return nil, fmt.Errorf("consensus: %w", err)
	}

	c.rc = rc
	if err := guard(StoreFile(cfg.Dir), func() error { return c.open(rc, servers, hlog) }); err != nil {
		c.Shutdown()
		return nil, err
	}
	close(c.ready)
	if cfg.PreferLeader != "" && cfg.PreferLeader != cfg.Self {
		c.wg.Add(1)
		go c.steer()
	}
	return c, nil
}

// open opens (or creates) the stores and raft. Every failure after the
// configuration was validated is a store raft cannot use, so it is an
// ErrCorruptState.
func (c *Consensus) open(rc *raft.Config, servers []raft.Server, hlog hclog.Logger) error {
	var logs raft.LogStore
	var stable raft.StableStore
	var snaps raft.SnapshotStore
	dir := c.cfg.Dir
	if dir == "" {
		mem := raft.NewInmemStore()
		logs, stable, snaps = mem, mem, raft.NewInmemSnapshotStore()
	} else {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("consensus: %w", err)
		}
		bolt, err := raftboltdb.New(raftboltdb.Options{Path: StoreFile(dir), BoltOptions: &bbolt.Options{Timeout: time.Second}})
		if errors.Is(err, bbolt.ErrTimeout) {
			return fmt.Errorf("consensus: %s is open in another process (is another agent running for this node?)", StoreFile(dir))
		}
		var pathErr *fs.PathError
		if errors.As(err, &pathErr) {
			return fmt.Errorf("consensus: %w", err) // permissions, a full disk: not the file's content
		}
		if err != nil {
			return corrupt(StoreFile(dir), err)
		}
		c.closer = append(c.closer, bolt.Close)
		fs, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hlog)
		if err != nil {
			return fmt.Errorf("consensus: %w", err)
		}
		logs, stable, snaps = bolt, bolt, fs
	}
	existing, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return corrupt(dir, err)
	}
	if !existing {
		// Every voter bootstraps with the same configuration, so the
		// cluster forms whichever voters start first. A voter whose state
		// was reset does the same: its bootstrap entry is the one every
		// log starts with, and the leader sends it the rest.
		if err := raft.BootstrapCluster(rc, logs, stable, snaps, c.trans, raft.Configuration{Servers: servers}); err != nil {
			return fmt.Errorf("consensus: bootstrap: %w", err)
		}
	}
	c.logs, c.stable, c.snaps = logs, stable, snaps
	r, err := raft.NewRaft(rc, c.fsm, logs, stable, snaps, keepOpen{c.trans})
	if err != nil {
		if dir == "" {
			return fmt.Errorf("consensus: %w", err)
		}
		return corrupt(dir, err)
	}
	c.setRaft(r)
	return nil
}

// keepOpen hands raft the transport without its Close: raft closes a
// transport it can close when it shuts down, and Recover shuts raft down
// to start it again on the same transport (and the mux, which forwards
// proposals too). Consensus.Shutdown closes the transport itself.
type keepOpen struct{ preVoteTransport }

type preVoteTransport interface {
	raft.Transport
	raft.WithPreVote
}

// setRaft makes r the member and feeds its leadership changes to LeaderCh.
func (c *Consensus) setRaft(r *raft.Raft) {
	if c.leaderStop != nil {
		close(c.leaderStop)
	}
	stop := make(chan struct{})
	c.leaderStop = stop
	c.rf.Store(r)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			select {
			case <-c.stop:
				return
			case <-stop:
				return
			case v := <-r.LeaderCh():
				select { // keep the newest: a reader wants the present
				case <-c.leaderCh:
				default:
				}
				c.leaderCh <- v
			}
		}
	}()
}

func (c *Consensus) r() *raft.Raft { return c.rf.Load() }

func (c *Consensus) shutdownTransport() {
	if c.trans != nil {
		c.trans.Close()
	}
	if c.mux != nil {
		c.mux.Close()
	}
}

// Shutdown leaves the group and closes storage.
func (c *Consensus) Shutdown() error {
	select {
	case <-c.stop:
		return nil
	default:
		close(c.stop)
	}
	c.fwd.close()
	c.recoverMu.Lock() // a Recover under way finishes first (it sees stop after)
	c.recoverMu.Unlock()
	c.wg.Wait()
	var errs []error
	if r := c.r(); r != nil {
		errs = append(errs, r.Shutdown().Error())
	}
	c.shutdownTransport()
	for _, f := range c.closer {
		errs = append(errs, f())
	}
	return errors.Join(errs...)
}

// State returns a copy of the applied state.
func (c *Consensus) State() *state.State { return c.fsm.state() }

// IsLeader reports whether this member leads.
func (c *Consensus) IsLeader() bool { return c.r().State() == raft.Leader }

// Leader returns the current leader's name, or "".
func (c *Consensus) Leader() string {
	_, id := c.r().LeaderWithID()
	return string(id)
}

// LeaderCh signals leadership changes of this member (true: became leader).
func (c *Consensus) LeaderCh() <-chan bool { return c.leaderCh }

// Stats returns raft's own counters (term, indexes, state) for status.
func (c *Consensus) Stats() map[string]string { return c.r().Stats() }

// Propose commits cmd through the leader, wherever it is, and returns the
// error Apply returned for it (for example a stale epoch). While no leader
// is known (an election) it waits, until ctx ends or for at most five
// timeouts when ctx has no deadline.
//
// A proposal whose outcome is unknown (the leader lost leadership after
// replicating it, or its answer was lost) is proposed again until one
// answer comes. The retry carries the proposal's ID, so if the first had
// committed after all, the retry changes nothing and reports the first
// one's result: without the ID, a committed place retried came back as a
// stale epoch, against its own application. A caller that retries on its
// own may set cmd.ID to the same effect; Propose names every other
// proposal but a no-op.
func (c *Consensus) Propose(ctx context.Context, cmd state.Command) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*c.cfg.Timeout)
		defer cancel()
	}
	if cmd.ID == "" && cmd.Op != state.OpNoop {
		cmd.ID = newProposalID()
	}
	if cmd.Boot == 0 && cmd.Node == c.cfg.Self {
		cmd.Boot = c.cfg.Boot
	}
	for {
		var err error
		if c.IsLeader() {
			_, err = c.applyLocal(ctx, cmd) // applied here when it returns
		} else if leader := c.Leader(); leader == "" {
			err = ErrNoLeader
		} else {
			var idx uint64
			idx, err = c.forward(ctx, leader, cmd)
			if idx > 0 {
				// The proposer reads its own write: a caller that checks
				// the state after proposing must see it (a forced record
				// of a replica, then a failover refused against this
				// member's older copy, left the record forced and the
				// failover refused).
				if werr := c.fsm.waitApplied(ctx, idx); werr != nil {
					return fmt.Errorf("consensus: committed at index %d, not yet applied here: %w", idx, werr)
				}
			}
		}
		if !errors.Is(err, ErrNoLeader) && !errors.Is(err, errAnswerLost) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// newProposalID names a proposal. 64 random bits keep the IDs of every
// proposer, restarted or not, apart among the outcomes the state keeps.
func newProposalID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// leaderChanging reports whether an Apply failed only because leadership
// is moving (Propose then waits for the new leader and retries). A transfer
// to the preferred leader is such a move: an admin command proposed during
// one failed with "leadership transfer in progress" (seen in CI).
func leaderChanging(err error) bool {
	return errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress)
}

func (c *Consensus) applyLocal(ctx context.Context, cmd state.Command) (uint64, error) {
	timeout := 5 * c.cfg.Timeout
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if timeout <= 0 { // raft would wait without end
		return 0, fmt.Errorf("consensus: apply: %w", context.DeadlineExceeded)
	}
	r := c.r()
	f := r.Apply(cmd.Encode(), timeout)
	err := f.Error()
	if err == nil && c.cfg.afterCommit != nil {
		err = c.cfg.afterCommit(cmd)
	}
	if err != nil {
		if leaderChanging(err) {
			return 0, fmt.Errorf("%w: %v", ErrNoLeader, err)
		}
		return 0, fmt.Errorf("consensus: apply: %w", err)
	}
	// Followers learn that an entry is committed with the next append;
	// send one now rather than after CommitTimeout, so the new holder of a
	// group hears of it within a round trip.
	r.Apply(state.Command{Op: state.OpNoop}.Encode(), timeout)
	if err, ok := f.Response().(error); ok && err != nil {
		return f.Index(), err
	}
	return f.Index(), nil
}

// steer hands leadership to the preferred voter whenever this member leads
// and the preferred one looks alive: at once on becoming leader, and
// checked again every timeout.
func (c *Consensus) steer() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.Timeout)
	defer t.Stop()
	obs := make(chan raft.Observation, 4)
	o := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r := c.r() // steering runs with a witness, where Recover never runs
	r.RegisterObserver(o)
	defer r.DeregisterObserver(o)
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		case <-obs:
		}
		if !c.IsLeader() || (c.cfg.PreferredUp != nil && !c.cfg.PreferredUp()) {
			continue
		}
		c.cfg.Logger.Info("handing raft leadership to the preferred voter", "to", c.cfg.PreferLeader)
		f := c.r().LeadershipTransferToServer(raft.ServerID(c.cfg.PreferLeader), raft.ServerAddress(c.cfg.PreferLeader))
		if err := f.Error(); err != nil {
			c.cfg.Logger.Warn("leadership transfer failed", "to", c.cfg.PreferLeader, "err", err)
		}
	}
}

// flushRepeats tells, now and then, how many records were held back as
// repeats (repeats.go), also of failures that have stopped.
func (c *Consensus) flushRepeats(rs ...*repeats) {
	defer c.wg.Done()
	t := time.NewTicker(repeatWindow / 10)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			for _, r := range rs {
				r.flush()
			}
		}
	}
}
