package events

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// newLog opens a log in a temporary directory whose clock reads now.
func newLog(t *testing.T, retention time.Duration, now *time.Time) (*Log, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "events.jsonl")
	l, err := OpenLog(p, retention)
	if err != nil {
		t.Fatal(err)
	}
	l.now = func() time.Time { return *now }
	t.Cleanup(func() { l.Close() })
	return l, p
}

func appendRaw(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func subjects(evs []Event) []string {
	var out []string
	for _, e := range evs {
		if e.Kind != LogCheckpoint {
			out = append(out, e.Subject)
		}
	}
	return out
}

func mustVerify(t *testing.T, path string) *Verification {
	t.Helper()
	v, err := VerifyFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// A line longer than the reader's limit, a line of garbage and a torn last
// line cost only themselves: every other event is read, and the bad lines
// are reported by number.
func TestReadSkipsAndReportsBadLines(t *testing.T) {
	now := t0
	l, p := newLog(t, 0, &now)
	l.Publish(Event{Kind: NodeUp, Subject: "a"})
	appendRaw(t, p, `{"kind":"node_up","message":"`+strings.Repeat("x", 2<<20)+"\"}\n")
	l.Publish(Event{Kind: NodeUp, Subject: "b"})
	appendRaw(t, p, "garbage\n")
	l.Publish(Event{Kind: NodeUp, Subject: "c"})
	appendRaw(t, p, `{"time":"2026-11-24T12:00:00Z","ki`)

	evs, err := ReadFile(p, Filter{})
	if got := subjects(evs); err != nil || fmt.Sprint(got) != "[a b c]" {
		t.Fatalf("events %v, %v; want [a b c]", got, err)
	}
	res, err := ScanFile(p, Filter{})
	if err != nil || len(res.Events) != 3 {
		t.Fatalf("scan: %d events, %v", len(res.Events), err)
	}
	var lines []int
	for _, b := range res.Bad {
		lines = append(lines, b.Line)
	}
	if res.BadCount != 3 || fmt.Sprint(lines) != "[2 4 6]" || res.Lines != 6 {
		t.Errorf("bad lines %+v (count %d) of %d, want lines 2, 4 and 6 of 6", res.Bad, res.BadCount, res.Lines)
	}
	if !strings.Contains(res.Bad[0].Reason, "longer than") {
		t.Errorf("reason for the long line: %q", res.Bad[0].Reason)
	}
	// The bad lines were never entries: the chain links around them.
	if v := mustVerify(t, p); !v.OK() || v.BadCount != 3 || v.Head.Seq != 3 {
		t.Errorf("verify: %+v", v)
	}
}

// Another process (`tandem raid serve` shares the file) died in the middle
// of an append: the next event starts on a line of its own instead of
// being glued to the torn one, and is read.
func TestAppendAfterAnotherWritersTornLine(t *testing.T) {
	now := t0
	l, p := newLog(t, 0, &now)
	l.Publish(Event{Kind: NodeUp, Subject: "before"})
	appendRaw(t, p, `{"time":"2026-11-24T12:00:00Z","kind":"Fail","sub`)
	l.Publish(Event{Kind: NodeDown, Subject: "after"})
	evs, err := ReadFile(p, Filter{})
	if got := subjects(evs); err != nil || fmt.Sprint(got) != "[before after]" {
		t.Fatalf("events %v, %v; want [before after]", got, err)
	}
	res, _ := ScanFile(p, Filter{})
	if res.BadCount != 1 || res.Bad[0].Line != 2 {
		t.Errorf("bad lines %+v, want line 2", res.Bad)
	}
	if v := mustVerify(t, p); !v.OK() {
		t.Errorf("verify: %+v", v.Breaks)
	}
}

// Compaction drops a prefix and says so in a checkpoint that carries the
// chain on; bad lines it drops are counted there, and those it keeps stay.
func TestCompactionKeepsTheChainAndAccountsForBadLines(t *testing.T) {
	now := t0
	l, p := newLog(t, 24*time.Hour, &now)
	for i := range 3 {
		l.Publish(Event{Time: now.Add(time.Duration(i-50) * time.Hour), Kind: NodeDown, Subject: fmt.Sprint("old", i)})
	}
	appendRaw(t, p, "torn in the old part\n")
	l.Publish(Event{Time: now.Add(-47 * time.Hour), Kind: NodeDown, Subject: "old3"})
	l.Publish(Event{Time: now.Add(-time.Hour), Kind: NodeUp, Subject: "new0"})
	appendRaw(t, p, "torn in the new part")
	l.Publish(Event{Kind: NodeUp, Subject: "new1"})
	before := mustVerify(t, p)

	if err := l.Compact(); err != nil {
		t.Fatal(err)
	}
	res, err := ScanFile(p, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if got := subjects(res.Events); fmt.Sprint(got) != "[new0 new1]" {
		t.Fatalf("after compaction %v, want [new0 new1]", got)
	}
	cp := res.Events[0]
	if cp.Kind != LogCheckpoint || cp.Attrs["dropped"] != 4.0 || cp.Attrs["dropped_unreadable"] != 1.0 ||
		cp.Message != "compaction at 2026-11-24T12:00:00Z dropped 4 entries older than 2026-11-23T12:00:00Z, and 1 unreadable line among them" ||
		!cp.Time.Equal(t0.Add(-47*time.Hour)) {
		t.Errorf("checkpoint %+v", cp)
	}
	if res.BadCount != 1 || res.Bad[0].Line != 3 {
		t.Errorf("the torn line after the cut: %+v", res.Bad)
	}
	v := mustVerify(t, p)
	if !v.OK() || v.Checkpoint == nil || v.First != 5 || v.Head != before.Head {
		t.Errorf("after compaction: ok %v, checkpoint %v, first %d, head %v (was %v); breaks %v",
			v.OK(), v.Checkpoint != nil, v.First, v.Head, before.Head, v.Breaks)
	}

	// A second compaction replaces the checkpoint; the chain goes on.
	now = t0.Add(23*time.Hour + 30*time.Minute) // new0 expires
	if err := l.Compact(); err != nil {
		t.Fatal(err)
	}
	l.Publish(Event{Kind: NodeUp, Subject: "new2"})
	evs, _ := ReadFile(p, Filter{})
	if got := subjects(evs); fmt.Sprint(got) != "[new1 new2]" {
		t.Errorf("after the second compaction %v", got)
	}
	if v := mustVerify(t, p); !v.OK() || v.First != 6 || v.Head.Seq != 7 || v.Checkpoint.Attrs["dropped"] != 1.0 {
		t.Errorf("after the second compaction: %+v", v)
	}
}

// Two writers share the file, one compacts it: the entries of both form one
// chain, which verifies.
func TestTwoWritersFormOneChain(t *testing.T) {
	now := t0
	agent, p := newLog(t, 24*time.Hour, &now)
	raid, err := OpenLog(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer raid.Close()
	raid.now = agent.now
	agent.Publish(Event{Time: now.Add(-48 * time.Hour), Kind: NodeDown, Subject: "old"})
	for i := range 5 {
		agent.Publish(Event{Kind: NodeUp, Subject: fmt.Sprint("agent", i)})
		raid.Publish(Event{Kind: RaidFail, Subject: fmt.Sprint("raid", i)})
		if i == 2 {
			if err := agent.Compact(); err != nil {
				t.Fatal(err)
			}
		}
	}
	v := mustVerify(t, p)
	if !v.OK() || v.Head.Seq != 11 || v.Entries != 11 {
		t.Fatalf("verify: ok %v, head %v, %d entries, breaks %v", v.OK(), v.Head, v.Entries, v.Breaks)
	}
}

// Many appends from two writers at once, with compactions among them: one
// chain, every event in it.
func TestConcurrentWritersKeepTheChain(t *testing.T) {
	now := t0
	a, p := newLog(t, time.Hour, &now)
	b, err := OpenLog(p, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.now = a.now
	done := make(chan struct{})
	for w, l := range []*Log{a, b} {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 200 {
				l.Publish(Event{Kind: NodeUp, Subject: fmt.Sprintf("w%d-%d", w, i)})
				if i%50 == 0 {
					l.Compact() // nothing is old: a no-op that takes the lock
				}
			}
		}()
	}
	<-done
	<-done
	v := mustVerify(t, p)
	if !v.OK() || v.Entries != 400 || v.Head.Seq != 400 {
		t.Fatalf("verify: ok %v, %d entries, head %v, breaks %v", v.OK(), v.Entries, v.Head, v.Breaks)
	}
}

// writeChain writes n events with a fresh Log and returns the file's lines.
func writeChain(t *testing.T, n int) (string, []string) {
	t.Helper()
	now := t0
	l, p := newLog(t, 0, &now)
	for i := range n {
		l.Publish(Event{Kind: Takeover, Group: "web", Epoch: uint64(i + 1)})
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, strings.SplitAfter(strings.TrimSuffix(string(data), "\n"), "\n")
}

// Every kind of change to the log is found, at the first entry whose link
// it breaks.
func TestVerifyFindsTampering(t *testing.T) {
	p, lines := writeChain(t, 6)
	head := mustVerify(t, p).Head
	edit := func(f func(ls []string) []string) []byte {
		return []byte(strings.Join(f(append([]string(nil), lines...)), ""))
	}
	for _, tc := range []struct {
		name     string
		data     []byte
		anchor   *Link
		line     int
		contains string
	}{
		{"an entry changed", edit(func(ls []string) []string {
			ls[2] = strings.Replace(ls[2], `"epoch":3`, `"epoch":4`, 1)
			return ls
		}), nil, 4, "the entry before it (line 3, seq 3) hashes to"},
		{"an entry removed", edit(func(ls []string) []string { return append(ls[:2], ls[3:]...) }), nil, 3, "prev is"},
		{"an entry repeated", edit(func(ls []string) []string { return append(ls[:3], ls[2:]...) }), nil, 4, "prev is"},
		{"two entries swapped", edit(func(ls []string) []string {
			ls[1], ls[2] = ls[2], ls[1]
			return ls
		}), nil, 2, "prev is"},
		{"the oldest entries removed", edit(func(ls []string) []string { return ls[2:] }), nil, 1, "starts at seq 3 without a compaction checkpoint"},
		{"an entry unchained", edit(func(ls []string) []string {
			ls[3] = `{"time":"2026-11-24T12:00:00Z","kind":"takeover","group":"web","epoch":4}` + "\n"
			return ls
		}), nil, 4, "without seq and prev after the chain began"},
		{"an entry made unreadable", edit(func(ls []string) []string {
			ls[3] = "x" + ls[3]
			return ls
		}), nil, 5, "(line 3, seq 3)"},
		{"the newest entries removed, with the head kept elsewhere", edit(func(ls []string) []string { return ls[:4] }),
			&head, 4, "the log ends at seq 4, but seq 6 was recorded"},
		{"rewritten with a new chain, with the head kept elsewhere", rechain(t, edit(func(ls []string) []string {
			ls[5] = strings.Replace(ls[5], `"epoch":6`, `"epoch":7`, 1)
			return ls
		})), &head, 6, "reads differently now"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := Verify(bytes.NewReader(tc.data), tc.anchor)
			if err != nil {
				t.Fatal(err)
			}
			if v.OK() || v.Breaks[0].Line != tc.line || !strings.Contains(v.Breaks[0].Reason, tc.contains) {
				t.Fatalf("breaks %v, want the first at line %d, saying %q", v.Breaks, tc.line, tc.contains)
			}
			t.Log(v.Breaks[0])
		})
	}
	if v, _ := Verify(bytes.NewReader(edit(func(ls []string) []string { return ls })), &head); !v.OK() || v.AnchorNote != "" {
		t.Errorf("the untouched log with its head: %+v", v)
	}
}

// rechain recomputes the chain of a log, as someone who rewrites it would.
func rechain(t *testing.T, data []byte) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rewritten.jsonl")
	l, err := OpenLog(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	evs, err := Read(bytes.NewReader(data), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		l.Publish(e)
	}
	out, _ := os.ReadFile(p)
	return out
}

// A log written before the chain existed reads and verifies: its entries
// are reported as unchained, and the chain starts after them.
func TestVerifyOlderLog(t *testing.T) {
	now := t0
	p := filepath.Join(t.TempDir(), "events.jsonl")
	os.WriteFile(p, []byte(`{"time":"2026-11-24T11:00:00Z","kind":"node_up","subject":"a"}`+"\n"+
		`{"time":"2026-11-24T11:00:01Z","kind":"node_up","subject":"b"}`+"\n"), 0o640)
	l, err := OpenLog(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	l.now = func() time.Time { return now }
	l.Publish(Event{Kind: NodeUp, Subject: "c"})
	l.Close()
	v := mustVerify(t, p)
	if !v.OK() || v.Unchained != 2 || v.First != 1 || v.Head.Seq != 1 {
		t.Fatalf("verify: %+v", v)
	}
}

// An event too long for a line is written shortened, not lost, and the
// lines after it still read.
func TestPublishShortensAnOversizedEvent(t *testing.T) {
	now := t0
	l, p := newLog(t, 0, &now)
	l.Publish(Event{Kind: ResFailure, Subject: "web", Message: strings.Repeat("m", 3<<20), Attrs: map[string]any{"out": strings.Repeat("o", 1<<20)}})
	l.Publish(Event{Kind: ResFailure, Subject: "after"})
	res, err := ScanFile(p, Filter{})
	if err != nil || res.BadCount != 0 || len(res.Events) != 2 {
		t.Fatalf("%d events, %d bad lines, %v", len(res.Events), res.BadCount, err)
	}
	if e := res.Events[0]; e.Subject != "web" || len(e.Message) > 5<<10 || !strings.Contains(fmt.Sprint(e.Attrs["truncated"]), "shortened") {
		t.Errorf("the shortened event: %.200v", e)
	}
	if v := mustVerify(t, p); !v.OK() {
		t.Errorf("verify: %v", v.Breaks)
	}
}

func TestParseLink(t *testing.T) {
	h := strings.Repeat("ab", 32)
	if l, err := ParseLink("12:" + h); err != nil || l != (Link{12, h}) || l.String() != "12:"+h {
		t.Errorf("ParseLink: %v, %v", l, err)
	}
	for _, bad := range []string{"", "12", "x:" + h, "12:" + h[:63], "-1:" + h, "99999999999999999999:" + h} {
		if _, err := ParseLink(bad); err == nil {
			t.Errorf("ParseLink(%q) accepted", bad)
		}
	}
}

// The agent and `tandem raid serve` are separate processes appending to one
// file: they serialise on its flock, and their entries form one chain.
func TestTwoProcessesFormOneChain(t *testing.T) {
	now := t0
	l, p := newLog(t, time.Hour, &now)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperAppend$")
	cmd.Env = append(os.Environ(), "TANDEM_EVENTS_APPEND="+p)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		l.Publish(Event{Kind: NodeUp, Subject: fmt.Sprint("parent", i)})
		if i%100 == 0 {
			l.Compact()
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v\n%s", err, out.String())
	}
	v := mustVerify(t, p)
	if !v.OK() || v.Entries != 600 || v.Head.Seq != 600 {
		t.Fatalf("verify: ok %v, %d entries, head %v, breaks %v", v.OK(), v.Entries, v.Head, v.Breaks)
	}
}

// TestHelperAppend is the other process of TestTwoProcessesFormOneChain.
func TestHelperAppend(t *testing.T) {
	p := os.Getenv("TANDEM_EVENTS_APPEND")
	if p == "" {
		t.Skip("run by TestTwoProcessesFormOneChain")
	}
	l, err := OpenLog(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		l.Publish(Event{Kind: RaidFail, Subject: fmt.Sprint("child", i)})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}
