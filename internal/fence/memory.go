package fence

import (
	"context"
	"errors"
	"sync"
)

// Memory is the in-memory twin of a Device, for tests of the wiring here
// and elsewhere: it keeps a power state, answers as the FenceAgentAPI
// would, and can be told to fail, hang or lie; every call is recorded.
type Memory struct {
	mu    sync.Mutex
	off   bool
	mode  MemoryMode
	calls []Action
}

// MemoryMode is how a Memory device behaves.
type MemoryMode int

const (
	MemoryWorks MemoryMode = iota
	MemoryFails            // every action exits non-zero
	MemoryHangs            // every action waits until its context ends
	MemoryLies             // off succeeds but the power stays on
)

// SetMode sets the device's behaviour.
func (d *Memory) SetMode(m MemoryMode) { d.mu.Lock(); d.mode = m; d.mu.Unlock() }

// Calls returns the actions run so far.
func (d *Memory) Calls() []Action {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Action(nil), d.calls...)
}

// IsOff reports the simulated power.
func (d *Memory) IsOff() bool { d.mu.Lock(); defer d.mu.Unlock(); return d.off }

// Run implements Device.
func (d *Memory) Run(ctx context.Context, a Action, plug string) (Reply, error) {
	d.mu.Lock()
	d.calls = append(d.calls, a)
	mode := d.mode
	d.mu.Unlock()
	switch mode {
	case MemoryFails:
		return Reply{Action: a}, ErrAgentFail
	case MemoryHangs:
		<-ctx.Done()
		return Reply{Action: a}, errors.Join(ErrTimeout, ctx.Err())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	rep := Reply{Action: a}
	switch a {
	case Off:
		d.off = mode != MemoryLies
	case On, Reboot:
		d.off = false
	case Status:
		rep.Power = PowerOn
		if d.off {
			rep.Power = PowerOff
		}
	}
	return rep, nil
}

var _ Device = (*Memory)(nil)
var _ Device = (*Agent)(nil)
