package api

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"tandem/internal/consensus"
	"tandem/internal/events"
	"tandem/internal/node"
)

type fakeBackend struct{ actor string }

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
func (f *fakeBackend) Standby(_ context.Context, n string, on bool, actor string) error {
	if n != "a" {
		return fmt.Errorf("%w: no node", node.ErrNotFound)
	}
	return nil
}
func (f *fakeBackend) Maintenance(context.Context, string, bool, string) error { return nil }
func (f *fakeBackend) Cleanup(context.Context, string, string) error           { return nil }
func (f *fakeBackend) ReadEvents(fl events.Filter) ([]events.Event, error) {
	return []events.Event{{Kind: events.Takeover, Group: fl.Group}}, nil
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
