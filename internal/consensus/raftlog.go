package consensus

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// raftLogger is hclog's interface on top of our slog logger, so raft's
// records are ours: our time and level, raft's message as the message, and
// raft's arguments as attributes in the group "raft" (raft.peer=b), where
// they cannot collide with the node's own keys (raft logs node= too).
// Before, hclog formatted each line itself and we logged that text as the
// message: a second timestamp and level inside msg, every line at WARN.
//
// A record that repeats (the same message about the same peer: raft
// retries an unreachable voter every few hundred milliseconds, a voter
// without quorum starts an election every timeout) is logged the first
// time, then held back and counted (repeats.go).
type raftLogger struct {
	l       *slog.Logger
	name    string
	implied []any
	held    *repeats
}

func newRaftLogger(l *slog.Logger, now func() time.Time) *raftLogger {
	return &raftLogger{l: l.With("component", "raft"), name: "raft", held: newRepeats(repeatWindow, now)}
}

// slogLevel maps hclog's levels one to one; Trace is below Debug.
func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

// repeatKeys are the arguments that tell one repeated record from another:
// the peer it is about, not the error text (which carries addresses and
// times that change).
var repeatKeys = map[string]bool{"peer": true, "server-id": true, "candidate": true, "from": true, "target": true, "id": true}

func (r *raftLogger) Log(level hclog.Level, msg string, args ...any) {
	lvl := slogLevel(level)
	if !r.l.Enabled(context.Background(), lvl) {
		return
	}
	all := append(append([]any(nil), r.implied...), args...)
	if len(all)%2 == 1 {
		all = append(all[:len(all)-1], hclog.MissingKey, all[len(all)-1])
	}
	key := r.name + "\x00" + msg
	attrs := make([]any, 0, len(all)/2)
	for i := 0; i+1 < len(all); i += 2 {
		k := strings.ReplaceAll(fmt.Sprint(all[i]), " ", "_") // "backoff time"
		v := raftValue(all[i+1])
		if repeatKeys[k] {
			key += "\x00" + k + "=" + fmt.Sprint(v)
		}
		attrs = append(attrs, slog.Any(k, v))
	}
	out := []any{slog.Group("raft", attrs...)}
	if r.name != "raft" {
		out = append(out, "raft_logger", r.name)
	}
	r.held.log(r.l, key, lvl, msg, out...)
}

// raftValue makes raft's argument values read as raft means them.
func raftValue(v any) any {
	switch v := v.(type) {
	case hclog.Format:
		if len(v) > 0 {
			if f, ok := v[0].(string); ok {
				return fmt.Sprintf(f, v[1:]...)
			}
		}
		return fmt.Sprint(v...)
	case raft.Server:
		return string(v.ID)
	case *raft.Server:
		if v != nil {
			return string(v.ID)
		}
	case error:
		return v.Error()
	case fmt.Stringer:
		return v.String()
	}
	return v
}

func (r *raftLogger) Trace(msg string, args ...any) { r.Log(hclog.Trace, msg, args...) }
func (r *raftLogger) Debug(msg string, args ...any) { r.Log(hclog.Debug, msg, args...) }
func (r *raftLogger) Info(msg string, args ...any)  { r.Log(hclog.Info, msg, args...) }
func (r *raftLogger) Warn(msg string, args ...any)  { r.Log(hclog.Warn, msg, args...) }
func (r *raftLogger) Error(msg string, args ...any) { r.Log(hclog.Error, msg, args...) }

func (r *raftLogger) enabled(l hclog.Level) bool {
	return r.l.Enabled(context.Background(), slogLevel(l))
}
func (r *raftLogger) IsTrace() bool { return r.enabled(hclog.Trace) }
func (r *raftLogger) IsDebug() bool { return r.enabled(hclog.Debug) }
func (r *raftLogger) IsInfo() bool  { return r.enabled(hclog.Info) }
func (r *raftLogger) IsWarn() bool  { return r.enabled(hclog.Warn) }
func (r *raftLogger) IsError() bool { return r.enabled(hclog.Error) }

func (r *raftLogger) ImpliedArgs() []any { return r.implied }

func (r *raftLogger) With(args ...any) hclog.Logger {
	c := *r
	c.implied = append(append([]any(nil), r.implied...), args...)
	return &c
}

func (r *raftLogger) Name() string { return r.name }

func (r *raftLogger) Named(name string) hclog.Logger {
	c := *r
	c.name = r.name + "." + name
	return &c
}

func (r *raftLogger) ResetNamed(name string) hclog.Logger {
	c := *r
	c.name = name
	return &c
}

// SetLevel is ignored: the level is the agent's (--log-level).
func (r *raftLogger) SetLevel(hclog.Level) {}

func (r *raftLogger) GetLevel() hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn} {
		if r.enabled(l) {
			return l
		}
	}
	return hclog.Error
}

func (r *raftLogger) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return log.New(r.StandardWriter(nil), "", 0)
}

// StandardWriter logs each line written at Info (raft uses it for no
// record of ours; a library that does gets plain lines).
func (r *raftLogger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer { return lineWriter{r} }

type lineWriter struct{ r *raftLogger }

func (w lineWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.r.Info(line)
	}
	return len(p), nil
}
