package consensus

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// These tests check, on hashicorp/raft itself, what docs/two-node.md says
// of a two-voter cluster whose survivor recovers to a single voter after
// fencing its peer: the returning peer cannot depose the survivor before it
// is re-added, even with a higher term, and once re-added its uncommitted
// entries are replaced by the survivor's log. They run raft on its
// in-memory transport and stores with real (short) timeouts; every wait is
// for a condition, with a generous bound.

type listFSM struct {
	mu  sync.Mutex
	log []string
}

func (f *listFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, string(l.Data))
	return nil
}

func (f *listFSM) entries() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}

func (f *listFSM) Snapshot() (raft.FSMSnapshot, error) {
	return &listSnap{data: strings.Join(f.entries(), "\n")}, nil
}

func (f *listFSM) Restore(r io.ReadCloser) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = nil
	if len(b) > 0 {
		f.log = strings.Split(string(b), "\n")
	}
	return nil
}

type listSnap struct{ data string }

func (s *listSnap) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write([]byte(s.data)); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}
func (s *listSnap) Release() {}

type member struct {
	id     raft.ServerID
	fsm    *listFSM
	store  *raft.InmemStore
	snaps  *raft.InmemSnapshotStore
	trans  *raft.InmemTransport
	raft   *raft.Raft
	config *raft.Config
}

func twoNodeConfig(id raft.ServerID, preVoteDisabled bool) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = id
	c.HeartbeatTimeout = 50 * time.Millisecond
	c.ElectionTimeout = 50 * time.Millisecond
	c.LeaderLeaseTimeout = 50 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	c.PreVoteDisabled = preVoteDisabled
	c.Logger = hclog.NewNullLogger()
	return c
}

func newMember(t *testing.T, id string, preVoteDisabled bool) *member {
	_, trans := raft.NewInmemTransport(raft.ServerAddress(id))
	return &member{id: raft.ServerID(id), fsm: &listFSM{}, store: raft.NewInmemStore(), snaps: raft.NewInmemSnapshotStore(),
		trans: trans, config: twoNodeConfig(raft.ServerID(id), preVoteDisabled)}
}

func (m *member) start(t *testing.T) {
	t.Helper()
	r, err := raft.NewRaft(m.config, m.fsm, m.store, m.store, m.snaps, m.trans)
	if err != nil {
		t.Fatal(err)
	}
	m.raft = r
}

func connect(a, b *member) {
	a.trans.Connect(b.trans.LocalAddr(), b.trans)
	b.trans.Connect(a.trans.LocalAddr(), a.trans)
}

