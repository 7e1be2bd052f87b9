package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// /healthz and /metrics answer as docs/operations.md ("Monitoring") says,
// on the socket without a token and on TCP only with it; and the page says
// each of these answers.
func TestHealthzAndMetricsAsDocumented(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := NewServer(&fakeBackend{}, "s3cret", reg, nil)
	reg.MustRegister(s.Collector())
	sock := filepath.Join(t.TempDir(), "t.sock")
	if err := s.ServeUnix(sock); err != nil {
		t.Fatal(err)
	}
	addr := freeTCP(t)
	if err := s.ServeTCP(addr); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	unix := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	get := func(c *http.Client, method, url, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var compact bytes.Buffer
		if json.Compact(&compact, b) == nil {
			b = compact.Bytes() // the JSON, whatever its indentation
		}
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	tcp := http.DefaultClient
	for _, c := range []struct {
		client       *http.Client
		method, url  string
		token        string
		code         int
		body, inBody string
	}{
		{unix, "GET", "http://tandem/healthz", "", 200, `{"ok":true}`, ""},
		{unix, "HEAD", "http://tandem/healthz", "", 200, "", ""},
		{unix, "POST", "http://tandem/healthz", "", 405, "", ""},
		{unix, "GET", "http://tandem/metrics", "", 200, "", "tandem_api_connections{listener=\"unix\"}"},
		{tcp, "GET", "http://" + addr + "/healthz", "", 401, `{"error":"missing or wrong bearer token"}`, ""},
		{tcp, "GET", "http://" + addr + "/metrics", "wrong", 401, "", ""},
		{tcp, "GET", "http://" + addr + "/healthz", "s3cret", 200, `{"ok":true}`, ""},
		{tcp, "GET", "http://" + addr + "/metrics", "s3cret", 200, "", "tandem_api_connections{listener=\"tcp\"}"},
	} {
		code, body := get(c.client, c.method, c.url, c.token)
		if code != c.code || (c.body != "" && body != c.body) || !strings.Contains(body, c.inBody) {
			t.Errorf("%s %s (token %q): %d %.200s; want %d %s%s", c.method, c.url, c.token, code, body, c.code, c.body, c.inBody)
		}
	}

	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	page := string(doc)
	i := strings.Index(page, "## Monitoring: /metrics and /healthz")
	if i < 0 {
		t.Fatal("docs/operations.md has no section on /metrics and /healthz")
	}
	section := page[i:]
	if j := strings.Index(section[3:], "\n## "); j >= 0 {
		section = section[:j+3]
	}
	for _, want := range []string{"`GET /healthz`", "`GET /metrics`", "`200 OK` | `{\"ok\":true}`",
		"`401 Unauthorized` | `{\"error\":\"missing or wrong bearer token\"}`", "`405 Method Not Allowed`",
		"`503 Service Unavailable` | `{\"error\": \"too many connections to the tandem API; try again later\"}`",
		"`Authorization: Bearer TOKEN`", "`tandem_api_connections`"} {
		if !strings.Contains(section, want) {
			t.Errorf("the Monitoring section of docs/operations.md does not say %s", want)
		}
	}
}
