package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/fence"
	"tandem/internal/node"
)

// fencingBackend answers a fence by hand per target: b confirms, c fails
// after an attempt, slow outlasts the request, x has no device.
type fencingBackend struct{ fakeBackend }

func (f *fencingBackend) FenceNode(ctx context.Context, target, actor string) (fence.FenceResult, error) {
	f.actor = actor
	switch target {
	case "b":
		return fence.FenceResult{Node: "b", Confirmed: true, Level: 1, Attempts: []fence.Attempt{{Level: 1, Device: "d", Action: fence.Off, OK: true}}}, nil
	case "c":
		return fence.FenceResult{Node: "c", Attempts: []fence.Attempt{{Level: 1, Device: "d", Action: fence.Off, Err: "exited 1"}}}, errors.New("fence: c not confirmed off")
	case "slow":
		<-ctx.Done()
		return fence.FenceResult{}, node.ErrFenceUnderWay
	}
	return fence.FenceResult{}, fmt.Errorf("%w: no fence device fences %s", node.ErrNotFound, target)
}

func TestFenceByHand(t *testing.T) {
	b := &fencingBackend{}
	s := NewServer(b, "", nil, nil)
	sock := filepath.Join(t.TempDir(), "t.sock")
	if err := s.ServeUnix(sock); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := NewUnixClient(sock)
	ctx := context.Background()
	r, err := c.Fence(ctx, "b")
	if err != nil || !r.Result.Confirmed || len(r.Result.Attempts) != 1 || r.Error != "" {
		t.Fatalf("fence b: %+v %v", r, err)
	}
	if !strings.Contains(b.actor, "uid") {
		t.Errorf("actor %q", b.actor)
	}
	if r, err := c.Fence(ctx, "c"); err != nil || r.Result.Confirmed || r.Error == "" || len(r.Result.Attempts) != 1 {
		t.Fatalf("a failed fence is a reply with its attempts: %+v %v", r, err)
	}
	if _, err := c.Fence(ctx, "x"); !IsCode(err, 404) {
		t.Fatalf("no device: %v", err)
	}
	// Without yes, nothing is fenced.
	var out map[string]any
	if err := c.do(ctx, "POST", "/v1/nodes/b/fence", map[string]bool{"yes": false}, &out); !IsCode(err, http.StatusBadRequest) {
		t.Fatalf("without yes: %v", err)
	}
}

func TestFenceByHandOutlastingTheRequest(t *testing.T) {
	defer func(d time.Duration) { fenceWait = d }(fenceWait)
	fenceWait = 50 * time.Millisecond
	s := NewServer(&fencingBackend{}, "", nil, nil)
	sock := filepath.Join(t.TempDir(), "t.sock")
	if err := s.ServeUnix(sock); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := NewUnixClient(sock).Fence(context.Background(), "slow")
	if err != nil || !r.UnderWay || !strings.Contains(r.Message, "audit log") {
		t.Fatalf("%+v %v", r, err)
	}
}
