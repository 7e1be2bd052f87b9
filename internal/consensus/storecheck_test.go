package consensus

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// realStore writes a raft-boltdb store with n log entries, the way raft
// does, and returns its bytes.
func realStore(t testing.TB, n int) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "raft.db")
	s, err := raftboltdb.NewBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i += 10 {
		var logs []*raft.Log
		for j := i; j < i+10 && j <= n; j++ {
			logs = append(logs, &raft.Log{Index: uint64(j), Term: 3, Type: raft.LogCommand, Data: []byte(strings.Repeat(fmt.Sprintf("entry %d ", j), 1+j%40))})
		}
		if err := s.StoreLogs(logs); err != nil {
			t.Fatal(err)
		}
	}
	if n > 30 {
		s.DeleteRange(1, 20) // free pages, as compaction after a snapshot does
	}
	s.SetUint64([]byte("CurrentTerm"), 3)
	s.SetUint64([]byte("LastVoteTerm"), 3)
	s.Set([]byte("LastVoteCand"), []byte("a"))
	s.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func writeStore(t *testing.T, data []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(StoreFile(dir), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func usedBytes(t *testing.T, data []byte) int {
	m, ps, err := boltMeta(data)
	if err != nil {
		t.Fatal(err)
	}
	return int(m.pgid * ps)
}

func TestCheckStoreAcceptsRealStores(t *testing.T) {
	for _, n := range []int{0, 1, 25, 400} {
		if err := CheckStore(writeStore(t, realStore(t, n))); err != nil {
			t.Errorf("%d entries: %v", n, err)
		}
	}
	if err := CheckStore(t.TempDir()); err != nil {
		t.Errorf("no store yet (a first start): %v", err)
	}
}

func TestCheckStoreFindsTruncation(t *testing.T) {
	data := realStore(t, 400)
	used := usedBytes(t, data)
	for _, size := range []int{0, 100, 4096, 8192, used / 2, used - 4096, used - 1} {
		dir := writeStore(t, data[:size])
		err := CheckStore(dir)
		if !IsCorruptState(err) || !strings.Contains(err.Error(), StoreFile(dir)) {
			t.Errorf("truncated to %d of %d used bytes: %v", size, used, err)
		}
	}
}

func TestCheckStoreFindsDamagedPages(t *testing.T) {
	data := realStore(t, 400)
	m, ps, _ := boltMeta(data)
	cases := map[string]func(b []byte){
		"both meta pages": func(b []byte) { b[pageHeaderSize+20] ^= 0x40; b[int(ps)+pageHeaderSize+20] ^= 0x40 },
		"root page id":    func(b []byte) { b[int(m.root*ps)] ^= 0x01 },
		"root page flags": func(b []byte) { b[int(m.root*ps)+8] ^= 0xff },
		"root page count": func(b []byte) { b[int(m.root*ps)+11] ^= 0x80 },
		"freelist entry":  func(b []byte) { b[int(m.freelist*ps)+pageHeaderSize+3] ^= 0x10 },
	}
	for name, damage := range cases {
		b := append([]byte(nil), data...)
		damage(b)
		if err := CheckStore(writeStore(t, b)); !IsCorruptState(err) {
			t.Errorf("%s damaged: %v", name, err)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// Any single damaged byte in the structure of the file (page headers and
// element arrays, meta pages, freelist) or anywhere at random is either
// refused by the check or harmless to bbolt and raft-boltdb: opening the
// store and reading every entry and term neither panics nor faults.
func TestCheckStoreSingleByteDamage(t *testing.T) {
	data := realStore(t, 120)
	used := usedBytes(t, data)
	_, ps, _ := boltMeta(data)
	var offsets []int
	for p := 0; p < used; p += int(ps) {
		for o := 0; o < 96; o++ {
			offsets = append(offsets, p+o)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 300; i++ {
		offsets = append(offsets, rng.IntN(used))
	}
	if testing.Short() {
		rng.Shuffle(len(offsets), func(i, j int) { offsets[i], offsets[j] = offsets[j], offsets[i] })
		offsets = offsets[:200]
	}
	dir := t.TempDir()
	refused, harmless := 0, 0
	for _, off := range offsets {
		b := append([]byte(nil), data...)
		b[off] ^= byte(1 + rng.IntN(255))
		os.WriteFile(StoreFile(dir), b, 0o600)
		if err := CheckStore(dir); err != nil {
			if !IsCorruptState(err) {
				t.Fatalf("byte %d: %v is not an ErrCorruptState", off, err)
			}
			refused++
			continue
		}
		if err := guard(StoreFile(dir), func() error { return readAll(StoreFile(dir)) }); err != nil {
			t.Fatalf("byte %d damaged: the check passed, then reading the store failed: %v", off, err)
		}
		harmless++
	}
	t.Logf("%d damaged bytes refused, %d harmless", refused, harmless)
}

// readAll reads the store as raft does at start.
func readAll(path string) error {
	s, err := raftboltdb.New(raftboltdb.Options{Path: path, NoSync: true})
	if err != nil {
		return err
	}
	defer s.Close()
	first, err := s.FirstIndex()
	if err != nil {
		return err
	}
	last, err := s.LastIndex()
	if err != nil {
		return err
	}
	for i := first; i <= last && last > 0; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
	}
	for _, k := range []string{"CurrentTerm", "LastVoteTerm"} {
		if _, err := s.GetUint64([]byte(k)); err != nil && !errors.Is(err, raftboltdb.ErrKeyNotFound) {
			return err
		}
	}
	return s.Sync()
}

func FuzzCheckRaftStore(f *testing.F) {
	f.Add(realStore(f, 0))
	f.Add(realStore(f, 25))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRaftStore(data) // must not panic (it recovers, so check the walker alone too)
		checkBolt(data)
	})
}
