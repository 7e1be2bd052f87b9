package fence

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/clock"
	"tandem/internal/events"
)

// TestFencerFakeClock: level 1's device hangs, its deadline on the fake
// clock fails it, level 2's two devices confirm.
func TestFencerFakeClock(t *testing.T) {
	clk := clock.NewFake(t0)
	hung, pdu1, pdu2 := &Memory{}, &Memory{}, &Memory{}
	hung.SetMode(MemoryHangs)
	rec := &events.Recorder{}
	f := &Fencer{
		Devices: map[string]Device{"ipmi": hung, "pdu1": pdu1, "pdu2": pdu2},
		Topologies: map[string]Topology{"node2": {Node: "node2", Levels: [][]Step{
			{{Device: "ipmi", Timeout: 5 * time.Second}},
			{{Device: "pdu1", Timeout: 5 * time.Second}, {Device: "pdu2", Timeout: 5 * time.Second}},
		}}},
		Clock: clk, Events: rec, Self: "node1",
	}
	type out struct {
		r   FenceResult
		err error
	}
	done := make(chan out, 1)
	go func() {
		r, err := f.FenceBy(context.Background(), "node2", "node2 unreachable", "operator")
		done <- out{r, err}
	}()
	// Wait for the Fencer's timer on the hung run, then pass its deadline.
	for deadline := time.Now().Add(30 * time.Second); clk.Pending() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the fencer never waited on the hung device")
		}
		time.Sleep(time.Millisecond)
	}
	clk.Advance(5 * time.Second)
	o := <-done
	if o.err != nil || !o.r.Confirmed || o.r.Level != 2 {
		t.Fatalf("result %+v, %v", o.r, o.err)
	}
	if !pdu1.IsOff() || !pdu2.IsOff() {
		t.Fatal("level 2 devices not off")
	}
	if got := o.r.Attempts[0]; got.Device != "ipmi" || got.OK || got.Duration != 5*time.Second {
		t.Fatalf("hung attempt %+v", got)
	}
	if n := len(rec.OfKind(events.FenceAttempt)); n != 5 { // ipmi off, pdu1 off+status, pdu2 off+status
		t.Fatalf("%d attempt events", n)
	}
	req := rec.OfKind(events.FenceRequested)
	if len(req) != 1 || req[0].Actor != "operator" || req[0].Node != "node1" || req[0].Subject != "node2" {
		t.Fatalf("requested %+v", req)
	}
	if len(rec.OfKind(events.FenceSucceeded)) != 1 || len(rec.OfKind(events.FenceFailed)) != 0 {
		t.Fatal("no succeeded event")
	}
}

func TestFencerLyingDeviceFails(t *testing.T) {
	liar := &Memory{}
	liar.SetMode(MemoryLies)
	rec := &events.Recorder{}
	f := &Fencer{
		Devices:    map[string]Device{"liar": liar},
		Topologies: map[string]Topology{"n2": {Node: "n2", Levels: [][]Step{{{Device: "liar", Retries: 2}}}}},
		Clock:      clock.Real{}, Events: rec,
	}
	r, err := f.Fence(context.Background(), "n2", "test")
	if err == nil || r.Confirmed {
		t.Fatalf("a device whose status stays on confirmed: %+v", r)
	}
	if n := len(liar.Calls()); n != 6 { // 3 attempts of off + status
		t.Fatalf("%d calls, want 6", n)
	}
	if len(rec.OfKind(events.FenceFailed)) != 1 {
		t.Fatal("no failed event")
	}
	ok, err := OffConfirmer{f}.Fence(context.Background(), "n2", "test")
	if ok || err == nil {
		t.Fatal("OffConfirmer confirmed")
	}
	if _, err := f.Fence(context.Background(), "nobody", "test"); err == nil {
		t.Fatal("a node without a topology fenced")
	}
}

// TestFencerFenceDummy: level 1 is a real fence_dummy that cannot power
// off (type=fail), level 2 a real one that can; the password file's content
// never reaches an event.
func TestFencerFenceDummy(t *testing.T) {
	path := fenceDummy(t)
	dir := t.TempDir()
	st := filepath.Join(dir, "status")
	os.WriteFile(st, []byte("on"), 0o644)
	rec := &events.Recorder{}
	f := &Fencer{
		Devices: map[string]Device{
			"broken": &Agent{Path: path, Params: map[string]string{"type": "fail", "power_timeout": "1"}, Timeout: 20 * time.Second},
			"good":   &Agent{Path: path, Params: map[string]string{"status_file": st}, Timeout: 20 * time.Second},
		},
		Topologies: map[string]Topology{"node2": {Node: "node2", Levels: [][]Step{
			{{Device: "broken", Timeout: 20 * time.Second}},
			{{Device: "good", Timeout: 20 * time.Second}},
		}}},
		Clock: clock.Real{}, Events: rec,
	}
	r, err := f.Fence(context.Background(), "node2", "test")
	if err != nil || !r.Confirmed || r.Level != 2 {
		t.Fatalf("%+v %v", r, err)
	}
	if b, _ := os.ReadFile(st); strings.TrimSpace(string(b)) != "off" {
		t.Fatalf("status file %q", b)
	}
	if _, err := f.Monitor(context.Background(), "good"); err != nil {
		t.Fatalf("monitor: %v", err)
	}
}
