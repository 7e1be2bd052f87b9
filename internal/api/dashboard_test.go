package api

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"path/filepath"
	"strings"
	"testing"
)

// The dashboard's one-time links are minted only over the unix socket, log
// in on the TCP listener once, and the session opens /ui/api/ but not the
// bearer-token API.
func TestDashboardLoginLink(t *testing.T) {
	s := NewServer(&fakeBackend{}, "s3cret", nil, nil)
	sock := filepath.Join(t.TempDir(), "t.sock")
	addr := freeTCP(t)
	if err := s.ServeUnix(sock); err != nil {
		t.Fatal(err)
	}
	if err := s.ServeTCP(addr); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := NewTCPClient(addr, "s3cret").DashboardLoginPath(ctx); !IsCode(err, 404) {
		t.Fatalf("minting over TCP: %v, want 404", err)
	}
	path, err := NewUnixClient(sock).DashboardLoginPath(ctx)
	if err != nil || !strings.HasPrefix(path, "/ui/login?t=") {
		t.Fatalf("minting over the socket: %q %v", path, err)
	}
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	get := func(p string) int {
		resp, err := browser.Get("http://" + addr + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("/ui/api/v1/status"); code != 401 {
		t.Fatalf("/ui/api without a login: %d", code)
	}
	if code := get(path); code != 200 { // redirected to the page
		t.Fatalf("one-time link: %d", code)
	}
	if code := get("/ui/api/v1/status"); code != 200 {
		t.Fatalf("/ui/api with the session: %d", code)
	}
	if code := get("/v1/status"); code != 401 {
		t.Fatalf("the session opened the bearer-token API: %d", code)
	}
	jar2, _ := cookiejar.New(nil)
	browser.Jar = jar2
	if code := get(path); code != 401 {
		t.Fatalf("the one-time link worked twice: %d", code)
	}
}
