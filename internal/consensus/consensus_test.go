package consensus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"tandem/internal/state"
)

type cluster struct {
	members map[string]*Consensus
	mu      sync.Mutex
	applied map[string][]state.Command
}

func startCluster(t *testing.T, key []byte, prefer string, names ...string) *cluster {
	t.Helper()
	return startClusterWith(t, key, prefer, nil, names...)
}

// startClusterWith is startCluster with each member's configuration
// changed by tweak (fault hooks) before it starts.
func startClusterWith(t *testing.T, key []byte, prefer string, tweak func(*Config), names ...string) *cluster {
	t.Helper()
	if len(names) == 0 {
		names = []string{"a", "b", "w"}
	}
	voters := loopbackVoters(t, names...)
	cl := &cluster{members: map[string]*Consensus{}, applied: map[string][]state.Command{}}
	for _, n := range names {
		n := n
		cfg := Config{Self: n, Voters: voters, Key: key, Timeout: 100 * time.Millisecond,
			PreferLeader: prefer, PreferredUp: func() bool { return true },
			OnApply: func(st *state.State, c state.Command, err error) {
				cl.mu.Lock()
				if c.Op != state.OpNoop {
					cl.applied[n] = append(cl.applied[n], c)
				}
				cl.mu.Unlock()
			}}
		if tweak != nil {
			tweak(&cfg)
		}
		c, err := Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		cl.members[n] = c
		t.Cleanup(func() { c.Shutdown() })
	}
	return cl
}

// loopbackVoters gives each voter a free port on 127.0.0.1.
func loopbackVoters(t *testing.T, names ...string) []Voter {
	t.Helper()
	// Hold every listener until all ports are chosen, so no two members
	// get the same free port.
	var voters []Voter
	var held []net.Listener
	for _, n := range names {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, ln)
		voters = append(voters, Voter{Name: n, Addrs: []netip.AddrPort{netip.MustParseAddrPort(ln.Addr().String())}})
	}
	for _, ln := range held {
		ln.Close()
	}
	return voters
}

func (cl *cluster) waitLeader(t *testing.T, want string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for n, c := range cl.members {
			if c.IsLeader() && (want == "" || n == want) {
				return n
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no leader (want %q)", want)
	return ""
}

func TestProposeFromFollowerAndStaleEpoch(t *testing.T) {
	cl := startCluster(t, bytes.Repeat([]byte{1}, 32), "")
	leader := cl.waitLeader(t, "")
	var follower *Consensus
	for n, c := range cl.members {
		if n != leader {
			follower = c
		}
	}
	// The deadline bounds an election too: on a loaded machine the leader
	// may change while the proposals are under way (raft's timeout is
	// 100 ms), which the default of five timeouts did not always cover.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := follower.Propose(ctx, state.Command{Op: state.OpPlace, Group: "g", Holder: "a", Epoch: 0}); err != nil {
		t.Fatal(err)
	}
	err := follower.Propose(ctx, state.Command{Op: state.OpPlace, Group: "g", Holder: "b", Epoch: 0})
	if !state.IsStaleEpoch(err) {
		t.Fatalf("stale epoch through forwarding: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		ok := true
		for _, c := range cl.members {
			g := c.State().Groups["g"]
			ok = ok && g != nil && g.Holder == "a" && g.Epoch == 1
		}
		if ok {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("state not replicated to every member")
}

func TestLeadershipSteersToWitness(t *testing.T) {
	cl := startCluster(t, nil, "w")
	cl.waitLeader(t, "w")
}

func TestNineVotersAgree(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "w"}
	cl := startCluster(t, nil, "w", names...)
	cl.waitLeader(t, "w")
	// Four members gone: five of nine still commit.
	for _, n := range []string{"n1", "n2", "n3", "n4"} {
		cl.members[n].Shutdown()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.members["n8"].Propose(ctx, state.Command{Op: state.OpPlace, Group: "g", Holder: "n5"}); err != nil {
		t.Fatalf("five of nine did not commit: %v", err)
	}
}

// Apply errors that only mean "the leader is changing" make Propose wait
// for the next leader; anything else is returned.
func TestLeaderChangingErrors(t *testing.T) {
	for _, err := range []error{raft.ErrNotLeader, raft.ErrLeadershipLost, raft.ErrLeadershipTransferInProgress, fmt.Errorf("wrapped: %w", raft.ErrLeadershipTransferInProgress)} {
		if !leaderChanging(err) {
			t.Errorf("%v: not taken for a leader change", err)
		}
	}
	for _, err := range []error{raft.ErrRaftShutdown, raft.ErrEnqueueTimeout, errors.New("disk full")} {
		if leaderChanging(err) {
			t.Errorf("%v: taken for a leader change", err)
		}
	}
}

// TestFollowerReadsItsOwnProposal: once Propose returns on a follower,
// the follower's state has the command applied. A forced failover
// recorded a replica UpToDate through a data node, then checked the move
// against that node's copy, which had not applied the record yet: the
// failover was refused and the forced record stayed (a new user's walk).
func TestFollowerReadsItsOwnProposal(t *testing.T) {
	cl := startCluster(t, bytes.Repeat([]byte{1}, 32), "")
	follower := cl.follower(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	holders := []string{"a", "b"}
	for e := uint64(0); e < 40; e++ {
		cmd := state.Command{Op: state.OpPlace, Group: "g", Holder: holders[e%2], Epoch: e}
		if err := follower.Propose(ctx, cmd); err != nil {
			t.Fatal(err)
		}
		if g := follower.State().Groups["g"]; g == nil || g.Epoch != e+1 || g.Holder != cmd.Holder {
			t.Fatalf("proposal %d answered before the proposer applied it: the proposer's state has %+v", e, g)
		}
	}
}
