package notify

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"tandem/internal/config"
	"tandem/internal/events"
)

func TestQueueDropsTheOldest(t *testing.T) {
	q := newQueue(3)
	msg := func(i int) Message { return Message{Event: events.Event{Subject: strconv.Itoa(i)}} }
	drops := 0
	for i := range 10 {
		if q.push(msg(i)) {
			drops++
		}
		if i == 4 { // interleave: one out, the ring wraps
			if m, _ := q.pop(); m.Event.Subject != "2" {
				t.Fatalf("pop after 5 pushes into 3: %q", m.Event.Subject)
			}
		}
	}
	if drops != 6 || q.len() != 3 {
		t.Fatalf("drops %d, len %d", drops, q.len())
	}
	for _, want := range []string{"7", "8", "9"} {
		if m, ok := q.pop(); !ok || m.Event.Subject != want {
			t.Fatalf("pop %q %v, want %s", m.Event.Subject, ok, want)
		}
	}
	if _, ok := q.pop(); ok {
		t.Fatal("pop of an empty queue")
	}
}

func TestBackoffDoublesUpToAMinute(t *testing.T) {
	for attempt, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second} {
		if got := Backoff(time.Second, attempt); got != want {
			t.Errorf("attempt %d: %s, want %s", attempt, got, want)
		}
	}
	if got := Backoff(time.Second, 40); got != MaxBackoff {
		t.Errorf("attempt 40: %s", got)
	}
}

// cfgWith is a notify section with short timings for tests.
func cfgWith(kinds ...string) config.Notify {
	c := config.DefaultNotify()
	c.Kinds = kinds
	c.Timeout = config.Duration(500 * time.Millisecond)
	c.Backoff = config.Duration(10 * time.Millisecond)
	c.Retries = 2
	return c
}

// waitFor polls cond until it holds (a generous bound: the machine may be
// loaded; nothing here measures time).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hook.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func count(c *prometheus.CounterVec, labels ...string) float64 {
	var m dto.Metric
	c.WithLabelValues(labels...).Write(&m)
	return m.GetCounter().GetValue()
}

var takeover = events.Event{Time: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC), Kind: events.Takeover, Node: "db2",
	Subject: "shop-db", Group: "shop-db", Epoch: 7, Message: "took over from db1", Attrs: map[string]any{"detect_ms": 181}}

