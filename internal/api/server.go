// Package api owns tandem's control API: HTTP/JSON on a unix socket (who
// may connect is the socket's file mode; the caller is identified by its
// uid) and, when configured, on TCP with a bearer token. The CLI speaks only
// to it. It imports internal/node for the operations, status types and
// error classes; cmd wires it.
package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"tandem/internal/consensus"
	"tandem/internal/events"
	"tandem/internal/node"
	"tandem/internal/state"
	"tandem/internal/web"
)

// Backend is what the API drives (a *node.Node).
type Backend interface {
	Status() node.Status
	Failover(ctx context.Context, group, to, actor string) (string, error)
	// ForceFailover moves a group onto a stale replica of its volume and
	// says what is lost.
	ForceFailover(ctx context.Context, group, to, actor string) ([]string, error)
	Standby(ctx context.Context, nodeName string, on bool, actor string) error
	Maintenance(ctx context.Context, nodeName string, on bool, actor string) error
	Cleanup(ctx context.Context, group, actor string) error
	ScanEvents(f events.Filter) (events.Result, error)
}

// Driller is what a backend offers `tandem drill` (a *node.Node does):
// recording a drill in its audit log, and killing itself for an unplanned
// drill. A backend without it answers 404 to those requests.
type Driller interface {
	RecordDrill(group, result, message string, attrs map[string]any, actor string) error
	CrashForDrill(group, actor string) (kill func(), err error)
}

// The headers of GET /v1/events that report the audit log's lines that
// are not entries: how many, and the first of them ("line N: reason").
const (
	skippedCountHeader = "Tandem-Skipped-Lines"
	skippedHeader      = "Tandem-Skipped"
)

// headerSafe keeps s to printable ASCII, at most 200 bytes.
func headerSafe(s string) string {
	b := make([]byte, 0, min(len(s), 200))
	for i := 0; i < len(s) && len(b) < 200; i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			b = append(b, c)
		} else {
			b = append(b, '?')
		}
	}
	return string(b)
}

// Server serves the API.
type Server struct {
	backend  Backend
	token    string
	gatherer prometheus.Gatherer
	log      *slog.Logger
	limits   Limits
	metrics  *apiMetrics
	servers  []*http.Server
	// web holds the dashboard's sessions and one-time login tokens (nil
	// without a token: no TCP listener, no dashboard).
	web *web.Auth
}

// NewServer returns a server with DefaultLimits; token "" disables TCP
// listeners.
func NewServer(b Backend, token string, g prometheus.Gatherer, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{backend: b, token: token, gatherer: g, log: log, limits: DefaultLimits(), metrics: newAPIMetrics()}
	if token != "" {
		s.web = web.NewAuth(token, nil)
	}
	return s
}

// SetLimits replaces the limits of the listeners started after it.
func (s *Server) SetLimits(l Limits) { s.limits = l }

// Collector exposes the connection metrics (tandem_api_connections…).
func (s *Server) Collector() prometheus.Collector { return s.metrics }

// serve runs an HTTP server for handler on ln, within the limits.
func (s *Server) serve(ln net.Listener, name string, handler http.Handler, sourceOf func(net.Conn) string, actorOf func(net.Conn) string) {
	l := s.limits
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    16 << 10, // a token and a few short headers
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, ctxKey{}, actorOf(c))
		},
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.servers = append(s.servers, srv)
	go srv.Serve(newLimitListener(ln, name, l, sourceOf, s.log, s.metrics))
}

type ctxKey struct{}

// ServeUnix listens on a unix socket at path (mode 0660 in a 0750
// directory, so only root and the socket's group may connect).
func (s *Server) ServeUnix(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("api: %w", err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return fmt.Errorf("api: %s is in use by a running agent", path)
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return fmt.Errorf("api: %w", err)
	}
	s.serve(ln, "unix", s.handler(false), unixSource, unixActor)
	return nil
}

