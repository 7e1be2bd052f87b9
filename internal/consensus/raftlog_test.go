package consensus

import (
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"tandem/internal/logcheck"
)

// fakeNow is a clock for the repeat limiter.
type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeNow) now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeNow) advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

// hclogStamp is what hclog's own formatting put inside our messages: its
// time stamp and its level in brackets.
var hclogStamp = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d|\[(TRACE|DEBUG|INFO|WARN|ERROR)\]`)

// Raft's records come out as ours: our level for raft's, raft's message
// alone as the message, raft's arguments under raft. so they cannot repeat
// the node's keys (raft logs node= itself).
func TestRaftRecordsAreOurs(t *testing.T) {
	log, rec := logcheck.New(t, slog.LevelDebug)
	clk := &fakeNow{t: time.Unix(1e9, 0)}
	rl := newRaftLogger(log.With("node", "a"), clk.now)
	rl.Info("entering candidate state", "node", "Node at 127.0.0.1:7000 [Candidate]", "term", 3)
	rl.Error("failed to appendEntries to", "peer", raft.Server{ID: "b", Address: "b"}, "error", errors.New("connection refused"))
	rl.Warn("failed to contact", "server-id", raft.ServerID("w"), "time", 400*time.Millisecond)
	rl.Debug("odd", "dangling")
	want := []struct{ level, msg, key, value string }{
		{"INFO", "entering candidate state", "raft.node", "Node at 127.0.0.1:7000 [Candidate]"},
		{"ERROR", "failed to appendEntries to", "raft.peer", "b"},
		{"WARN", "failed to contact", "raft.server-id", "w"},
		{"DEBUG", "odd", "raft.EXTRA_VALUE_AT_END", "dangling"},
	}
	lines := rec.Lines()
	if len(lines) != len(want) {
		t.Fatalf("%d records, want %d:\n%s", len(lines), len(want), strings.Join(lines, "\n"))
	}
	for i, w := range want {
		l := lines[i]
		level, _ := logcheck.Field(l, "level")
		msg, _ := logcheck.Field(l, "msg")
		v, _ := logcheck.Field(l, w.key)
		if level != w.level || msg != w.msg || v != w.value {
			t.Errorf("record %d: %s\nwant level=%s msg=%q %s=%q", i, l, w.level, w.msg, w.key, w.value)
		}
		if hclogStamp.MatchString(msg) {
			t.Errorf("record %d carries hclog's own formatting in its message: %s", i, l)
		}
		if c, _ := logcheck.Field(l, "component"); c != "raft" {
			t.Errorf("record %d: no component=raft: %s", i, l)
		}
	}
}

// Raft retries an unreachable voter every few hundred milliseconds: the
// first failure is logged, the next ones about the same peer are held back
// for a minute, and the first after it says how many were.
func TestRaftRepeatsAreSummedUpOnceAMinute(t *testing.T) {
	log, rec := logcheck.New(t, slog.LevelInfo)
	clk := &fakeNow{t: time.Unix(1e9, 0)}
	rl := newRaftLogger(log, clk.now)
	fail := func(peer string) {
		rl.Error("failed to appendEntries to", "peer", raft.Server{ID: raft.ServerID(peer)}, "error", errors.New("dial "+peer+": refused at "+clk.now().String()))
	}
	for i := 0; i < 40; i++ { // every 1.5 s for a minute
		fail("b")
		clk.advance(1500 * time.Millisecond)
	}
	fail("c") // another peer is another story
	rl.Debug("below the level", "peer", "b")
	if got := len(rec.Lines()); got != 2 {
		t.Fatalf("%d records, want the first about b and the first about c:\n%s", got, strings.Join(rec.Lines(), "\n"))
	}
	fail("b")
	lines := rec.Lines()
	if len(lines) != 3 {
		t.Fatalf("no summary after a minute:\n%s", strings.Join(lines, "\n"))
	}
	if n, _ := logcheck.Field(lines[2], "repeated"); n != "39" {
		t.Errorf("summary %s: want repeated=39 (the 39 held back)", lines[2])
	}
	if p, _ := logcheck.Field(lines[2], "raft.peer"); p != "b" {
		t.Errorf("summary %s is not about b", lines[2])
	}
	// Failures that stop are still counted: the flush after the window
	// tells how many were held back since.
	for i := 0; i < 5; i++ {
		clk.advance(time.Second)
		fail("b")
	}
	rl.held.flush()
	if n := len(rec.Lines()); n != 3 {
		t.Fatalf("a flush inside the window logged: %s", rec.Lines()[n-1])
	}
	clk.advance(time.Minute)
	rl.held.flush()
	lines = rec.Lines()
	if n, _ := logcheck.Field(lines[len(lines)-1], "repeated"); len(lines) != 4 || n != "5" {
		t.Fatalf("after the failures stopped and a minute passed, the flush logged %q; want the last one with repeated=5", lines[3:])
	}
	clk.advance(time.Minute)
	rl.held.flush()
	fail("b") // quiet for a minute: news again
	if lines = rec.Lines(); len(lines) != 5 {
		t.Fatalf("a failure after a quiet minute was held back: %q", lines)
	}
	if _, ok := logcheck.Field(lines[4], "repeated"); ok {
		t.Errorf("a failure after a quiet minute carries a count: %s", lines[4])
	}
}
