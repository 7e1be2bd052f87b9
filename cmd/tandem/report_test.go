package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tandem report over a real (small) log: a period with no events is a
// clear report, a period with them counts them and notices the torn line;
// the formats and bad arguments are handled.
func TestReportCommand(t *testing.T) {
	cfg, logPath := stateConfig(t)
	writeLog(t, logPath)
	var rep struct {
		Empty      bool `json:"no_data"`
		EventCount int  `json:"events_in_period"`
		Sections   []struct{ ID, Status, Summary string }
	}
	out, stderr, err := run("report", "-c", cfg, "--since", "2020-01-01", "--until", "2020-02-01", "--format", "json")
	if err != nil {
		t.Fatalf("report of an empty period: %v\n%s", err, stderr)
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || !rep.Empty || rep.EventCount != 0 || len(rep.Sections) != 8 {
		t.Fatalf("empty period: %v %s", err, out)
	}
	out, _, err = run("report", "-c", cfg, "--since", "2h", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	rep.Sections, rep.Empty = nil, false
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Empty || rep.EventCount != 3 {
		t.Fatalf("the last 2 hours: %v %s", err, out)
	}
	if !strings.Contains(out, "1 line is not an event (torn by a crash") {
		t.Errorf("the torn line is not reported:\n%s", out)
	}
	html := filepath.Join(t.TempDir(), "r.html")
	if _, stderr, err := run("report", "-c", cfg, "--quarter", "2026Q4", "-o", html); err != nil {
		t.Fatalf("html: %v %s", err, stderr)
	}
	if b, _ := os.ReadFile(html); !strings.HasPrefix(string(b), "<!DOCTYPE html>") {
		t.Errorf("not an HTML page: %.80s", b)
	}
	for _, bad := range [][]string{
		{"--quarter", "2026Q5"}, {"--since", "1h", "--quarter", "2026Q4"}, {"--until", "2026-01-01"},
		{"--format", "docx"}, {"--format", "pdf"}, {"--since", "soon"},
	} {
		if _, stderr, err := run(append([]string{"report", "-c", cfg}, bad...)...); exitCode(err) != 2 {
			t.Errorf("report %v: exit %d, want 2 (%s)", bad, exitCode(err), stderr)
		}
	}
}
