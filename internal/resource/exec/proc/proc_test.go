package proc

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"tandem/internal/clock"
)

type line struct {
	s         string
	truncated bool
}

func collect(chunks ...string) []line {
	var got []line
	l := NewLines(func(s string, tr bool) { got = append(got, line{s, tr}) })
	for _, c := range chunks {
		l.Write([]byte(c))
	}
	l.Close()
	return got
}

func TestLinesSplitsAndCaps(t *testing.T) {
	long := strings.Repeat("x", MaxLine+10)
	tests := []struct {
		name   string
		chunks []string
		want   []line
	}{
		{"one line", []string{"hello\n"}, []line{{"hello", false}}},
		{"split across writes", []string{"he", "llo\nwor", "ld\n"}, []line{{"hello", false}, {"world", false}}},
		{"unterminated tail flushed on close", []string{"a\nb"}, []line{{"a", false}, {"b", false}}},
		{"empty lines kept", []string{"\n\n"}, []line{{"", false}, {"", false}}},
		{"crlf", []string{"dos\r\n"}, []line{{"dos", false}}},
		{"over-long line truncated once", []string{long + "\nnext\n"}, []line{{long[:MaxLine], true}, {"next", false}}},
		{"over-long line across writes", []string{long[:100], long[100:], "tail\nok\n"}, []line{{long[:MaxLine], true}, {"ok", false}}},
		{"exactly max", []string{long[:MaxLine] + "\n"}, []line{{long[:MaxLine], false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := collect(tt.chunks...); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCleanMakesOutputSafeToLog(t *testing.T) {
	got := Clean([]byte("ok\x1b[31mred\x00\xff\tend\r"))
	if want := "ok\uFFFD[31mred\uFFFD\uFFFD end"; got != want {
		t.Errorf("Clean = %q, want %q", got, want)
	}
}

func TestBucket(t *testing.T) {
	b := Bucket{Burst: 2, Rate: 1}
	t0 := time.Unix(100, 0)
	allowed := func(at time.Duration) bool { return b.Allow(t0.Add(at)) }
	steps := []struct {
		at   time.Duration
		want bool
	}{{0, true}, {0, true}, {0, false}, {500 * time.Millisecond, false}, {time.Second, true}, {time.Second, false}, {10 * time.Second, true}, {10 * time.Second, true}, {10 * time.Second, false}}
	for i, s := range steps {
		if got := allowed(s.at); got != s.want {
			t.Fatalf("step %d at %v: Allow = %v, want %v", i, s.at, got, s.want)
		}
	}
}

func TestLogWriterRateLimitsAndReportsSuppressed(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	clk := clock.NewFake(time.Unix(0, 0))
	w := NewLogWriter(logger, clk, "stream", "stdout")
	var teed int
	w.Tee(func(string) { teed++ })
	for range logBurst + 30 {
		w.Write([]byte("spam\n"))
	}
	clk.Advance(time.Second)
	w.Write([]byte("after\n"))
	w.Close()
	out := buf.String()
	if n := strings.Count(out, "line=spam"); n != logBurst {
		t.Errorf("logged %d spam lines, want the burst %d", n, logBurst)
	}
	if !strings.Contains(out, "lines=30") || !strings.Contains(out, "line=after") {
		t.Errorf("want suppressed count 30 and the later line, got:\n%s", out[len(out)-300:])
	}
	if teed != logBurst+31 {
		t.Errorf("tee saw %d lines, want every line %d", teed, logBurst+31)
	}
}

func TestEnvIsMinimalAndSorted(t *testing.T) {
	t.Setenv("TANDEM_SECRET", "leak")
	got := Env(map[string]string{"PATH": "/opt/bin", "A": "1"})
	want := []string{"A=1", "HOME=/", "LANG=C.UTF-8", "PATH=/opt/bin"}
	if !slices.Equal(got, want) {
		t.Errorf("Env = %q, want %q", got, want)
	}
}

func TestCheckEnvName(t *testing.T) {
	for name, ok := range map[string]bool{"state": true, "_x9": true, "": false, "9x": false, "a-b": false, "a=b": false} {
		if err := CheckEnvName(name); (err == nil) != ok {
			t.Errorf("CheckEnvName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestLookPathUsesChildPath(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "tool")
	os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "data"), nil, 0o644)
	if got, err := LookPath("tool", []string{"PATH=/nonexistent:" + dir}); err != nil || got != exe {
		t.Errorf("LookPath = %q, %v; want %q", got, err, exe)
	}
	if _, err := LookPath("data", []string{"PATH=" + dir}); err == nil {
		t.Error("a non-executable file was accepted")
	}
	if _, err := LookPath("sh", []string{"PATH=" + dir}); err == nil {
		t.Error("the agent's own PATH was searched")
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{"TERM": syscall.SIGTERM, "SIGINT": syscall.SIGINT, "quit": syscall.SIGQUIT, "9": syscall.SIGKILL} {
		if got, err := ParseSignal(in); err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "BOGUS", "999"} {
		if _, err := ParseSignal(in); err == nil {
			t.Errorf("ParseSignal(%q) accepted", in)
		}
	}
}

// FuzzSplitLines drives the splitter in-process with a line limit of 1 to
// 16 bytes, so that short inputs reach truncation, a line cut across
// writes and an over-long line spanning several writes, and compares it
// with a dumb reference: bytes.Split, a trailing empty piece dropped, each
// line cut to the limit and marked truncated when it was longer. Every
// line, once cleaned, is valid UTF-8 without control characters.
// TestLinesFromAChild covers the same with real process output.
func FuzzSplitLines(f *testing.F) {
	f.Add([]byte("a\nbb\n\nccc"), uint8(2), uint8(3))
	f.Add([]byte("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\nyy\nzzzzzzzzzzzzzzzzzz"), uint8(6), uint8(7))
	f.Add([]byte("12345678\n123456789\n"), uint8(0), uint8(7))
	f.Add([]byte("dos\r\n\x1b[31mred\xff\tend"), uint8(31), uint8(15))
	f.Fuzz(func(t *testing.T, in []byte, step, limit uint8) {
		s := splitter{max: int(limit%16) + 1}
		var got []line
		emit := func(b []byte, truncated bool) { got = append(got, line{string(b), truncated}) }
		n := int(step%32) + 1
		for i := 0; i < len(in); i += n {
			s.feed(in[i:min(i+n, len(in))], emit)
		}
		s.end(emit)

		var want []line
		parts := bytes.Split(in, []byte("\n"))
		if len(parts[len(parts)-1]) == 0 {
			parts = parts[:len(parts)-1]
		}
		for _, p := range parts {
			if len(p) > s.max {
				want = append(want, line{string(p[:s.max]), true})
			} else {
				want = append(want, line{string(p), false})
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("max %d, writes of %d: got %#v, want %#v", s.max, n, got, want)
		}
		for _, l := range got {
			c := Clean([]byte(l.s))
			if !utf8.ValidString(c) || strings.ContainsFunc(c, unicode.IsControl) || len(c) > 3*len(l.s) {
				t.Fatalf("Clean(%q) = %q", l.s, c)
			}
		}
	})
}
