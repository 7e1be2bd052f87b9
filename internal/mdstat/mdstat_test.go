package mdstat

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/clock"
	"tandem/internal/events"
)

func TestParseRecordedSample(t *testing.T) {
	b, err := os.ReadFile("testdata/02-failed.txt")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Parse(string(b))
	if err != nil {
		t.Fatal(err)
	}
	md1 := s.Arrays["md1"]
	if md1 == nil || md1.Level != "raid5" || md1.Raid != 4 || md1.InSync != 3 || md1.Map != "UU_U" || !md1.Degraded() {
		t.Fatalf("md1: %+v", md1)
	}
	if len(md1.Devices) != 5 || !md1.Devices[2].Faulty || md1.Devices[2].Name != "sdc1" || md1.Devices[0].Role != 4 {
		t.Fatalf("md1 devices: %+v", md1.Devices)
	}
	if md1.Sync != "recovery" || md1.Percent != 0.3 || md1.Speed != "3328K/sec" || md1.Finish != "5.2min" {
		t.Fatalf("md1 sync: %+v", md1)
	}
	if md0 := s.Arrays["md0"]; md0.Level != "raid1" || md0.Degraded() || md0.Sync != "" {
		t.Fatalf("md0: %+v", md0)
	}
	b, _ = os.ReadFile("testdata/05-checked.txt")
	s, err = Parse(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if a := s.Arrays["md127"]; a == nil || a.Active || len(a.Devices) != 1 || !a.Devices[0].Spare {
		t.Fatalf("inactive md127: %+v", a)
	}
}

func TestParseRejectsGarbage(t *testing.T) {
	if _, err := Parse("md0 : what is this\n"); err == nil {
		t.Fatal("want error")
	}
}

// Replays a failure, a rebuild onto the spare, and a check that found
// mismatches, as the monitor would see them. Within one poll, events come in
// array name order.
func TestMonitorReplaysRecordedSamples(t *testing.T) {
	samples, _ := filepath.Glob("testdata/0*.txt")
	step := 0
	rec := &events.Recorder{}
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	m := &Monitor{Clock: clk, Sink: rec, Node: "db1", ReadFile: func(p string) ([]byte, error) {
		if strings.HasSuffix(p, "md0/md/mismatch_cnt") && step == 4 {
			return []byte("128\n"), nil
		}
		if p != "/proc/mdstat" {
			return nil, os.ErrNotExist
		}
		return os.ReadFile(samples[step])
	}}
	var got []string
	for step = range samples {
		evs, err := m.Poll()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.Node != "db1" || e.Time.IsZero() {
				t.Fatalf("event without node or time: %+v", e)
			}
			got = append(got, fmt.Sprintf("%d:%s %s", step, e.Kind, e.Subject))
		}
	}
	want := []string{
		"1:Fail /dev/md1", "1:DegradedArray /dev/md1", "1:RebuildStarted /dev/md1",
		"2:RebuildProgress /dev/md1",
		"3:RebuildStarted /dev/md0", "3:RebuildFinished /dev/md1", "3:SpareActive /dev/md1",
		"4:RebuildFinished /dev/md0", "4:MismatchesFound /dev/md0",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(rec.Events()) != len(want) {
		t.Fatalf("recorder has %d events", len(rec.Events()))
	}
}