func cut(a, b *member) {
	a.trans.Disconnect(b.trans.LocalAddr())
	b.trans.Disconnect(a.trans.LocalAddr())
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 20 s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func apply(t *testing.T, m *member, data string) {
	t.Helper()
	if err := m.raft.Apply([]byte(data), 5*time.Second).Error(); err != nil {
		t.Fatalf("%s: apply %q: %v", m.id, data, err)
	}
}

func TestTwoNodeRecoverAndReadd(t *testing.T) {
	for _, preVoteDisabled := range []bool{false, true} {
		t.Run(fmt.Sprintf("prevote-disabled=%v", preVoteDisabled), func(t *testing.T) {
			twoNodeRecoverAndReadd(t, preVoteDisabled)
		})
	}
}

func twoNodeRecoverAndReadd(t *testing.T, preVoteDisabled bool) {
	a, b := newMember(t, "a", preVoteDisabled), newMember(t, "b", preVoteDisabled)
	connect(a, b)
	conf := raft.Configuration{Servers: []raft.Server{
		{Suffrage: raft.Voter, ID: a.id, Address: a.trans.LocalAddr()},
		{Suffrage: raft.Voter, ID: b.id, Address: b.trans.LocalAddr()},
	}}
	for _, m := range []*member{a, b} {
		if err := raft.BootstrapCluster(m.config, m.store, m.store, m.snaps, m.trans, conf); err != nil {
			t.Fatal(err)
		}
		m.start(t)
	}
	defer func() {
		for _, m := range []*member{a, b} {
			if m.raft != nil {
				m.raft.Shutdown().Error()
			}
		}
	}()
	// b leads (it will be the fenced one, with an uncommitted entry).
	eventually(t, "a leader", func() bool { return a.raft.State() == raft.Leader || b.raft.State() == raft.Leader })
	if a.raft.State() == raft.Leader {
		if err := a.raft.LeadershipTransferToServer(b.id, b.trans.LocalAddr()).Error(); err != nil {
			t.Fatal(err)
		}
		eventually(t, "b leads", func() bool { return b.raft.State() == raft.Leader })
	}
	apply(t, b, "committed-1")
	eventually(t, "a applied committed-1", func() bool { return len(a.fsm.entries()) == 1 })

	// The partition: b, still leader for a moment, appends an entry it
	// can never commit. Then a "fences" b (b's raft keeps running: the
	// worst case, a peer that was cut off, not powered off).
	cut(a, b)
	fut := b.raft.Apply([]byte("uncommitted-on-b"), 300*time.Millisecond)
	if err := fut.Error(); err == nil {
		t.Fatal("b committed alone with two voters")
	}

	// a recovers to a single voter, offline: stop, RecoverCluster, start.
	if err := a.raft.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	_, atrans := raft.NewInmemTransport(a.trans.LocalAddr())
	a.trans = atrans
	a.fsm = &listFSM{}
	solo := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: a.id, Address: a.trans.LocalAddr()}}}
	if err := raft.RecoverCluster(a.config, a.fsm, a.store, a.store, a.snaps, a.trans, solo); err != nil {
		t.Fatal(err)
	}
	a.fsm = &listFSM{}
	a.start(t)
	eventually(t, "a leads alone", func() bool { return a.raft.State() == raft.Leader })
	apply(t, a, "survivor-1")
	apply(t, a, "survivor-2")

	// b campaigns while cut off; with pre-vote disabled its term climbs.
	eventually(t, "b is no longer leader", func() bool { return b.raft.State() != raft.Leader })
	if preVoteDisabled {
		eventually(t, "b's term passes a's", func() bool { return term(b) > term(a) })
	}

	// b is heard again, not yet re-added: it cannot depose a.
	connect(a, b)
	aTerm := term(a)
	for range 20 { // 20 of b's election timeouts
		time.Sleep(b.config.ElectionTimeout)
		if a.raft.State() != raft.Leader || term(a) != aTerm {
			t.Fatalf("a deposed or its term moved (%d → %d) by a peer not in its configuration", aTerm, term(a))
		}
	}
	for _, e := range a.fsm.entries() {
		if e == "uncommitted-on-b" {
			t.Fatal("b's uncommitted entry reached a")
		}
	}

	// The re-add: b's log is replaced by a's.
	if err := a.raft.AddVoter(b.id, b.trans.LocalAddr(), 0, 10*time.Second).Error(); err != nil {
		// a may have stepped down on b's higher term; the re-add is then
		// tried again by the new leader, which must be a.
		eventually(t, "a leads again", func() bool { return a.raft.State() == raft.Leader })
		if err := a.raft.AddVoter(b.id, b.trans.LocalAddr(), 0, 10*time.Second).Error(); err != nil {
			t.Fatal(err)
		}
	}
	// With b's term higher, a steps down when b answers its first append
	// ("peer has newer term") and wins the election that follows: its log
	// is newer. An entry proposed meanwhile fails and is proposed again.
	eventually(t, "a commits with b", func() bool {
		return a.raft.State() == raft.Leader && a.raft.Apply([]byte("paired-again"), 5*time.Second).Error() == nil
	})
	// A proposal that failed with the step-down may have committed after
	// all, so "paired-again" may stand more than once.
	eventually(t, "b applied a's log", func() bool { return equal(b.fsm.entries(), a.fsm.entries()) })
	got := b.fsm.entries()
	if !equal(got[:3], []string{"committed-1", "survivor-1", "survivor-2"}) || len(got) < 4 {
		t.Fatalf("b applied %q", got)
	}
	for _, e := range got[3:] {
		if e != "paired-again" {
			t.Fatalf("b applied %q", got)
		}
	}
	if b.raft.State() == raft.Leader {
		t.Fatal("b leads")
	}
}

func term(m *member) uint64 {
	var t uint64
	fmt.Sscan(m.raft.Stats()["term"], &t)
	return t
}

func equal(a, b []string) bool {
	return bytes.Equal([]byte(strings.Join(a, "\x00")), []byte(strings.Join(b, "\x00")))
}
