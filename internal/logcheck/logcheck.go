// Package logcheck holds the tests' view of tandem's logs: a slog handler
// that keeps every record and reports a record that would print a key
// twice, and a reader of the agent's text log lines that finds the same in
// a real agent's output. A key printed twice (node=a node=a, or
// resource=nginx resource=web-nginx) leaves an operator guessing which one
// is meant, and log processors keep only one of them.
//
// Tests of any package may import it; it imports no tandem package.
package logcheck

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Recorder keeps the records of a test's loggers, as text lines, and the
// records that repeat a key.
type Recorder struct {
	mu      sync.Mutex
	lines   []string
	repeats []string
	closed  bool
}

// New returns a logger at level whose records r keeps. Every logger made
// from it (With, WithGroup) reports to the same r. At the end of the test
// it fails tb if a record repeated a key, and prints those records.
func New(tb testing.TB, level slog.Level) (*slog.Logger, *Recorder) {
	r := &Recorder{}
	tb.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.closed = true // records logged after the test are not its own
		for _, l := range r.repeats {
			tb.Errorf("log record repeats a key: %s", l)
		}
	})
	return slog.New(&handler{r: r, level: level}), r
}

// Lines returns the records so far as text lines (slog's text format).
func (r *Recorder) Lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.lines)
}

// Repeats returns the records so far that repeat a key.
func (r *Recorder) Repeats() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.repeats)
}

// handler checks keys as slog would print them: qualified by the groups
// they are in.
type handler struct {
	r      *Recorder
	level  slog.Level
	keys   []string // qualified keys the logger already carries
	attrs  []slog.Attr
	groups []string
}

func (h *handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.keys = slices.Clone(h.keys)
	c.attrs = append(slices.Clone(h.attrs), groupAttrs(h.groups, as)...)
	var rep []string
	for _, k := range qualified(h.groups, as) {
		if slices.Contains(c.keys, k) {
			rep = append(rep, k)
		}
		c.keys = append(c.keys, k)
	}
	if len(rep) > 0 {
		// Reported when the logger is made: every record it logs would
		// repeat them, and it may log none during the test.
		h.r.add("", fmt.Sprintf("%v added by With to a logger that has %v", rep, h.keys))
	}
	return &c
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.groups = append(slices.Clone(h.groups), name)
	return &c
}

func (h *handler) Handle(_ context.Context, rec slog.Record) error {
	var own []slog.Attr
	rec.Attrs(func(a slog.Attr) bool { own = append(own, a); return true })
	seen := slices.Clone(h.keys)
	var rep []string
	for _, k := range qualified(h.groups, own) {
		if slices.Contains(seen, k) {
			rep = append(rep, k)
		}
		seen = append(seen, k)
	}
	var buf bytes.Buffer
	text := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug - 8})
	out := text.WithAttrs(h.attrs)
	rec2 := slog.NewRecord(rec.Time, rec.Level, rec.Message, rec.PC)
	rec2.AddAttrs(groupAttrs(h.groups, own)...)
	if err := out.Handle(context.Background(), rec2); err != nil {
		return err
	}
	line := strings.TrimSuffix(buf.String(), "\n")
	repeat := ""
	if len(rep) > 0 {
		repeat = fmt.Sprintf("%v in %s", rep, line)
	}
	h.r.add(line, repeat)
	return nil
}

func (r *Recorder) add(line, repeat string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	if line != "" {
		r.lines = append(r.lines, line)
	}
	if repeat != "" {
		r.repeats = append(r.repeats, repeat)
	}
}

// groupAttrs nests as in groups, as WithGroup would have.
func groupAttrs(groups []string, as []slog.Attr) []slog.Attr {
	for i := len(groups) - 1; i >= 0; i-- {
		anys := make([]any, len(as))
		for j, a := range as {
			anys[j] = a
		}
		as = []slog.Attr{slog.Group(groups[i], anys...)}
	}
	return as
}

// qualified lists the keys as would print, "g.k" for k in group g.
// Empty attributes are not printed; an empty group key inlines its
// members.
func qualified(groups []string, as []slog.Attr) []string {
	var keys []string
	prefix := strings.Join(groups, ".")
	for _, a := range as {
		a.Value = a.Value.Resolve()
		if a.Equal(slog.Attr{}) {
			continue
		}
		if a.Value.Kind() == slog.KindGroup {
			sub := groups
			if a.Key != "" {
				sub = append(slices.Clone(groups), a.Key)
			}
			keys = append(keys, qualified(sub, a.Value.Group())...)
			continue
		}
		if prefix != "" {
			keys = append(keys, prefix+"."+a.Key)
		} else {
			keys = append(keys, a.Key)
		}
	}
	return keys
}

// RepeatedKeys returns the keys that a line of slog's text format
// (key=value, values with spaces or quotes in Go quotes) carries more than
// once, and an error for a line that is not in that format.
func RepeatedKeys(line string) ([]string, error) {
	var seen, rep []string
	s := strings.TrimSpace(line)
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || strings.ContainsAny(s[:eq], " \"") {
			return nil, fmt.Errorf("logcheck: not key=value at %q", s)
		}
		key := s[:eq]
		s = s[eq+1:]
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return nil, fmt.Errorf("logcheck: %s: %w", key, err)
			}
			s = s[len(q):]
		} else if sp := strings.IndexByte(s, ' '); sp >= 0 {
			s = s[sp:]
		} else {
			s = ""
		}
		if s != "" && s[0] != ' ' {
			return nil, fmt.Errorf("logcheck: %s: no space after the value", key)
		}
		s = strings.TrimLeft(s, " ")
		if slices.Contains(seen, key) && !slices.Contains(rep, key) {
			rep = append(rep, key)
		}
		seen = append(seen, key)
	}
	return rep, nil
}

// Field returns the value of key in a line of slog's text format, unquoted,
// and whether the line has it.
func Field(line, key string) (string, bool) {
	s := strings.TrimSpace(line)
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return "", false
		}
		k := s[:eq]
		s = s[eq+1:]
		var v string
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return "", false
			}
			v, _ = strconv.Unquote(q)
			s = s[len(q):]
		} else if sp := strings.IndexByte(s, ' '); sp >= 0 {
			v, s = s[:sp], s[sp:]
		} else {
			v, s = s, ""
		}
		if k == key {
			return v, true
		}
		s = strings.TrimLeft(s, " ")
	}
	return "", false
}
