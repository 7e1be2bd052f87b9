package fence

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/internal/clock"
)

// A cloud API stand-in: powers plugs off and on, wants the token.
func TestWebhookDevice(t *testing.T) {
	var mu sync.Mutex
	off := map[string]bool{}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok3n" {
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		var req struct{ Action, Plug string }
		json.NewDecoder(r.Body).Decode(&req)
		mu.Lock()
		defer mu.Unlock()
		switch req.Action {
		case "off":
			off[req.Plug] = true
		case "status":
			p := "on"
			if off[req.Plug] {
				p = "off"
			}
			json.NewEncoder(w).Encode(map[string]string{"power": p})
		case "hang":
		}
	}))
	defer srv.Close()
	tok := filepath.Join(t.TempDir(), "tok")
	os.WriteFile(tok, []byte("tok3n\n"), 0o600)
	w := &Webhook{URL: srv.URL, TokenFile: tok, Client: srv.Client(), Timeout: 10 * time.Second}
	ctx := context.Background()
	if r, err := w.Run(ctx, Status, "n2"); err != nil || r.Power != PowerOn {
		t.Fatalf("status %+v %v", r, err)
	}
	if _, err := w.Run(ctx, Off, "n2"); err != nil {
		t.Fatal(err)
	}
	if r, err := w.Run(ctx, Status, "n2"); err != nil || r.Power != PowerOff {
		t.Fatalf("status after off %+v %v", r, err)
	}
	// Through the Fencer: confirmed.
	f := &Fencer{Devices: map[string]Device{"cloud": w},
		Topologies: map[string]Topology{"n3": {Node: "n3", Levels: [][]Step{{{Device: "cloud", Plug: "n3"}}}}},
		Clock:      clock.Real{}}
	if r, err := f.Fence(ctx, "n3", "test"); err != nil || !r.Confirmed {
		t.Fatalf("fence %+v %v", r, err)
	}
	// A wrong token fails with the status code, never the token.
	os.WriteFile(tok, []byte("wrong-token"), 0o600)
	_, err := w.Run(ctx, Off, "n2")
	if !errors.Is(err, ErrAgentFail) || !strings.Contains(err.Error(), "401") || strings.Contains(err.Error(), "wrong-token") {
		t.Fatalf("wrong token: %v", err)
	}
	// Garbage status.
	bad := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>")) }))
	defer bad.Close()
	if _, err := (&Webhook{URL: bad.URL, Client: bad.Client()}).Run(ctx, Status, ""); !errors.Is(err, ErrOutput) {
		t.Fatalf("garbage status: %v", err)
	}
	// No answer: a timeout.
	release := make(chan struct{})
	hang := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer hang.Close()
	defer close(release)
	if _, err := (&Webhook{URL: hang.URL, Client: hang.Client(), Timeout: 200 * time.Millisecond}).Run(ctx, Off, ""); !IsTimeout(err) {
		t.Fatalf("hang: %v", err)
	}
}
