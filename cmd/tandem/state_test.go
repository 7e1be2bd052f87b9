package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"tandem/internal/agentlock"
	"testing"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"tandem/internal/consensus"
)

// loopbackConfig writes a loopback cluster configuration whose state_dir is
// dir and returns its path.
func loopbackConfig(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "tandem.yaml")
	cfg := fmt.Sprintf("cluster: c\ninsecure: true\nstate_dir: %s\napi: {socket: %s/api.sock}\n"+
		"nodes:\n  - {name: a, links: [127.0.0.1:17901]}\n  - {name: b, links: [127.0.0.1:17902]}\n"+
		"witness: {name: w, links: [127.0.0.1:17903]}\n", dir, dir)
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// damagedStore leaves a raft store in dir's raft directory that is cut
// short, as after a crash of the disk under it.
func damagedStore(t *testing.T, dir string) string {
	t.Helper()
	raft := consensus.RaftDir(dir)
	os.MkdirAll(raft, 0o700)
	s, err := raftboltdb.NewBoltStore(consensus.StoreFile(raft))
	if err != nil {
		t.Fatal(err)
	}
	s.SetUint64([]byte("CurrentTerm"), 7)
	s.Close()
	data, _ := os.ReadFile(consensus.StoreFile(raft))
	os.WriteFile(consensus.StoreFile(raft), data[:5000], 0o600)
	return consensus.StoreFile(raft)
}

func TestAgentWithDamagedStateExitsWithTheRecovery(t *testing.T) {
	dir := t.TempDir()
	cfg := loopbackConfig(t, dir)
	file := damagedStore(t, dir)
	_, _, err := run("agent", "-c", cfg, "--node", "a", "--no-realtime")
	if exitCode(err) != exitCorruptState {
		t.Fatalf("exit %d, want %d: %v", exitCode(err), exitCorruptState, err)
	}
	for _, want := range []string{file, "tandem state reset -c " + cfg, "Recovering a node's state"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the message does not say %q:\n%v", want, err)
		}
	}
	if _, _, err := run("state", "check", "-c", cfg); exitCode(err) != exitCorruptState || !strings.Contains(err.Error(), file) {
		t.Fatalf("state check: exit %d: %v", exitCode(err), err)
	}
	out, _, err := run("state", "reset", "-c", cfg)
	if err != nil {
		t.Fatal(err)
	}
	moved, _ := filepath.Glob(filepath.Join(dir, "raft.reset-*", "raft.db"))
	if len(moved) != 1 || !strings.Contains(out, consensus.RaftDir(dir)) {
		t.Fatalf("reset said %q and left %v", out, moved)
	}
	if out, _, err := run("state", "check", "--state-dir", dir); err != nil || !strings.Contains(out, "ok") {
		t.Fatalf("state check after the reset: %q %v", out, err)
	}
}

func TestStateResetRefusesWhileTheStoreIsOpen(t *testing.T) {
	dir := t.TempDir()
	cfg := loopbackConfig(t, dir)
	os.MkdirAll(consensus.RaftDir(dir), 0o700)
	s, err := raftboltdb.NewBoltStore(consensus.StoreFile(consensus.RaftDir(dir)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, err := run("state", "reset", "-c", cfg); err == nil || !strings.Contains(err.Error(), "stop it first") {
		t.Fatalf("reset with the store open: %v", err)
	}
	if _, err := os.Stat(consensus.StoreFile(consensus.RaftDir(dir))); err != nil {
		t.Fatalf("the store moved while open: %v", err)
	}
}

// An agent holds its state directory's lock from its first moment, before
// raft has the store open (or when the store is too damaged to open and
// the agent is about to exit): reset refuses while the lock is held, and
// names the agent.
func TestStateResetRefusesWhileAnAgentHoldsTheStateDir(t *testing.T) {
	dir := t.TempDir()
	cfg := loopbackConfig(t, dir)
	os.MkdirAll(consensus.RaftDir(dir), 0o700)
	os.WriteFile(consensus.StoreFile(consensus.RaftDir(dir)), []byte("damaged"), 0o600)
	l, err := agentlock.Acquire(dir, "a")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = run("state", "reset", "-c", cfg)
	if err == nil || !strings.Contains(err.Error(), "already runs for node a") {
		t.Fatalf("reset with an agent holding the state dir: %v", err)
	}
	if _, err := os.Stat(consensus.StoreFile(consensus.RaftDir(dir))); err != nil {
		t.Fatalf("the store moved while an agent held the state dir: %v", err)
	}
	l.Release()
	if _, _, err := run("state", "reset", "-c", cfg); err != nil {
		t.Fatalf("reset once the agent is gone: %v", err)
	}
}
