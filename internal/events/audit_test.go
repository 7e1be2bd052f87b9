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
	all, _ = ReadFile(p, Filter{})
	if len(all) != 3 || all[0].Kind != Takeover || all[2].Kind != LinkDown {
		t.Fatalf("after compact: %+v", all)
	}
}
