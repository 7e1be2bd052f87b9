// Package resource owns the resource agent contract: Agent (start / stop /
// monitor, each bounded by a context deadline), the error classes that tell
// the manager what to do with a failure (soft: restart in place; hard: move
// the group; fatal: stop everywhere), and an in-memory agent for tests of
// other packages. Concrete agents live in sub-packages (vip, exec, ocf). It
// imports only leaf packages.
package resource

import (
	"context"
	"errors"
	"fmt"
)

// Agent manages one resource on this node. Every call must return when ctx
// is done; an agent that cannot (a hung script) is killed by its
// implementation and the call returns an error.
//
// Start and Stop are idempotent: starting a running resource and stopping a
// stopped one succeed. Monitor returns nil when the resource runs healthily,
// an error satisfying IsNotRunning when it is cleanly stopped, and any other
// error when it has failed.
//
// The logger an agent is built with already names the resource (the node
// gives it group= and resource=); an agent adds only keys of its own
// (vip=, agent=, action=), never resource= again.
type Agent interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	Monitor(ctx context.Context) error
}

// Watcher is an Agent that announces when its resource ends on its own (a
// supervised process exits), so the manager looks at once instead of at
// the next monitor. Notices coalesce.
type Watcher interface {
	Watch() <-chan struct{}
}

// Severity tells the manager how to react to a failure (as Pacemaker does
// with OCF exit codes).
type Severity int

const (
	// Soft: recover in place (restart) up to the group's max_restarts.
	Soft Severity = iota
	// Hard: this node cannot run the resource; move the group.
	Hard
	// Fatal: the configuration is broken; stop the group and run it nowhere.
	Fatal
)

func (s Severity) String() string {
	switch s {
	case Soft:
		return "soft"
	case Hard:
		return "hard"
	case Fatal:
		return "fatal"
	}
	return fmt.Sprintf("severity(%d)", int(s))
}

// Error is a classified failure.
type Error struct {
	Severity Severity
	Err      error
}

func (e *Error) Error() string { return fmt.Sprintf("%s failure: %v", e.Severity, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Failf returns a classified error.
func Failf(s Severity, format string, args ...any) error {
	return &Error{Severity: s, Err: fmt.Errorf(format, args...)}
}

type epochKey struct{}

// WithEpoch returns ctx carrying the group's epoch the operation runs
// under. The manager sets it on every operation; an agent whose resource
// is fenced by epochs (a volume promoted at it) reads it with EpochOf.
func WithEpoch(ctx context.Context, epoch uint64) context.Context {
	return context.WithValue(ctx, epochKey{}, epoch)
}

// EpochOf returns the epoch WithEpoch put in ctx, or 0.
func EpochOf(ctx context.Context) uint64 {
	e, _ := ctx.Value(epochKey{}).(uint64)
	return e
}

type probeKey struct{}

// WithProbe marks a Monitor call as a probe: the manager asks whether the
// resource runs at all (at agent start, before it holds any lease), not
// how healthy it is.
func WithProbe(ctx context.Context) context.Context {
	return context.WithValue(ctx, probeKey{}, true)
}

// IsProbe reports whether WithProbe marked ctx.
func IsProbe(ctx context.Context) bool {
	p, _ := ctx.Value(probeKey{}).(bool)
	return p
}

// ErrNotRunning is returned by Monitor for a cleanly stopped resource.
var ErrNotRunning = errors.New("resource: not running")

// IsNotRunning reports whether err means "cleanly stopped".
func IsNotRunning(err error) bool { return errors.Is(err, ErrNotRunning) }

// SeverityOf classifies err; unclassified errors (timeouts, I/O) are soft.
func SeverityOf(err error) Severity {
	var e *Error
	if errors.As(err, &e) {
		return e.Severity
	}
	return Soft
}
