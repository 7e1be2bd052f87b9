package events

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// fuzzSeeds are logs as they are found: written by tandem, torn, glued,
// from before the chain, compacted, tampered with.
func fuzzSeeds(f *testing.F) {
	good := `{"time":"2026-11-24T12:00:00Z","kind":"node_up","subject":"a","seq":1}` + "\n"
	f.Add([]byte(good))
	f.Add([]byte(good + `{"time":"2026-11-24T12:00:00Z","kind":"node_up","subject":"b","seq":2,"prev":"` + lineHash([]byte(good[:len(good)-1])) + `"}` + "\n"))
	f.Add([]byte(`{"time":"2026-11-24T12:00:00Z","kind":"log_checkpoint","seq":7,"hash":"` + lineHash(nil) + `"}` + "\n" +
		`{"time":"2026-11-24T12:00:00Z","kind":"takeover","seq":8,"prev":"` + lineHash(nil) + `"}`))
	f.Add([]byte(`{"time":"2026-11-24T11:00:00Z","kind":"node_down"}` + "\n" + `{"time":"2026-11-24T12:00:00Z","ki`))
	f.Add([]byte(`{"time":"2026-11-24T12:00:00Z","kind":"Fail","sub{"time":"2026-11-24T12:00:01Z","kind":"node_up"}` + "\n"))
	f.Add([]byte("\n\n{}\nnull\n[1]\n" + `{"kind":"x","seq":18446744073709551615,"prev":"p"}` + "\n"))
	f.Add([]byte{})
}

// FuzzScan reads arbitrary logs: reading and verifying never fail on what
// the file holds, and every line is an entry, a blank line or a bad line,
// the same for both.
func FuzzScan(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := Scan(bytes.NewReader(data), Filter{})
		if err != nil {
			t.Fatalf("scan: %v", err)
		}
		v, err := Verify(bytes.NewReader(data), nil)
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		blank := 0
		for _, l := range bytes.SplitAfter(data, []byte("\n")) {
			if len(bytes.TrimSpace(l)) == 0 && len(l) > 0 {
				blank++
			}
		}
		if res.Lines != v.Lines || len(res.Events) != v.Entries || res.BadCount != v.BadCount ||
			len(res.Events)+res.BadCount+blank != res.Lines {
			t.Fatalf("scan: %d lines, %d events, %d bad, %d blank; verify: %d lines, %d entries, %d bad",
				res.Lines, len(res.Events), res.BadCount, blank, v.Lines, v.Entries, v.BadCount)
		}
		if len(res.Bad) > 0 && (res.Bad[0].Line < 1 || res.Bad[0].Line > res.Lines) {
			t.Fatalf("bad line number %d of %d", res.Bad[0].Line, res.Lines)
		}
	})
}

// FuzzAppend appends to an arbitrary file: whatever it held, the new events
// are read back, on lines of their own, and the chain holds from the first
// of them on.
func FuzzAppend(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "events.jsonl")
		if err := os.WriteFile(p, data, 0o640); err != nil {
			t.Fatal(err)
		}
		l, err := OpenLog(p, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			l.Publish(Event{Time: t0, Kind: NodeUp, Subject: fmt.Sprint("fuzz", i)})
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		res, err := ScanFile(p, Filter{})
		if err != nil {
			t.Fatal(err)
		}
		n := len(res.Events)
		if n < 2 || res.Events[n-2].Subject != "fuzz0" || res.Events[n-1].Subject != "fuzz1" {
			t.Fatalf("the appended events are not the last two read: %+v", res.Events)
		}
		v, err := VerifyFile(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		if v.BreakCount > 0 && v.BreakCount == len(v.Breaks) && v.Breaks[len(v.Breaks)-1].Line >= res.Lines-1 {
			t.Fatalf("a break at the appended entries: %v (of %d lines)", v.Breaks, res.Lines)
		}
	})
}
