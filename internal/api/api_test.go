package api

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/consensus"
	"tandem/internal/events"
	"tandem/internal/node"
)

type fakeBackend struct {
	actor string
	log   string // an audit log to read; none: one takeover event
}

func (f *fakeBackend) Status() node.Status { return node.Status{Cluster: "c", Node: "a"} }
func (f *fakeBackend) Failover(_ context.Context, group, to, actor string) (string, error) {
	f.actor = actor
	switch group {
	case "web":
		return "b", nil
	case "busy":
		return "", fmt.Errorf("%w: nobody", node.ErrConflict)
	case "quorum":
		return "", consensus.ErrNoLeader
	}
	return "", fmt.Errorf("%w: no group %q", node.ErrNotFound, group)
}
func (f *fakeBackend) ForceFailover(_ context.Context, group, to, actor string) ([]string, error) {
	f.actor = actor
	return []string{"volume pg: lost"}, nil
}
func (f *fakeBackend) Standby(_ context.Context, n string, on bool, actor string) error {
	if n != "a" {
		return fmt.Errorf("%w: no node", node.ErrNotFound)
	}
	return nil
}
func (f *fakeBackend) Maintenance(context.Context, string, bool, string) error { return nil }
func (f *fakeBackend) Cleanup(context.Context, string, string) error           { return nil }
func (f *fakeBackend) ScanEvents(fl events.Filter) (events.Result, error) {
	if f.log != "" {
		return events.ScanFile(f.log, fl)
	}
	return events.Result{Events: []events.Event{{Kind: events.Takeover, Group: fl.Group}}}, nil
}

func freeTCP(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestUnixSocketAndErrors(t *testing.T) {
	b := &fakeBackend{}
	s := NewServer(b, "", nil, nil)
	sock := filepath.Join(t.TempDir(), "run", "t.sock")
	if err := s.ServeUnix(sock); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := NewServer(b, "", nil, nil).ServeUnix(sock); err == nil {
		t.Fatal("a second agent took over a live socket")
	}
	c := NewUnixClient(sock)
	ctx := context.Background()
	if st, err := c.Status(ctx); err != nil || st.Cluster != "c" {
		t.Fatalf("status: %+v %v", st, err)
	}
	if to, err := c.Failover(ctx, "web", ""); err != nil || to != "b" {
		t.Fatalf("failover: %q %v", to, err)
	}
	if !strings.Contains(b.actor, "uid") {
		t.Fatalf("actor from a unix socket should name the uid: %q", b.actor)
	}
	for group, code := range map[string]int{"nope": 404, "busy": 409, "quorum": 503} {
		if _, err := c.Failover(ctx, group, ""); !IsCode(err, code) {
			t.Errorf("failover %s: %v, want HTTP %d", group, err, code)
		}
	}
	if err := c.Standby(ctx, "zz", true); !IsCode(err, 404) {
		t.Errorf("standby of an unknown node: %v", err)
	}
	evs, err := c.Events(ctx, url.Values{"group": {"web"}, "since": {"1h"}})
	if err != nil || len(evs) != 1 || evs[0].Group != "web" {
		t.Fatalf("events: %+v %v", evs, err)
	}
	if _, err := c.Events(ctx, url.Values{"since": {"yesterday"}}); !IsCode(err, 400) {
		t.Fatalf("bad since: %v", err)
	}
	if _, err := c.Events(ctx, url.Values{"kind": {"takeover,bogus"}}); !IsCode(err, 400) || !strings.Contains(err.Error(), `unknown kind "bogus"`) {
		t.Fatalf("unknown kind: %v", err)
	}
}

func TestTCPNeedsToken(t *testing.T) {
	s := NewServer(&fakeBackend{}, "s3cret", nil, nil)
	addr := freeTCP(t)
	if err := s.ServeTCP(addr); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := NewTCPClient(addr, "").Status(ctx); !IsCode(err, 401) {
		t.Fatalf("no token: %v", err)
	}
	if _, err := NewTCPClient(addr, "wrong").Status(ctx); !IsCode(err, 401) {
		t.Fatalf("wrong token: %v", err)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil || resp.StatusCode != 401 {
		t.Fatalf("metrics without token: %v %v", resp, err)
	}
	if _, err := NewTCPClient(addr, "s3cret").Status(ctx); err != nil {
		t.Fatalf("with token: %v", err)
	}
	if err := NewServer(&fakeBackend{}, "", nil, nil).ServeTCP(freeTCP(t)); err == nil {
		t.Fatal("TCP without a token was allowed")
	}
	// garbage body
	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/nodes/a/standby", strings.NewReader("{garbage"))
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("garbage body: %v %v", resp.StatusCode, err)
	}
}

// A torn or foreign line in the agent's audit log is reported to an API
// client too, not only to `tandem events --file`: the answer is the events
// read, and headers say which lines were skipped and why.
func TestEventsReportSkippedLines(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	log, err := events.OpenLog(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	log.Publish(events.Event{Kind: events.Takeover, Group: "web"})
	log.Close()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("{\"time\": \"torn\n\x01not json at all\n")
	f.Close()
	log, err = events.OpenLog(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	log.Publish(events.Event{Kind: events.Takeover, Group: "db"})
	log.Close()

	sock := filepath.Join(dir, "api.sock")
	s := NewServer(&fakeBackend{log: path}, "", nil, nil)
	if err := s.ServeUnix(sock); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := NewUnixClient(sock).ScanEvents(ctx, url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != 2 || res.Events[0].Group != "web" || res.Events[1].Group != "db" {
		t.Fatalf("events: %+v, want web's and db's takeovers", res.Events)
	}
	if res.BadCount != 2 || len(res.Bad) != 2 || res.Bad[0].Line != 2 || res.Bad[1].Line != 3 || res.Bad[0].Reason == "" {
		t.Fatalf("skipped lines: %d %+v, want lines 2 and 3 with their reasons", res.BadCount, res.Bad)
	}
}
