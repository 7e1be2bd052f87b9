package consensus

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/state"
)

// diskCluster is three voters with their raft state on disk, each one
// stoppable and startable again.
type diskCluster struct {
	t      *testing.T
	voters []Voter
	dir    string
	key    []byte
	on     map[string]*Consensus
}

func newDiskCluster(t *testing.T) *diskCluster {
	dc := &diskCluster{t: t, dir: t.TempDir(), key: []byte("0123456789abcdef0123456789abcdef"), on: map[string]*Consensus{}}
	var held []net.Listener
	for _, n := range []string{"a", "b", "w"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, ln)
		dc.voters = append(dc.voters, Voter{Name: n, Addrs: []netip.AddrPort{netip.MustParseAddrPort(ln.Addr().String())}})
	}
	for _, ln := range held {
		ln.Close()
	}
	t.Cleanup(func() {
		for _, c := range dc.on {
			c.Shutdown()
		}
	})
	return dc
}

func (dc *diskCluster) raftDir(n string) string { return filepath.Join(dc.dir, n, "raft") }

func (dc *diskCluster) start(n string) (*Consensus, error) {
	c, err := Start(Config{Self: n, Voters: dc.voters, Key: dc.key, Dir: dc.raftDir(n), Timeout: 150 * time.Millisecond,
		trailingLogs: 8})
	if err == nil {
		dc.on[n] = c
	}
	return c, err
}

func (dc *diskCluster) stop(n string) {
	dc.on[n].Shutdown()
	delete(dc.on, n)
}

func (dc *diskCluster) propose(groups ...string) {
	dc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, g := range groups {
		for _, c := range dc.on {
			if err := c.Propose(ctx, state.Command{Op: state.OpPlace, Group: g, Holder: "a"}); err != nil {
				dc.t.Fatalf("propose %s: %v", g, err)
			}
			break
		}
	}
}

// caughtUp waits until c has applied every group.
func caughtUp(t *testing.T, c *Consensus, groups []string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := c.State()
		missing := 0
		for _, g := range groups {
			if st.Groups[g] == nil || st.Groups[g].Holder != "a" {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d groups never reached the voter", missing, len(groups))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func names(prefix string, n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}

// A voter whose raft.db is damaged refuses to start with an error that
// names the file; once its state is moved aside it starts with an empty
// log under the same server ID and catches up from the leader, by a
// snapshot (the leader has compacted its log) and the entries after it.
func TestCorruptStoreIsRefusedAndResetRejoins(t *testing.T) {
	damageStore := func(damage func(t *testing.T, data []byte) []byte) func(t *testing.T, dir string) string {
		return func(t *testing.T, dir string) string {
			file := StoreFile(dir)
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, damage(t, data), 0o600); err != nil {
				t.Fatal(err)
			}
			return file
		}
	}
	damages := map[string]func(t *testing.T, dir string) string{
		"truncated": damageStore(func(t *testing.T, data []byte) []byte { return data[:usedBytes(t, data)/2] }),
		"bit flips": damageStore(func(t *testing.T, data []byte) []byte {
			m, ps, err := boltMeta(data)
			if err != nil {
				t.Fatal(err)
			}
			data[m.root*ps] ^= 0x04 // the root page's own id
			data[m.root*ps+10] ^= 0x20
			return data
		}),
		// raft checks its snapshots' CRC; with none usable it cannot start
		"snapshot": func(t *testing.T, dir string) string {
			snaps, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*", "state.bin"))
			if len(snaps) == 0 {
				t.Fatal("no snapshot to damage")
			}
			for _, s := range snaps {
				data, _ := os.ReadFile(s)
				data[len(data)/2] ^= 0xff
				os.WriteFile(s, data, 0o600)
			}
			return dir
		},
	}
	for name, damage := range damages {
		t.Run(name, func(t *testing.T) {
			dc := newDiskCluster(t)
			for _, n := range []string{"a", "b", "w"} {
				if _, err := dc.start(n); err != nil {
					t.Fatal(err)
				}
			}
			before := names("before", 30)
			dc.propose(before...)
			caughtUp(t, dc.on["a"], before)
			if err := dc.on["a"].r().Snapshot().Error(); err != nil {
				t.Fatal(err)
			}
			dc.stop("a")

			file := damage(t, dc.raftDir("a"))
			_, err := dc.start("a")
			if !IsCorruptState(err) || !strings.Contains(err.Error(), file) {
				t.Fatalf("start on a damaged store: %v; want an ErrCorruptState naming %s", err, file)
			}
			t.Logf("refused: %v", err)

			// The others go on, and the leader compacts its log, so the
			// reset voter needs a snapshot.
			while := names("while", 20)
			dc.propose(while...)
			for _, n := range []string{"b", "w"} {
				if err := dc.on[n].r().Snapshot().Error(); err != nil {
					t.Fatalf("snapshot on %s: %v", n, err)
				}
			}

			moved, err := ResetState(dc.raftDir("a"), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(StoreFile(moved)); err != nil {
				t.Fatalf("the damaged store is not kept at %s: %v", moved, err)
			}
			if _, err := os.Stat(dc.raftDir("a")); !os.IsNotExist(err) {
				t.Fatalf("%s still exists after the reset: %v", dc.raftDir("a"), err)
			}
			a, err := dc.start("a")
			if err != nil {
				t.Fatalf("start after the reset: %v", err)
			}
			all := append(append(before, while...), names("after", 5)...)
			dc.propose(all[len(before)+len(while):]...)
			caughtUp(t, a, all)
			if s := a.Stats()["last_snapshot_index"]; s == "0" || s == "" {
				t.Errorf("a caught up without a snapshot (last_snapshot_index %q): the snapshot path was not exercised", s)
			}
			// and it takes part again: its proposals commit
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := a.Propose(ctx, state.Command{Op: state.OpPlace, Group: "from-a", Holder: "a"}); err != nil {
				t.Fatalf("propose from the reset voter: %v", err)
			}
		})
	}
}

func TestResetStateRefusesAnOpenStore(t *testing.T) {
	dc := newDiskCluster(t)
	if _, err := dc.start("a"); err != nil {
		t.Fatal(err)
	}
	if _, err := ResetState(dc.raftDir("a"), time.Now()); err == nil || !strings.Contains(err.Error(), "running agent") {
		t.Fatalf("reset of a store in use: %v", err)
	}
	dc.stop("a")
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	first, err := ResetState(dc.raftDir("a"), now)
	if err != nil || !strings.HasSuffix(first, "raft.reset-20260102T030405Z") {
		t.Fatalf("reset: %q %v", first, err)
	}
	os.MkdirAll(dc.raftDir("a"), 0o700)
	second, err := ResetState(dc.raftDir("a"), now)
	if err != nil || second == first {
		t.Fatalf("a second reset in the same second: %q %v (first %q)", second, err, first)
	}
	if _, err := ResetState(dc.raftDir("a"), now); err == nil {
		t.Fatal("reset with no state succeeded")
	}
}
