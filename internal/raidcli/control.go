package raidcli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"tandem/internal/raid"
)

// The control socket of a served array: HTTP/JSON over a unix socket in the
// state dir (0600, so only root acts on arrays).

type controlRequest struct {
	Member string `json:"member,omitempty"`
	Path   string `json:"path,omitempty"`
	Repair bool   `json:"repair,omitempty"`
	Bytes  int64  `json:"bytes,omitempty"`
	Force  bool   `json:"force,omitempty"` // add/replace: take a member that holds other data
}

type controlServer struct {
	g   *globals
	a   *raid.Array
	rec *record
	mu  sync.Mutex // serializes admin actions and record updates
	srv *http.Server
	ln  net.Listener
}

func startControl(g *globals, a *raid.Array, rec *record, metrics prometheus.Gatherer) (*controlServer, error) {
	path := socketPath(g.stateDir, a.Name())
	if err := os.MkdirAll(raidDir(g.stateDir), 0o750); err != nil {
		return nil, fmt.Errorf("raid: %w", err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, fmt.Errorf("raid: array %s: control socket: %w", a.Name(), err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("raid: control socket: %w", err)
	}
	os.Chmod(path, 0o600)
	cs := &controlServer{g: g, a: a, rec: rec, ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) { reply(w, a.Status(), nil) })
	mux.Handle("GET /metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
	mux.HandleFunc("POST /fail", cs.handle(func(q controlRequest) (any, error) { return nil, a.Fail(q.Member) }))
	mux.HandleFunc("POST /remove", cs.handle(func(q controlRequest) (any, error) {
		if err := a.Remove(q.Member); err != nil {
			return nil, err
		}
		return nil, cs.unrecord(q.Member)
	}))
	mux.HandleFunc("POST /add", cs.handle(func(q controlRequest) (any, error) {
		if err := joinMember(a, q.Path, q.Force, a.Add); err != nil {
			return nil, err
		}
		return nil, cs.record(q.Path)
	}))
	mux.HandleFunc("POST /replace", cs.handle(func(q controlRequest) (any, error) {
		if err := joinMember(a, q.Path, q.Force, func(m raid.Member) error { return a.Replace(q.Member, m) }); err != nil {
			return nil, err
		}
		return nil, cs.record(q.Path)
	}))
	// A check or repair scrubs the whole array: it runs outside the lock the
	// other commands share, so fail/add/remove/replace are not held up by
	// it, and stops when the client goes away (Ctrl-C on `tandem raid check`).
	mux.HandleFunc("POST /check", func(w http.ResponseWriter, r *http.Request) {
		q, ok := decodeRequest(w, r)
		if !ok {
			return
		}
		v, err := a.Check(r.Context(), q.Repair)
		reply(w, v, err)
	})
	mux.HandleFunc("POST /rate", cs.handle(func(q controlRequest) (any, error) { a.SetRebuildRate(q.Bytes); return nil, nil }))
	cs.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go cs.srv.Serve(ln)
	return cs, nil
}

func (cs *controlServer) record(path string) error {
	if cs.rec == nil {
		return nil
	}
	cs.rec.addMembers(path)
	return saveRecord(cs.g.stateDir, cs.rec)
}

func (cs *controlServer) unrecord(path string) error {
	if cs.rec == nil {
		return nil
	}
	cs.rec.removeMember(path)
	return saveRecord(cs.g.stateDir, cs.rec)
}

func (cs *controlServer) handle(fn func(controlRequest) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, ok := decodeRequest(w, r)
		if !ok {
			return
		}
		cs.mu.Lock()
		v, err := fn(q)
		cs.mu.Unlock()
		reply(w, v, err)
	}
}

// decodeRequest reads a control request; a malformed one is answered here.
func decodeRequest(w http.ResponseWriter, r *http.Request) (controlRequest, bool) {
	var q controlRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&q); err != nil && !errors.Is(err, io.EOF) {
		reply(w, nil, fmt.Errorf("raid: bad request: %w", err))
		return q, false
	}
	return q, true
}

func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusConflict)
		json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	if v == nil {
		v = map[string]string{"result": "ok"}
	}
	json.NewEncoder(w).Encode(v)
}

func (cs *controlServer) close() {
	cs.srv.Close()
	os.Remove(socketPath(cs.g.stateDir, cs.a.Name()))
}

// controlClient talks to a served array; nil when it is not served.
type controlClient struct {
	hc   *http.Client
	name string // the array
	path string // its control socket
}

func (g *globals) control(name string) *controlClient {
	path := socketPath(g.stateDir, name)
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil
	}
	c.Close()
	return &controlClient{name: name, path: path, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}}
}

func (c *controlClient) call(method, op string, q controlRequest, out any) error {
	body, _ := json.Marshal(q)
	req, _ := http.NewRequest(method, "http://raid/"+op, bytes.NewReader(body))
	resp, err := c.hc.Do(req)
	if err != nil {
		// Go's HTTP error names a made-up URL; say what the user has.
		var cause error = err
		var ue *url.Error
		if errors.As(err, &ue) {
			cause = ue.Err
		}
		return fmt.Errorf("raid: the process serving array %s (tandem raid serve, control socket %s) did not answer %s: %w\n"+
			"  Check that it still runs (ps, or systemctl status for its unit); once it has stopped, run this command again:\n"+
			"  without a serving process it works on the array's members directly", c.name, c.path, op, cause)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.Unmarshal(b, &e)
		return errors.New(e.Error)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}
