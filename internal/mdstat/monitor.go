package mdstat

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"tandem/internal/clock"
	"tandem/internal/events"
)

// Monitor polls /proc/mdstat and publishes health events when it changes.
type Monitor struct {
	Path     string        // default /proc/mdstat
	SysBlock string        // default /sys/block, for md/mismatch_cnt
	Interval time.Duration // default 2 s
	Clock    clock.Clock
	Sink     events.Sink
	Node     string
	Logger   *slog.Logger
	// ReadFile is os.ReadFile unless a test replays recorded samples.
	ReadFile func(string) ([]byte, error)

	prev Snapshot
}

func (m *Monitor) defaults() {
	if m.Path == "" {
		m.Path = "/proc/mdstat"
	}
	if m.SysBlock == "" {
		m.SysBlock = "/sys/block"
	}
	if m.Interval <= 0 {
		m.Interval = 2 * time.Second
	}
	if m.Clock == nil {
		m.Clock = clock.Real{}
	}
	if m.Logger == nil {
		m.Logger = slog.New(slog.DiscardHandler)
	}
	if m.ReadFile == nil {
		m.ReadFile = os.ReadFile
	}
	if m.Sink == nil {
		m.Sink = events.SinkFunc(func(events.Event) {})
	}
}

// Poll reads the file once and publishes what changed since the last poll.
func (m *Monitor) Poll() ([]events.Event, error) {
	m.defaults()
	b, err := m.ReadFile(m.Path)
	if err != nil {
		return nil, fmt.Errorf("mdstat: %w", err)
	}
	snap, err := Parse(string(b))
	if err != nil {
		return nil, err
	}
	for _, a := range snap.Arrays {
		if v, err := m.ReadFile(filepath.Join(m.SysBlock, a.Name, "md", "mismatch_cnt")); err == nil {
			a.Mismatch, _ = strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64)
		}
	}
	evs := Diff(m.prev, snap)
	m.prev = snap
	now := m.Clock.Now()
	for i := range evs {
		evs[i].Time, evs[i].Node = now, m.Node
		m.Sink.Publish(evs[i])
	}
	return evs, nil
}

// Run polls until ctx ends. A missing /proc/mdstat (no md module) is logged
// once and polling goes on, so an array assembled later is seen.
func (m *Monitor) Run(ctx context.Context) error {
	m.defaults()
	t := m.Clock.NewTicker(m.Interval)
	defer t.Stop()
	warned := false
	for {
		if _, err := m.Poll(); err != nil && !warned {
			m.Logger.Warn("mdstat monitor", "err", err)
			warned = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C():
		}
	}
}
