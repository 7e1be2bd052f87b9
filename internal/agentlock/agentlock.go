// Package agentlock owns the lock that lets one tandem agent (or witness)
// at a time use a state directory. A second agent for the same node would
// otherwise get as far as binding the heartbeat port and fail with
// "address already in use", or, with other addresses, run beside the first
// on the same raft log, boot counter and audit log. The agent takes the
// lock before it binds or opens anything else and holds it until it exits;
// the kernel drops it when the process dies, however it dies, so a crash
// leaves no stale lock. It imports no tandem package; cmd uses it.
package agentlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// FileName is the lock file inside the state directory.
const FileName = "agent.lock"

// Holder is what the lock file says about the agent that holds it.
type Holder struct {
	Node string
	PID  int // 0 when the file does not say
}

// HeldError is Acquire's error when another agent holds the lock.
type HeldError struct {
	StateDir string
	Holder   Holder
}

func (e *HeldError) Error() string {
	who := "another tandem agent already runs"
	if e.Holder.Node != "" {
		who += " for node " + e.Holder.Node
	}
	pid := "pid unknown"
	if e.Holder.PID != 0 {
		pid = "pid " + strconv.Itoa(e.Holder.PID)
	}
	return fmt.Sprintf("agentlock: %s (%s, state dir %s): stop it first (systemctl stop tandem, or tandem-witness), "+
		"or give this one another state dir", who, pid, e.StateDir)
}

// IsHeld reports whether err says another agent holds the lock.
func IsHeld(err error) bool {
	var h *HeldError
	return errors.As(err, &h)
}

// Lock is a held lock; Release lets it go.
type Lock struct{ f *os.File }

// Acquire takes the lock of stateDir for this process, as node, creating
// the directory (mode 0700) and the lock file when needed. When another
// process holds it, it returns a *HeldError naming that agent's node and
// pid. The descriptor is close-on-exec: services the agent starts do not
// hold the lock after it dies.
func Acquire(stateDir, node string) (*Lock, error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("agentlock: %w", err)
	}
	path := filepath.Join(stateDir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("agentlock: %w", err)
	}
	held, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("agentlock: %s: %w", path, err)
	}
	if held {
		data, _ := os.ReadFile(path)
		f.Close()
		return nil, &HeldError{StateDir: stateDir, Holder: parse(string(data))}
	}
	// Ours now: say who we are, for the next one that tries.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(fmt.Sprintf("pid %d\nnode %s\n", os.Getpid(), node)), 0)
	}
	return &Lock{f: f}, nil
}

// Release lets the lock go (closing the file drops the flock).
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// parse reads "pid N\nnode NAME\n"; what it cannot read stays zero (a
// holder that has locked but not yet written).
func parse(s string) Holder {
	var h Holder
	for _, line := range strings.Split(s, "\n") {
		k, v, _ := strings.Cut(line, " ")
		switch k {
		case "pid":
			h.PID, _ = strconv.Atoi(v)
		case "node":
			h.Node = v
		}
	}
	return h
}
