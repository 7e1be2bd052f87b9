package events

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLogAppendFilterCompact(t *testing.T) {
	p := filepath.Join(t.TempDir(), "events.jsonl")
	l, err := OpenLog(p, 180*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return now }
	l.Publish(Event{Time: now.Add(-200 * 24 * time.Hour), Kind: NodeDown, Subject: "db1"})
	l.Publish(Event{Time: now.Add(-time.Hour), Kind: Takeover, Group: "web", Epoch: 2})
	l.Publish(Event{Kind: NodeUp, Subject: "db1"})
	// A torn line after a crash must not break reading.
	f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"time":"2026-11-24T12:00:00Z","ki`)
	f.Close()

	all, err := ReadFile(p, Filter{})
	if err != nil || len(all) != 3 {
		t.Fatalf("read all: %d events, %v", len(all), err)
	}
	if !all[2].Time.Equal(now) {
		t.Fatalf("zero time not stamped: %v", all[2].Time)
	}
	got, _ := ReadFile(p, Filter{Kinds: []Kind{Takeover}})
	if len(got) != 1 || got[0].Group != "web" {
		t.Fatalf("kind filter: %+v", got)
	}
	if err := l.Compact(); err != nil {
		t.Fatal(err)
	}
	l.Publish(Event{Kind: LinkDown, Subject: "db1/0"})
	l.Close()
	res, _ := ScanFile(p, Filter{})
	all = res.Events
	if len(all) != 4 || all[0].Kind != LogCheckpoint || all[1].Kind != Takeover || all[3].Kind != LinkDown {
		t.Fatalf("after compact: %+v", all)
	}
	if all[0].Message != "compaction at 2026-11-24T12:00:00Z dropped 1 entry older than 2026-05-28T12:00:00Z" || !all[0].Time.Equal(now.Add(-200*24*time.Hour)) {
		t.Errorf("checkpoint says %q", all[0].Message)
	}
	// The torn line was newer than the cut: it stays, reported, and the
	// event after it is on a line of its own.
	if res.BadCount != 1 || res.Bad[0].Line != 4 {
		t.Errorf("bad lines after compact: %+v", res.Bad)
	}
}

// Two writers of one file (the agent and `tandem raid serve`): after one
// compacts it (a rewrite and a rename), the other's events still land in
// the file at the path, not in the one renamed away.
func TestSharedLogSurvivesAnotherWritersCompaction(t *testing.T) {
	p := filepath.Join(t.TempDir(), "events.jsonl")
	agent, err := OpenLog(p, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	raid, err := OpenLog(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer raid.Close()
	now := time.Now()
	agent.Publish(Event{Time: now.Add(-48 * time.Hour), Kind: NodeDown, Subject: "old"})
	raid.Publish(Event{Time: now, Kind: RaidFail, Subject: "before"})
	if err := agent.Compact(); err != nil {
		t.Fatal(err)
	}
	raid.Publish(Event{Time: now, Kind: RaidDegradedArray, Subject: "after"})
	agent.Publish(Event{Time: now, Kind: NodeUp, Subject: "agent"})
	evs, err := ReadFile(p, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		if e.Kind != LogCheckpoint {
			got = append(got, e.Subject)
		}
	}
	if len(got) != 3 || got[0] != "before" || got[1] != "after" || got[2] != "agent" {
		t.Fatalf("events in the file after the compaction: %v, want [before after agent]", got)
	}
	if raid.Err() != nil || agent.Err() != nil {
		t.Fatalf("errors: %v, %v", raid.Err(), agent.Err())
	}
}