// A real shell script gets the event as JSON on stdin and in TANDEM_*;
// kinds not chosen are not sent.
func TestExecHookGetsTheEvent(t *testing.T) {
	out := filepath.Join(t.TempDir(), "got")
	hook := script(t, `cat > "$OUT.json"; env | grep ^TANDEM_ | sort > "$OUT.env"; mv "$OUT.json" "$OUT"`)
	t.Setenv("OUT", out)
	c := cfgWith("takeover")
	c.Exec = &config.NotifyExec{Command: []string{hook}}
	n, err := New(c, "shop", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(0)
	n.Publish(events.Event{Kind: events.LinkDown, Subject: "db1/0"}) // not chosen
	n.Publish(takeover)
	waitFor(t, "the hook to write its file", func() bool { _, err := os.Stat(out); return err == nil })
	var got struct {
		events.Event
		Cluster string `json:"cluster"`
	}
	data, _ := os.ReadFile(out)
	if err := json.Unmarshal(data, &got); err != nil || got.Kind != events.Takeover || got.Cluster != "shop" || got.Attrs["detect_ms"] != float64(181) {
		t.Fatalf("stdin: %s (%v)", data, err)
	}
	env, _ := os.ReadFile(out + ".env")
	for _, want := range []string{"TANDEM_KIND=takeover", "TANDEM_NODE=db2", "TANDEM_GROUP=shop-db", "TANDEM_EPOCH=7",
		"TANDEM_CLUSTER=shop", "TANDEM_TIME=2026-12-03T10:00:00Z", "TANDEM_MESSAGE=took over from db1"} {
		if !strings.Contains(string(env), want+"\n") {
			t.Errorf("env lacks %s:\n%s", want, env)
		}
	}
	n.Close(5 * time.Second)
	if _, err := os.Stat(out + ".json"); err == nil {
		t.Error("the hook ran for the link_down it was not to get")
	}
}

// A hook that never exits is killed at the timeout with the processes it
// started, retried, then given up; meanwhile publishing never waits: the
// queue drops its oldest and counts them.
func TestHookThatNeverExits(t *testing.T) {
	pids := filepath.Join(t.TempDir(), "pids")
	hook := script(t, `sleep 1000 & echo $! >> "$PIDS"; echo $$ >> "$PIDS"; wait`)
	t.Setenv("PIDS", pids)
	c := cfgWith("takeover")
	c.Queue = 8
	c.Exec = &config.NotifyExec{Command: []string{hook}}
	reg := prometheus.NewRegistry()
	n, err := New(c, "shop", Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(0)
	n.Publish(takeover)
	waitFor(t, "the hook to start", func() bool { b, _ := os.ReadFile(pids); return len(b) > 0 })

	// The event path while the hook hangs: 10000 events, none waits.
	done := make(chan struct{})
	go func() {
		for i := range 10000 {
			e := takeover
			e.Epoch = uint64(i)
			n.Publish(e)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Publish blocked while the hook hung")
	}
	m := n.workers[0].m
	if got := count(m.dropped, "exec", "queue_full"); got < 10000-8 {
		t.Errorf("dropped as the queue was full: %v", got)
	}
	// 1 try + 2 retries of the first event, each killed at the timeout.
	waitFor(t, "the first event to be given up", func() bool { return count(m.dropped, "exec", "failed") >= 1 })
	if got := count(m.failures, "exec"); got < 3 {
		t.Errorf("failures %v, want 3 tries", got)
	}
	n.Close(0)
	// SIGKILL is asynchronous: a killed process (and an orphaned child of
	// its group, reaped by init) is gone a moment later, which a loaded
	// machine stretched past an immediate look (CI). One that was never
	// killed is still there after 5 s.
	data, _ := os.ReadFile(pids)
	for _, f := range strings.Fields(string(data)) {
		pid, _ := strconv.Atoi(f)
		deadline := time.Now().Add(5 * time.Second)
		for pid > 0 && syscall.Kill(pid, 0) == nil && !zombie(pid) {
			if time.Now().After(deadline) {
				t.Errorf("process %d of a timed-out hook still runs", pid)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] == 'Z'
}

// tlsServer is a real HTTPS server; caFile trusts its certificate.
func tlsServer(t *testing.T, h http.HandlerFunc) (srv *httptest.Server, caFile, tokenFile string) {
	t.Helper()
	srv = httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	caFile = filepath.Join(dir, "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	tokenFile = filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("hook-s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, caFile, tokenFile
}

// publishTakeover starts a notifier of c, publishes a takeover and returns
// its target's counters; the notifier stops with the test.
func publishTakeover(t *testing.T, c config.Notify) *metrics {
	t.Helper()
	n, err := New(c, "shop", Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close(0) })
	n.Publish(takeover)
	return n.workers[0].m
}

// A webhook that answers 500 is retried with backoff until it takes the
// event; the POST carries the token and the event.
func TestWebhookRetriesA500(t *testing.T) {
	var calls atomic.Int32
	var mu sync.Mutex
	var got []string
	srv, ca, tok := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Header.Get("Authorization")+" "+r.Header.Get("Content-Type")+" "+string(b))
		mu.Unlock()
		if calls.Add(1) <= 2 {
			http.Error(w, "database is down", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	c := cfgWith()
	c.Webhook = &config.NotifyWebhook{URL: srv.URL + "/hook", TokenFile: tok, CAFile: ca}
	m := publishTakeover(t, c)
	waitFor(t, "the webhook to take the event", func() bool { return count(m.sent, "webhook") == 1 })
	if calls.Load() != 3 || count(m.failures, "webhook") != 2 {
		t.Errorf("calls %d, failures %v", calls.Load(), count(m.failures, "webhook"))
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.HasPrefix(got[2], "Bearer hook-s3cret application/json {") || !strings.Contains(got[2], `"kind":"takeover"`) {
		t.Errorf("request: %s", got[2])
	}
}

// A webhook that never answers is abandoned at each timeout and given up
// after the retries; one that answers 400 is not retried at all.
func TestWebhookThatHangsOr4xx(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var hung atomic.Int32
	srv, ca, _ := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bad" {
			http.Error(w, "no such hook", http.StatusBadRequest)
			return
		}
		hung.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	c := cfgWith()
	c.Timeout = config.Duration(200 * time.Millisecond)
	c.Webhook = &config.NotifyWebhook{URL: srv.URL + "/slow", CAFile: ca}
	m := publishTakeover(t, c)
	waitFor(t, "the hanging webhook to be given up", func() bool { return count(m.dropped, "webhook", "failed") == 1 })
	if hung.Load() != 3 || count(m.failures, "webhook") != 3 {
		t.Errorf("calls %d, failures %v", hung.Load(), count(m.failures, "webhook"))
	}

	c.Webhook.URL = srv.URL + "/bad"
	m2 := publishTakeover(t, c)
	waitFor(t, "the 400 to be given up", func() bool { return count(m2.dropped, "webhook", "failed") == 1 })
	if got := count(m2.failures, "webhook"); got != 1 {
		t.Errorf("a 400 was tried %v times", got)
	}
}

// Plain HTTP is refused unless configured (config's job), and TLS checks
// the server: without its CA the call fails.
func TestWebhookChecksTheCertificate(t *testing.T) {
	srv, _, _ := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {})
	w, err := NewWebhook(config.NotifyWebhook{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = w.Deliver(ctx, newMessage(takeover, "shop"))
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a server signed by an unknown CA: %v", err)
	}
}

// Close delivers what is queued (the agent's "agent stopped") within its
// grace.
func TestCloseFlushes(t *testing.T) {
	var calls atomic.Int32
	srv, ca, _ := tlsServer(t, func(w http.ResponseWriter, r *http.Request) { calls.Add(1) })
	c := cfgWith("node_down")
	c.Webhook = &config.NotifyWebhook{URL: srv.URL, CAFile: ca}
	n, err := New(c, "shop", Options{})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		n.Publish(events.Event{Kind: events.NodeDown, Node: "db1", Subject: "db1", Message: "agent stopped"})
	}
	n.Close(20 * time.Second)
	if calls.Load() != 5 {
		t.Errorf("%d of 5 queued events sent by Close", calls.Load())
	}
}