// ServeTCP listens on addr; every request needs the bearer token.
func (s *Server) ServeTCP(addr string) error {
	if s.token == "" {
		return errors.New("api: a TCP listener needs a token")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	s.serve(ln, "tcp", s.handler(true), tcpSource, func(c net.Conn) string { return "token@" + c.RemoteAddr().String() })
	return nil
}

// Close stops every listener.
func (s *Server) Close() {
	for _, srv := range s.servers {
		srv.Close()
	}
}

func (s *Server) handler(needToken bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.backend.Status())
	})
	mux.HandleFunc("POST /v1/groups/{group}/failover", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			To    string `json:"to"`
			Force bool   `json:"force"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		if req.Force {
			lost, err := s.backend.ForceFailover(r.Context(), r.PathValue("group"), req.To, actor(r))
			s.reply(w, err, map[string]any{"group": r.PathValue("group"), "to": req.To, "lost": lost})
			return
		}
		to, err := s.backend.Failover(r.Context(), r.PathValue("group"), req.To, actor(r))
		s.reply(w, err, map[string]string{"group": r.PathValue("group"), "to": to})
	})
	mux.HandleFunc("POST /v1/groups/{group}/cleanup", func(w http.ResponseWriter, r *http.Request) {
		s.reply(w, s.backend.Cleanup(r.Context(), r.PathValue("group"), actor(r)), map[string]string{"group": r.PathValue("group")})
	})
	mux.HandleFunc("POST /v1/nodes/{node}/standby", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			On *bool `json:"on"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		if req.On == nil {
			writeError(w, http.StatusBadRequest, errors.New(`body must be {"on": true|false}`))
			return
		}
		s.reply(w, s.backend.Standby(r.Context(), r.PathValue("node"), *req.On, actor(r)), map[string]any{"node": r.PathValue("node"), "standby": *req.On})
	})
	mux.HandleFunc("POST /v1/maintenance", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			On   *bool  `json:"on"`
			Node string `json:"node"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		if req.On == nil {
			writeError(w, http.StatusBadRequest, errors.New(`body must be {"on": true|false, "node": optional}`))
			return
		}
		s.reply(w, s.backend.Maintenance(r.Context(), req.Node, *req.On, actor(r)), map[string]any{"maintenance": *req.On, "node": req.Node})
	})
	s.drillHandlers(mux)
	s.fenceHandlers(mux)
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		f, err := parseFilter(r.URL.Query(), time.Now())
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		res, err := s.backend.ScanEvents(f)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		evs := res.Events
		if evs == nil {
			evs = []events.Event{}
		}
		// Lines that are not entries are skipped, never silently: the
		// count and the first of them travel in headers, so the answer
		// stays the list of events it always was.
		if res.BadCount > 0 {
			w.Header().Set(skippedCountHeader, strconv.Itoa(res.BadCount))
			for _, b := range res.Bad {
				w.Header().Add(skippedHeader, headerSafe(b.String()))
			}
		}
		writeJSON(w, http.StatusOK, evs)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	if s.gatherer != nil {
		// Uncompressed: gzip was a quarter of a scrape's CPU for ~25 KB
		// (docs/benchmarks.md, "Scraping /metrics").
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{DisableCompression: true}))
	}
	if !needToken && s.web != nil {
		// Whoever may use the socket may open the dashboard: a one-time
		// login link for `tandem dashboard --url`.
		mux.HandleFunc("POST /v1/dashboard/login-token", func(w http.ResponseWriter, r *http.Request) {
			tok := s.web.MintLoginToken()
			writeJSON(w, http.StatusOK, map[string]any{"path": "/ui/login?t=" + tok, "expires_in_s": web.LoginTokenTTL.Seconds()})
		})
	}
	var h http.Handler = mux
	if needToken {
		// /ui/ is the dashboard, behind its own login (a session cookie
		// or this bearer token); everything else needs the token.
		outer := http.NewServeMux()
		outer.Handle("/ui/", web.Handler(s.web, mux))
		outer.Handle("/", s.requireToken(mux))
		h = outer
	}
	return limitBody(h)
}

func (s *Server) requireToken(next http.Handler) http.Handler {
	want := []byte(s.token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := bearerToken(r.Header.Get("Authorization"))
		if !ok || subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tandem"`)
			// A client without the token gets no keep-alive: it cannot
			// hold a connection beyond its one refused request.
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusUnauthorized, errors.New("missing or wrong bearer token"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bearerToken reads "Authorization: Bearer TOKEN". The scheme is
// case-insensitive and followed by one or more spaces (RFC 7235 2.1, RFC
// 6750 2.1).
func bearerToken(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimLeft(tok, " ")
	return tok, tok != ""
}

func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		next.ServeHTTP(w, r)
	})
}

func actor(r *http.Request) string {
	if a, ok := r.Context().Value(ctxKey{}).(string); ok {
		return a
	}
	return "unknown"
}

func (s *Server) reply(w http.ResponseWriter, err error, ok any) {
	if err == nil {
		writeJSON(w, http.StatusOK, ok)
		return
	}
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, node.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, node.ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, node.ErrConflict), state.IsStaleEpoch(err):
		code = http.StatusConflict
	case errors.Is(err, consensus.ErrNoLeader):
		code = http.StatusServiceUnavailable
	}
	writeError(w, code, err)
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if r.ContentLength == 0 {
		return true
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("bad request body: %w", err))
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// parseFilter reads ?kind=a,b&group=&node=&subject=&since=RFC3339|duration&limit=N;
// a duration is back from now.
func parseFilter(q url.Values, now time.Time) (events.Filter, error) {
	f := events.Filter{Group: q.Get("group"), Node: q.Get("node"), Subject: q.Get("subject")}
	if k := q.Get("kind"); k != "" {
		kinds, err := events.ParseKinds(k)
		if err != nil {
			return f, err
		}
		f.Kinds = kinds
	}
	if s := q.Get("since"); s != "" {
		t, err := parseSince(s, now)
		if err != nil {
			return f, err
		}
		f.Since = t
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			return f, fmt.Errorf("limit %q is not a non-negative integer", l)
		}
		f.Limit = n
	}
	return f, nil
}

// parseSince accepts an RFC 3339 time or a duration back from now ("1h").
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("since %q is neither an RFC 3339 time nor a duration like 1h", s)
}
