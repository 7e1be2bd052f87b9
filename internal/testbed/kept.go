package testbed

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"tandem/internal/events"
	"tandem/internal/probe"
)

// ReadKeptRun reads what a kept work directory holds — every voter's audit
// log, the fault log (faults.json) and the client timelines
// (probe-<group>.jsonl) — into an AuditInput, so the checks can be run
// again on a failed run (after a checker fix, say). End is the last
// record's time; lease and slack are the run's.
func ReadKeptRun(dir string, lease, slack time.Duration) (AuditInput, error) {
	in := AuditInput{Logs: map[string][]events.Event{}, Answers: map[string]probe.Timeline{}, Lease: lease, Slack: slack}
	later := func(t time.Time) {
		if t.After(in.End) {
			in.End = t
		}
	}
	for _, h := range Voters {
		evs, err := events.ReadFile(filepath.Join(dir, h, "events.jsonl"), events.Filter{})
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return in, fmt.Errorf("testbed: %s: %w", h, err)
		}
		in.Logs[h] = evs
		for _, e := range evs {
			later(e.Time)
		}
	}
	js, err := os.ReadFile(filepath.Join(dir, "faults.json"))
	if err != nil {
		return in, fmt.Errorf("testbed: %w", err)
	}
	if err := json.Unmarshal(js, &in.Faults); err != nil {
		return in, fmt.Errorf("testbed: faults.json: %w", err)
	}
	probes, _ := filepath.Glob(filepath.Join(dir, "probe-*.jsonl"))
	for _, p := range probes {
		group := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "probe-"), ".jsonl")
		tl, err := readTimeline(p)
		if err != nil {
			return in, err
		}
		for _, s := range tl.Samples {
			later(s.Done)
		}
		in.Answers[group] = tl
	}
	return in, nil
}

func readTimeline(path string) (probe.Timeline, error) {
	var tl probe.Timeline
	f, err := os.Open(path)
	if err != nil {
		return tl, fmt.Errorf("testbed: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec probe.Record
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue // a line cut short by the prober's end
		}
		if rec.HTTP != nil {
			tl.Samples = append(tl.Samples, *rec.HTTP)
		}
		if rec.ARP != nil {
			tl.ARPs = append(tl.ARPs, *rec.ARP)
		}
	}
	return tl, sc.Err()
}
