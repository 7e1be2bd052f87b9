package api

import (
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedWithin reads c until the server closes it, and reports whether
// that happened within d (what it sent is returned too).
func closedWithin(c net.Conn, d time.Duration) (bool, string) {
	c.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout()), string(b)
}

func statusFrom(t *testing.T, src, addr, token string) int {
	t.Helper()
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "http://"+addr+"/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("status from %s: %v", src, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	s := NewServer(&fakeBackend{}, "s3cret", nil, nil)
	addr := freeTCP(t)
	if err := s.ServeTCP(addr); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for h, want := range map[string]int{
		"Bearer s3cret": 200, "bearer s3cret": 200, "BEARER s3cret": 200, "bEaReR  s3cret": 200,
		"Bearer wrong": 401, "Basic s3cret": 401, "Bearers3cret": 401, "Bearer ": 401, "s3cret": 401, "": 401,
	} {
		req, _ := http.NewRequest("GET", "http://"+addr+"/v1/status", nil)
		if h != "" {
			req.Header.Set("Authorization", h)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Authorization %q: HTTP %d, want %d", h, resp.StatusCode, want)
		}
	}
}

// Clients that stall (sending nothing, half the headers, half a body, or
// nothing more after an answer) are cut off at the limits' timeouts; a
// client without the token is cut off after its one answer.
func TestStalledClientsAreCutOff(t *testing.T) {
	s := NewServer(&fakeBackend{}, "s3cret", nil, nil)
	l := DefaultLimits()
	l.ReadHeaderTimeout, l.ReadTimeout, l.IdleTimeout = 300*time.Millisecond, 600*time.Millisecond, 400*time.Millisecond
	s.SetLimits(l)
	addr := freeTCP(t)
	if err := s.ServeTCP(addr); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	clients := map[string]string{
		"silent":                 "",
		"half the headers":       "GET /v1/status HTTP/1.1\r\nHost: t\r\n",
		"half a body":            "POST /v1/nodes/a/standby HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer s3cret\r\nContent-Length: 100\r\n\r\n{\"on\":",
		"half a body, no token":  "POST /v1/nodes/a/standby HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{\"on\":",
		"idle after an answer":   "GET /v1/status HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer s3cret\r\n\r\n",
		"no token, keeps asking": "GET /v1/status HTTP/1.1\r\nHost: t\r\n\r\n",
	}
	conns := map[string]net.Conn{}
	for name, send := range clients {
		c := dialFrom(t, "127.0.0.1", addr)
		io.WriteString(c, send)
		conns[name] = c
	}
	for name, c := range conns {
		closed, got := closedWithin(c, 5*time.Second)
		if !closed {
			t.Errorf("%s: still open after 5 s (got %q)", name, got)
		}
		if strings.Contains(name, "no token") && !strings.Contains(got, "401") {
			t.Errorf("%s: answered %q, want 401", name, got)
		}
	}
}

// However many connections one source opens, it holds at most
// MaxPerSource, and all sources together at most MaxConns; the others are
// answered 503 and closed at once, other sources are still served, and a
// closed connection frees its place.
func TestConnectionsAreCappedPerSourceAndInTotal(t *testing.T) {
	s := NewServer(&fakeBackend{}, "s3cret", nil, nil)
	l := DefaultLimits()
	l.MaxConns, l.MaxPerSource = 6, 3
	s.SetLimits(l)
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collector())
	addr := freeTCP(t)
	if err := s.ServeTCP(addr); err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	var flood []net.Conn
	for i := 0; i < 40; i++ {
		flood = append(flood, dialFrom(t, "127.0.0.1", addr))
	}
	held, refused := 0, 0
	for _, c := range flood {
		closed, got := closedWithin(c, 300*time.Millisecond)
		switch {
		case !closed:
			held++
		case strings.HasPrefix(got, "HTTP/1.1 503"):
			refused++
		default:
			t.Errorf("a flood connection was closed with %q", got)
		}
	}
	if held != 3 || refused != 37 {
		t.Fatalf("40 connections from one source: %d held, %d refused; want 3 and 37", held, refused)
	}
	if code := statusFrom(t, "127.0.0.2", addr, "s3cret"); code != 200 {
		t.Fatalf("another source while one floods: HTTP %d", code)
	}
	// a second source fills the total
	for i := 0; i < 3; i++ {
		c := dialFrom(t, "127.0.0.3", addr)
		if closed, got := closedWithin(c, 100*time.Millisecond); closed {
			t.Fatalf("127.0.0.3's connection %d refused below its limit: %q", i, got)
		}
	}
	if got := value(s.metrics.open.WithLabelValues("tcp")); got != 6 {
		t.Fatalf("tandem_api_connections{listener=tcp} = %v, want 6", got)
	}
	c := dialFrom(t, "127.0.0.4", addr)
	if closed, got := closedWithin(c, 2*time.Second); !closed || !strings.Contains(got, "503") || !strings.Contains(got, "too many connections") {
		t.Fatalf("a third source over the total: closed %v, %q", closed, got)
	}
	for _, c := range flood {
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for statusFrom(t, "127.0.0.4", addr, "s3cret") != 200 {
		if time.Now().After(deadline) {
			t.Fatal("closed connections did not free their places")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := value(s.metrics.refused.WithLabelValues("tcp", "source")); n != 37 {
		t.Errorf("refused at the source limit: %v, want 37", n)
	}
}

// The unix socket is capped per uid the same way.
func TestUnixSocketIsCapped(t *testing.T) {
	s := NewServer(&fakeBackend{}, "", nil, nil)
	l := DefaultLimits()
	l.MaxConns, l.MaxPerSource = 8, 2
	s.SetLimits(l)
	sock := filepath.Join(t.TempDir(), "t.sock")
	if err := s.ServeUnix(sock); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	held := 0
	for i := 0; i < 10; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if closed, _ := closedWithin(c, 200*time.Millisecond); !closed {
			held++
		}
	}
	if held != 2 {
		t.Fatalf("one uid holds %d connections, want 2", held)
	}
}

func TestLimitsForTheDescriptorLimit(t *testing.T) {
	if LimitsFor(0) != DefaultLimits() || LimitsFor(1<<20) != DefaultLimits() {
		t.Fatal("a large or unknown limit should keep the defaults")
	}
	for _, nofile := range []uint64{16, 64, 96, 128, 256, 512, 1024, 4096} {
		l := LimitsFor(nofile)
		if l.MaxConns < 2 || l.MaxPerSource < 1 || l.MaxPerSource > l.MaxConns {
			t.Errorf("nofile %d: %+v", nofile, l)
		}
		if nofile >= 64 && uint64(l.Descriptors(2)) > nofile/4+2 {
			t.Errorf("nofile %d: the API may hold %d descriptors, more than a quarter", nofile, l.Descriptors(2))
		}
	}
	if l := LimitsFor(128); l.MaxConns != 16 || l.MaxPerSource != 8 {
		t.Errorf("nofile 128: %+v", l)
	}
}

func value(m prometheus.Metric) float64 {
	var d dto.Metric
	m.Write(&d)
	if d.Gauge != nil {
		return d.Gauge.GetValue()
	}
	return d.Counter.GetValue()
}
