package fencepolicy

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Memory is the in-memory twin of a Fencer, for tests of the wiring: per
// node, a fence confirms, fails, or hangs until its context ends; every
// call is recorded.
type Memory struct {
	mu    sync.Mutex
	modes map[string]MemoryMode
	calls []string
}

// MemoryMode is how Memory answers a fence of one node.
type MemoryMode int

const (
	MemoryConfirm MemoryMode = iota
	MemoryFail
	MemoryHang
)

// SetMode sets how fences of node are answered (MemoryConfirm by default).
func (f *Memory) SetMode(node string, mode MemoryMode) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.modes == nil {
		f.modes = map[string]MemoryMode{}
	}
	f.modes[node] = mode
}

// Calls returns the nodes fenced so far, in order, with their reasons.
func (f *Memory) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// Fence implements Fencer.
func (f *Memory) Fence(ctx context.Context, node, reason string) (bool, error) {
	f.mu.Lock()
	f.calls = append(f.calls, node+": "+reason)
	mode := f.modes[node]
	f.mu.Unlock()
	switch mode {
	case MemoryFail:
		return false, fmt.Errorf("fencepolicy: memory fencer: %s not verified off", node)
	case MemoryHang:
		<-ctx.Done()
		return false, ctx.Err()
	}
	return true, nil
}

var _ Fencer = (*Memory)(nil)

// OutcomeOf maps a Fencer's answer to the machine's input: confirmed only
// on a verified off; a context that ran out, or an error in whose chain one
// says Timeout() true (as net.Error does), is a timeout; anything else (an
// error, or no error but not verified off) is a failure. An adapter whose
// timeouts are marked otherwise (internal/fence's ErrTimeout) maps them
// itself.
func OutcomeOf(confirmedOff bool, err error) Outcome {
	var te interface{ Timeout() bool }
	switch {
	case err == nil && confirmedOff:
		return Confirmed
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &te) && te.Timeout():
		return TimedOut
	}
	return Failed
}
