package proc

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"tandem/internal/clock"
)

// Bucket is a token bucket: up to Burst events at once, refilled at Rate
// per second. It does no I/O; the caller passes the time.
type Bucket struct {
	Burst float64
	Rate  float64

	tokens float64
	last   time.Time
}

// Allow takes a token if one is available at now.
func (b *Bucket) Allow(now time.Time) bool {
	if b.last.IsZero() {
		b.tokens = b.Burst
	} else if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(b.Burst, b.tokens+dt*b.Rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Output rate limits: enough for a service's start-up banner and a burst
// of errors, small enough that a child spewing lines cannot flood the
// node's log.
const (
	logBurst = 200
	logRate  = 50 // lines per second after the burst
)

// LogWriter is an io.Writer that logs a child's output line by line at
// Info (or the level Level gives each line) with the given attributes,
// rate limited; suppressed lines are counted and reported as one warning.
type LogWriter struct {
	*Lines
	logger *slog.Logger
	clock  clock.Clock

	mu         sync.Mutex
	bucket     Bucket
	suppressed int
	tee        func(line string)
	level      func(line string) slog.Level
}

// NewLogWriter returns a writer logging to logger with attrs (e.g.
// "stream", "stderr"). Close it after the child's pipe is drained.
func NewLogWriter(logger *slog.Logger, clk clock.Clock, attrs ...any) *LogWriter {
	w := &LogWriter{
		logger: logger.With(attrs...),
		clock:  clk,
		bucket: Bucket{Burst: logBurst, Rate: logRate},
	}
	w.Lines = NewLines(w.emit)
	return w
}

// Tee makes every line (also suppressed ones) go to f as well, e.g. to
// find an OCF exit reason. Call before the first Write.
func (w *LogWriter) Tee(f func(line string)) { w.tee = f }

// Level makes each line logged at the level f gives it instead of Info.
// Lines below the logger's level are dropped before the rate limit, so
// they neither use it up nor count as suppressed. Call before the first
// Write.
func (w *LogWriter) Level(f func(line string) slog.Level) { w.level = f }

func (w *LogWriter) emit(line string, truncated bool) {
	if w.tee != nil {
		w.tee(line)
	}
	if strings.TrimSpace(line) == "" {
		return // blank lines carry nothing worth a log record
	}
	level := slog.LevelInfo
	if w.level != nil {
		level = w.level(line)
	}
	if !w.logger.Enabled(context.Background(), level) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.bucket.Allow(w.clock.Now()) {
		w.suppressed++
		return
	}
	w.reportSuppressed()
	if truncated {
		w.logger.Log(context.Background(), level, "output", "line", line, "truncated", true)
		return
	}
	w.logger.Log(context.Background(), level, "output", "line", line)
}

func (w *LogWriter) reportSuppressed() {
	if w.suppressed > 0 {
		w.logger.LogAttrs(context.Background(), slog.LevelWarn, "output lines suppressed (rate limit)",
			slog.Int("lines", w.suppressed))
		w.suppressed = 0
	}
}

// Close logs a final unterminated line and the count of suppressed lines.
func (w *LogWriter) Close() error {
	w.Lines.Close()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reportSuppressed()
	return nil
}
