package logcheck

import (
	"log/slog"
	"slices"
	"strings"
	"testing"
)

// fakeTB records what a Recorder reports at the end of a test.
type fakeTB struct {
	testing.TB
	errs     []string
	cleanups []func()
}

func (f *fakeTB) Cleanup(fn func())                 { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Errorf(format string, args ...any) { f.errs = append(f.errs, format) }

func TestRepeatedKeysAreReported(t *testing.T) {
	for _, tc := range []struct {
		name string
		log  func(l *slog.Logger)
		want []string // repeated keys, in order; none for a clean record
	}{
		{"with twice", func(l *slog.Logger) { l.With("node", "a").With("node", "a").Info("m") }, []string{"node"}},
		{"with then record", func(l *slog.Logger) { l.With("resource", "nginx").Info("m", "resource", "web-nginx") }, []string{"resource"}},
		{"record twice", func(l *slog.Logger) { l.Info("m", "k", 1, "k", 2) }, []string{"k"}},
		{"group qualifies", func(l *slog.Logger) { l.With("node", "a").WithGroup("raft").Info("m", "node", "b") }, nil},
		{"group attr qualifies", func(l *slog.Logger) { l.With("node", "a").Info("m", slog.Group("raft", "node", "b")) }, nil},
		{"same group twice", func(l *slog.Logger) { l.WithGroup("g").With("k", 1).Info("m", "k", 2) }, []string{"g.k"}},
		{"distinct keys", func(l *slog.Logger) { l.With("node", "a", "group", "web").Info("m", "resource", "r") }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := &fakeTB{}
			l, r := New(tb, slog.LevelDebug)
			tc.log(l)
			reps := r.Repeats()
			if (len(reps) > 0) != (tc.want != nil) {
				t.Fatalf("repeats %q, want keys %v", reps, tc.want)
			}
			for _, k := range tc.want {
				if !strings.Contains(reps[0], k) {
					t.Errorf("repeats %q do not name %s", reps, k)
				}
			}
			line := r.Lines()[0]
			keys, err := RepeatedKeys(line)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(keys, tc.want) {
				t.Errorf("RepeatedKeys(%q) = %v, want %v", line, keys, tc.want)
			}
			for _, f := range tb.cleanups {
				f()
			}
			if (len(tb.errs) > 0) != (tc.want != nil) {
				t.Errorf("test failed %v, want %v", tb.errs, tc.want != nil)
			}
		})
	}
}

func TestTextLines(t *testing.T) {
	line := `time=2025-01-01T00:00:00Z level=WARN msg="a \"quoted\" = msg" node=a err="x y" empty=""`
	if k, err := RepeatedKeys(line); err != nil || k != nil {
		t.Fatalf("RepeatedKeys = %v, %v", k, err)
	}
	for key, want := range map[string]string{"msg": `a "quoted" = msg`, "node": "a", "err": "x y", "empty": ""} {
		if v, ok := Field(line, key); !ok || v != want {
			t.Errorf("Field(%s) = %q, %v; want %q", key, v, ok, want)
		}
	}
	if _, ok := Field(line, "nope"); ok {
		t.Error("Field found a key the line lacks")
	}
	if _, err := RepeatedKeys("not a log line"); err == nil {
		t.Error("RepeatedKeys took a line that is not key=value")
	}
}
