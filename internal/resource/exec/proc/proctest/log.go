package proctest

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// Logger logs to t.Log at debug level.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Ctx returns a context that ends after d or with the test.
func Ctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// CountingHandler is a slog.Handler that only counts records and the bytes
// of their messages and attribute values.
type CountingHandler struct{ Records, Bytes atomic.Int64 }

func (h *CountingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *CountingHandler) Handle(_ context.Context, r slog.Record) error {
	h.Records.Add(1)
	n := len(r.Message)
	r.Attrs(func(a slog.Attr) bool { n += len(a.Value.String()); return true })
	h.Bytes.Add(int64(n))
	return nil
}
func (h *CountingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *CountingHandler) WithGroup(string) slog.Handler      { return h }
