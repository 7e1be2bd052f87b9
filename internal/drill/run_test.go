package drill

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/internal/events"
	"tandem/internal/node"
)

// fakeCluster answers like an agent: a failover moves the group (and pins
// it), a cleanup unpins it; every call is recorded.
type fakeCluster struct {
	mu      sync.Mutex
	s       node.Status
	calls   []string
	records []map[string]any
	results []string
}

func (f *fakeCluster) Status(context.Context) (node.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.s
	s.Groups = append([]node.GroupStatus(nil), f.s.Groups...)
	return s, nil
}

func (f *fakeCluster) Failover(_ context.Context, group, to string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "failover "+to)
	g := &f.s.Groups[0]
	g.Holder, g.Pinned = to, to
	g.Epoch++
	return to, nil
}

func (f *fakeCluster) Cleanup(context.Context, string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "cleanup")
	f.s.Groups[0].Pinned = ""
	return nil
}

func (f *fakeCluster) Events(context.Context, url.Values) ([]events.Event, error) { return nil, nil }

func (f *fakeCluster) RecordDrill(_ context.Context, group, result, message string, attrs map[string]any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.records = append(f.records, attrs)
	f.results = append(f.results, result)
	return nil
}

func (f *fakeCluster) log() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, ", ")
}

func opts(o Options) Options {
	o.Group, o.Poll = "db", time.Millisecond
	o.SwitchTimeout, o.VerifyTimeout = 5*time.Second, 300*time.Millisecond
	return o
}

func TestRunPlannedThereAndBack(t *testing.T) {
	f := &fakeCluster{s: healthy()}
	r, err := Run(context.Background(), f, opts(Options{}))
	if err != nil || r.Result != Pass || r.From != "a" || r.To != "b" || r.SwitchMs < 1 || r.SwitchBackMs < 1 || !r.Recorded {
		t.Fatalf("%+v %v", r, err)
	}
	if got := f.log(); got != "failover b, failover a, cleanup" {
		t.Errorf("calls: %s", got)
	}
	if r.Pin != "unpinned, as before the drill" || f.s.Groups[0].Holder != "a" || f.s.Groups[0].Pinned != "" {
		t.Errorf("pin %q, group %+v", r.Pin, f.s.Groups[0])
	}
	if a := f.records[0]; f.results[0] != Pass || a["kind"] != "planned" || a["switch_ms"] == nil || a["to"] != "b" {
		t.Errorf("record %v", a)
	}
}

// A group pinned before the drill keeps a pin: nothing is cleaned up.
func TestRunLeavesAnEarlierPin(t *testing.T) {
	s := healthy()
	s.Groups[0].Pinned = "a"
	f := &fakeCluster{s: s}
	r, _ := Run(context.Background(), f, opts(Options{}))
	if r.Result != Pass || strings.Contains(f.log(), "cleanup") || f.s.Groups[0].Pinned != "a" {
		t.Errorf("%+v; calls %s", r, f.log())
	}
}

// A refused drill changes nothing and is recorded.
func TestRunRefusedChangesNothing(t *testing.T) {
	s := healthy()
	s.Nodes[1].Up = false
	f := &fakeCluster{s: s}
	r, _ := Run(context.Background(), f, opts(Options{}))
	if r.Result != Refused || f.log() != "" || len(f.results) != 1 || f.results[0] != Refused {
		t.Errorf("%+v; calls %q, records %v", r, f.log(), f.results)
	}
	// An unplanned drill through the agent it kills is refused too.
	s = healthy()
	s.Node = "a"
	f = &fakeCluster{s: s}
	r, _ = Run(context.Background(), f, opts(Options{Unplanned: true, Crash: crashFunc(func() error { return nil })}))
	if r.Result != Refused || !strings.Contains(strings.Join(r.Refusals, "\n"), "the one an unplanned drill kills") {
		t.Errorf("unplanned through the active agent: %+v", r)
	}
}

type crashFunc func() error

func (c crashFunc) CrashForDrill(context.Context, string) error { return c() }

// A service that does not answer on the standby fails the drill, and the
// group still goes back where it ran.
func TestRunServiceDownOnTheStandby(t *testing.T) {
	f := &fakeCluster{s: healthy()}
	probe := func(_ context.Context, check string) error {
		if s, _ := f.Status(context.Background()); s.Groups[0].Holder == "b" {
			return errors.New("connection refused")
		}
		return nil
	}
	r, _ := Run(context.Background(), f, opts(Options{Check: "tcp://10.0.0.50:5432", Prober: probe}))
	if r.Result != Fail || !strings.Contains(r.Error, "the service on b: tcp://10.0.0.50:5432 did not answer") || r.VerifyMs != 0 {
		t.Fatalf("%+v", r)
	}
	if got := f.log(); got != "failover b, failover a, cleanup" || f.s.Groups[0].Holder != "a" {
		t.Errorf("calls %s, holder %s", got, f.s.Groups[0].Holder)
	}
}

func TestParseCheck(t *testing.T) {
	for _, ok := range []string{"http://10.0.0.50/health", "https://shop.example/", "tcp://10.0.0.50:5432", "tcp://[fd00::50]:80"} {
		if _, err := ParseCheck(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"10.0.0.50:80", "tcp://10.0.0.50", "ftp://x/", "http://", "tcp://h:1/path"} {
		if _, err := ParseCheck(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
