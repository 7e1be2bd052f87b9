package resource

import (
	"context"
	"sync"
	"time"
)

// Mem is an in-memory Agent for tests of the manager and of whole in-process
// clusters. Failures are injected by setting the error fields; Hang makes the
// next calls block until their context ends.
type Mem struct {
	mu         sync.Mutex
	running    bool
	StartErr   error
	StopErr    error
	MonitorErr error
	Hang       bool
	HangStart  bool          // only Start hangs
	StopDelay  time.Duration // a stop takes this long (a service shutting down)
	Starts     int
	Stops      int
	// StartEpoch is the epoch (EpochOf) the last start ran under.
	StartEpoch uint64
	// Probes and Monitors count the Monitor calls marked WithProbe and
	// the others.
	Probes, Monitors int
	// OnChange, if set, is called after every successful start or stop with
	// the new running state (tests use it to record a timeline).
	OnChange func(running bool)
}

func (m *Mem) Start(ctx context.Context) error {
	m.mu.Lock()
	hang := m.HangStart
	m.mu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return m.op(ctx, func() error {
		if m.StartErr != nil {
			return m.StartErr
		}
		m.running = true
		m.Starts++
		m.StartEpoch = EpochOf(ctx)
		if m.OnChange != nil {
			m.OnChange(true)
		}
		return nil
	})
}

func (m *Mem) Stop(ctx context.Context) error {
	m.mu.Lock()
	delay := m.StopDelay
	m.mu.Unlock()
	if delay > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
	return m.op(ctx, func() error {
		if m.StopErr != nil {
			return m.StopErr
		}
		m.running = false
		m.Stops++
		if m.OnChange != nil {
			m.OnChange(false)
		}
		return nil
	})
}

func (m *Mem) Monitor(ctx context.Context) error {
	return m.op(ctx, func() error {
		if IsProbe(ctx) {
			m.Probes++
		} else {
			m.Monitors++
		}
		if m.MonitorErr != nil {
			return m.MonitorErr
		}
		if !m.running {
			return ErrNotRunning
		}
		return nil
	})
}

// Running reports the simulated state.
func (m *Mem) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.running
}

// Set changes fields under the lock.
func (m *Mem) Set(f func(m *Mem)) {
	m.mu.Lock()
	f(m)
	m.mu.Unlock()
}

func (m *Mem) op(ctx context.Context, f func() error) error {
	m.mu.Lock()
	hang := m.Hang
	m.mu.Unlock()
	for hang {
		// Hang until the context ends or the test clears Hang (a thaw).
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
		m.mu.Lock()
		hang = m.Hang
		m.mu.Unlock()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return f()
}
