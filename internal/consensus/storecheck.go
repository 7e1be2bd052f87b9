package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
)

// ErrCorruptState is the class of errors for raft state on disk that
// cannot be used: a damaged raft.db, or snapshots raft cannot restore.
// The recovery is ResetState and a restart (the node rejoins from its
// peers); retrying as it is fails the same way.
var ErrCorruptState = errors.New("consensus: corrupt raft state")

// IsCorruptState reports whether err is of class ErrCorruptState.
func IsCorruptState(err error) bool { return errors.Is(err, ErrCorruptState) }

func corrupt(path string, err error) error {
	return fmt.Errorf("%w: %s: %v", ErrCorruptState, path, err)
}

// RaftDir is the consensus directory inside an agent's state_dir.
func RaftDir(stateDir string) string { return filepath.Join(stateDir, "raft") }

// StoreFile is the raft log and vote store inside a consensus directory.
func StoreFile(dir string) string { return filepath.Join(dir, "raft.db") }

// CheckStore checks the raft state in dir before it is opened: a missing
// store is fine (a first start), a damaged one is an ErrCorruptState that
// names the file. It reads the file without bbolt, so a truncated or
// bit-flipped file is an error here instead of a panic or a memory fault
// in bbolt.
func CheckStore(dir string) error {
	path := StoreFile(dir)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("consensus: %w", err)
	}
	if len(data) == 0 {
		return corrupt(path, errors.New("the file is empty"))
	}
	if err := checkRaftStore(data); err != nil {
		return corrupt(path, err)
	}
	return nil
}

// checkRaftStore checks a raft-boltdb file image: bbolt's structure, then
// what raft reads from it at start: contiguous log entries that decode, at
// the index they are stored under, and 8-byte terms. It never panics.
func checkRaftStore(data []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("unreadable: %v", r)
		}
	}()
	buckets, err := checkBolt(data)
	if err != nil {
		return err
	}
	var prev uint64
	dec := codec.NewDecoderBytes(nil, &msgpack)
	for i, kv := range buckets["logs"] {
		k, v := kv[0], kv[1]
		if len(k) != 8 {
			return fmt.Errorf("log entry %d has a key of %d bytes", i, len(k))
		}
		idx := binary.BigEndian.Uint64(k)
		if i > 0 && idx != prev+1 {
			return fmt.Errorf("the log skips from index %d to %d", prev, idx)
		}
		prev = idx
		var l raft.Log
		dec.ResetBytes(v)
		if err := dec.Decode(&l); err != nil {
			return fmt.Errorf("log entry %d does not decode: %v", idx, err)
		}
		if l.Index != idx {
			return fmt.Errorf("log entry stored at index %d says index %d", idx, l.Index)
		}
	}
	for _, kv := range buckets["conf"] {
		switch string(kv[0]) {
		case "CurrentTerm", "LastVoteTerm":
			if len(kv[1]) != 8 {
				return fmt.Errorf("%s is %d bytes, not 8", kv[0], len(kv[1]))
			}
		}
	}
	return nil
}

// msgpack decodes log entries as raft-boltdb does (a handle is safe for
// concurrent use and keeps its type cache).
var msgpack codec.MsgpackHandle

// guard turns a panic or a memory fault (bbolt reads through an mmap)
// while fn opens the store into an ErrCorruptState for path, for damage
// that CheckStore did not see.
func guard(path string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = corrupt(path, fmt.Errorf("reading it failed: %v", r))
		}
	}()
	return fn()
}

// ResetState moves the raft state in dir aside, to dir.reset-TIMESTAMP
// next to it (nothing is deleted), so that the next start begins with an
// empty log and catches up from the leader. It refuses while an agent has
// the store open. It returns where the state went.
func ResetState(dir string, now time.Time) (string, error) {
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("consensus: no raft state at %s: nothing to reset", dir)
		}
		return "", fmt.Errorf("consensus: %w", err)
	}
	if locked, err := storeInUse(StoreFile(dir)); err != nil {
		return "", fmt.Errorf("consensus: %w", err)
	} else if locked {
		return "", fmt.Errorf("consensus: %s is open in a running agent: stop it first", StoreFile(dir))
	}
	base := filepath.Clean(dir) + ".reset-" + now.UTC().Format("20060102T150405Z")
	to := base
	for i := 1; ; i++ {
		if _, err := os.Lstat(to); errors.Is(err, os.ErrNotExist) {
			break
		}
		to = fmt.Sprintf("%s-%d", base, i)
	}
	if err := os.Rename(dir, to); err != nil {
		return "", fmt.Errorf("consensus: %w", err)
	}
	if d, err := os.Open(filepath.Dir(to)); err == nil {
		d.Sync()
		d.Close()
	}
	return to, nil
}
