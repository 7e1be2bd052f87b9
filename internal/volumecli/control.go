package volumecli

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

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"tandem/internal/volume"
)

// The control socket of a running volume: HTTP/JSON over a unix socket in
// the state dir, mode 0600 (only root acts on volumes). Connections are
// bounded; requests are small.

const maxControlConns = 16

type controlRequest struct {
	Force   bool   `json:"force,omitempty"`
	Repair  bool   `json:"repair,omitempty"`
	Discard string `json:"discard,omitempty"`
	Bytes   int64  `json:"bytes,omitempty"`
}

type control struct {
	srv  *http.Server
	path string
}

func startControl(d *daemon) (*control, error) {
	path := socketPath(d.g.stateDir, d.rec.Name)
	if err := os.MkdirAll(volumeDir(d.g.stateDir), 0o750); err != nil {
		return nil, fmt.Errorf("volume: %w", err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, fmt.Errorf("volume %s: control socket: %w", d.rec.Name, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("volume %s: control socket: %w", d.rec.Name, err)
	}
	os.Chmod(path, 0o600)
	v := d.vol
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) { reply(w, v.Status(), nil) })
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.gatherer(), promhttp.HandlerOpts{}))
	act := func(op string, fn func(controlRequest) (any, error)) {
		mux.HandleFunc("POST /"+op, func(w http.ResponseWriter, r *http.Request) {
			if d.managed && (op == "primary" || op == "secondary" || op == "down") {
				reply(w, nil, fmt.Errorf("volume %s is run by the cluster agent, which alone changes its role: move its group with tandem failover, tandem standby or by stopping the agent", d.rec.Name))
				return
			}
			var q controlRequest
			if err := json.NewDecoder(io.LimitReader(r.Body, 1<<12)).Decode(&q); err != nil && !errors.Is(err, io.EOF) {
				reply(w, nil, fmt.Errorf("volume: bad request: %w", err))
				return
			}
			out, err := fn(q)
			reply(w, out, err)
		})
	}
	act("primary", func(q controlRequest) (any, error) {
		e, err := d.promote(q.Force)
		return map[string]any{"epoch": e}, err
	})
	act("secondary", func(controlRequest) (any, error) { return nil, d.demote() })
	act("connect", func(controlRequest) (any, error) { return nil, v.Connect() })
	act("disconnect", func(controlRequest) (any, error) { return nil, v.Disconnect() })
	act("verify", func(q controlRequest) (any, error) { return nil, v.Verify(q.Repair) })
	act("resolve", func(q controlRequest) (any, error) { return nil, v.Resolve(q.Discard) })
	act("rate", func(q controlRequest) (any, error) { return nil, v.SetRate(q.Bytes) })
	act("down", func(q controlRequest) (any, error) {
		if v.Status().Role == "Primary" {
			if !q.Force {
				return nil, fmt.Errorf("volume %s: %w", d.rec.Name, errDownPrimary)
			}
			if err := d.demote(); err != nil {
				return nil, err
			}
		}
		d.down()
		return nil, nil
	})
	c := &control{path: path, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, IdleTimeout: 5 * time.Second, MaxHeaderBytes: 1 << 14}}
	go c.srv.Serve(limitListener(ln, maxControlConns))
	return c, nil
}

// close stops the control socket. The answers being written finish first
// (within a second): `down` is answered and then closes it, and a Close
// that cut the connection first left the caller with an EOF for a down
// that happened (e2e TestVolumeBadInput beside stress-ng).
func (c *control) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if c.srv.Shutdown(ctx) != nil {
		c.srv.Close()
	}
	os.Remove(c.path)
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

// removeStaleSocket clears the way for a unix socket at path: nothing
// there, or a socket nobody answers on (left by a process that died), is
// fine and removed; a live socket or anything else is refused.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket; not removing it", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("%s: another process is listening there", path)
	}
	return os.Remove(path)
}

// limitListener accepts at most n connections at once; more wait in the
// kernel's backlog.
func limitListener(ln net.Listener, n int) net.Listener {
	return &limited{Listener: ln, sem: make(chan struct{}, n)}
}

type limited struct {
	net.Listener
	sem chan struct{}
}

func (l *limited) Accept() (net.Conn, error) {
	l.sem <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.sem }}, nil
}

type limitedConn struct {
	net.Conn
	release func()
	once    sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// controlClient talks to a running volume.
type controlClient struct {
	hc   *http.Client
	name string
	path string
}

// dialControl returns a client of the volume's control socket, nil when
// no process answers there.
func dialControl(stateDir, name string) *controlClient {
	path := socketPath(stateDir, name)
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil
	}
	c.Close()
	// One request per connection: a kept-alive idle connection would
	// hold one of the server's few connection slots until its idle
	// timeout (a test running many commands in one process filled them).
	return &controlClient{name: name, path: path, hc: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}}
}

func (c *controlClient) call(method, op string, q controlRequest, out any) error {
	body, _ := json.Marshal(q)
	req, _ := http.NewRequest(method, "http://volume/"+op, bytes.NewReader(body))
	resp, err := c.hc.Do(req)
	if err != nil {
		var cause error = err
		var ue *url.Error
		if errors.As(err, &ue) {
			cause = ue.Err
		}
		return fmt.Errorf("volume %s: the process running it (tandem volume up, control socket %s) did not answer %s: %w", c.name, c.path, op, cause)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
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

func (c *controlClient) status() (volume.Status, error) {
	var s volume.Status
	err := c.call("GET", "status", controlRequest{}, &s)
	return s, err
}
