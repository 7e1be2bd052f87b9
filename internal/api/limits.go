package api

import (
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Limits bound what API clients can hold of the agent: every connection
// is a file descriptor, and the agent's heartbeats, raft, resource checks
// and audit log need descriptors from the same process limit. A client
// that opens connections and sends nothing, or half a request, used to
// keep them forever; with a lowered limit 95 of them made raft and exec
// checks fail with "too many open files" and forced a failover.
type Limits struct {
	// MaxConns is the most connections each listener (the unix socket,
	// the TCP port) keeps open; more are answered 503 and closed at once.
	MaxConns int
	// MaxPerSource is the most of them from one source: one IP address
	// on TCP, one uid on the unix socket. One client cannot take them all.
	MaxPerSource int
	// ReadHeaderTimeout bounds sending the request line and headers,
	// ReadTimeout the whole request with its body (at most 64 KiB),
	// WriteTimeout the request and its answer, IdleTimeout a kept-alive
	// connection between requests.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
}

// DefaultLimits suit a process with a thousand or more descriptors.
func DefaultLimits() Limits {
	return Limits{
		// Two listeners of 64: 128 descriptors, an eighth of the common
		// soft limit of 1024; the CLI uses one connection per command and
		// a Prometheus scraper one, so 64 is far above normal use.
		MaxConns: 64,
		// Eight per source: enough for an operator's parallel commands and
		// a scraper behind one address, an eighth of the total.
		MaxPerSource: 8,
		// Headers and bodies are small: a client on a slow link sends them
		// in well under a second; 5 s and 10 s only cut clients that stall.
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		// A failover or standby waits for raft (at most 5 raft timeouts)
		// and the CLI waits 30 s: 40 s never cuts a legitimate answer.
		WriteTimeout: 40 * time.Second,
		// Long enough for a scraper's keep-alive between 15 s scrapes.
		IdleTimeout: 30 * time.Second,
	}
}

// LimitsFor fits the defaults to a process whose descriptor limit is
// nofile: both listeners together take at most a quarter of it, so at
// least three quarters stay for the rest of the agent. 0 means unknown
// (the defaults).
func LimitsFor(nofile uint64) Limits {
	l := DefaultLimits()
	if nofile == 0 {
		return l
	}
	if per := int(min(nofile/8, uint64(l.MaxConns))); per < l.MaxConns {
		l.MaxConns = max(per, 2)
	}
	l.MaxPerSource = max(1, min(l.MaxPerSource, l.MaxConns/2))
	return l
}

// Descriptors is the most descriptors n listeners with these limits hold.
func (l Limits) Descriptors(listeners int) int { return listeners * (l.MaxConns + 1) }

// limitListener admits at most max connections, and perSource from one
// source, refusing the rest with a 503 as soon as they are accepted (so
// they cost a descriptor for microseconds, not until they give up).
type limitListener struct {
	net.Listener
	name      string
	max, per  int
	sourceOf  func(net.Conn) string
	log       *slog.Logger
	metrics   *apiMetrics
	mu        sync.Mutex
	open      int
	bySource  map[string]int
	lastWarn  time.Time
	refusedAt int // refusals since the last warning
}

func newLimitListener(ln net.Listener, name string, l Limits, sourceOf func(net.Conn) string, log *slog.Logger, m *apiMetrics) *limitListener {
	// The listener's series from the start, at 0 (an alert on refusals
	// needs them before the first).
	m.open.WithLabelValues(name)
	m.refused.WithLabelValues(name, "total")
	m.refused.WithLabelValues(name, "source")
	return &limitListener{Listener: ln, name: name, max: l.MaxConns, per: l.MaxPerSource, sourceOf: sourceOf, log: log, metrics: m, bySource: map[string]int{}}
}

func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := ll.sourceOf(c)
		ll.mu.Lock()
		reason := ""
		switch {
		case ll.open >= ll.max:
			reason = "total"
		case ll.bySource[src] >= ll.per:
			reason = "source"
		default:
			ll.open++
			ll.bySource[src]++
		}
		warn := false
		if reason != "" {
			ll.refusedAt++
			if now := time.Now(); now.Sub(ll.lastWarn) > time.Minute {
				warn, ll.lastWarn = true, now
			}
		}
		refused := ll.refusedAt
		if warn {
			ll.refusedAt = 0
		}
		ll.mu.Unlock()
		if reason == "" {
			ll.metrics.open.WithLabelValues(ll.name).Inc()
			return &limitedConn{Conn: c, release: func() { ll.release(src) }}, nil
		}
		ll.metrics.refused.WithLabelValues(ll.name, reason).Inc()
		if warn {
			ll.log.Warn("API connections refused: too many open", "listener", ll.name, "limit", reason,
				"source", src, "max", ll.max, "max_per_source", ll.per, "refused_since_last_warning", refused)
		}
		refuse(c)
	}
}

func (ll *limitListener) release(src string) {
	ll.mu.Lock()
	ll.open--
	if ll.bySource[src]--; ll.bySource[src] <= 0 {
		delete(ll.bySource, src)
	}
	ll.mu.Unlock()
	ll.metrics.open.WithLabelValues(ll.name).Dec()
}

// refuse answers 503 on a connection that was just accepted (its send
// buffer is empty, so the write does not wait) and closes it.
func refuse(c net.Conn) {
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	const body = `{"error": "too many connections to the tandem API; try again later"}` + "\n"
	c.Write([]byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nRetry-After: 1\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body))
	c.Close()
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// unwrap returns the connection a limitListener wrapped.
func unwrap(c net.Conn) net.Conn {
	if lc, ok := c.(*limitedConn); ok {
		return lc.Conn
	}
	return c
}

// tcpSource is a TCP client's source: its IP address.
func tcpSource(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return c.RemoteAddr().String()
}

type apiMetrics struct {
	open    *prometheus.GaugeVec
	refused *prometheus.CounterVec
}

func newAPIMetrics() *apiMetrics {
	return &apiMetrics{
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tandem_api_connections",
			Help: "API connections open, per listener (unix, tcp)."}, []string{"listener"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_api_connections_refused_total",
			Help: "API connections refused at a limit (total: the listener's, source: one client's)."}, []string{"listener", "limit"}),
	}
}

func (m *apiMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.open.Describe(ch)
	m.refused.Describe(ch)
}
func (m *apiMetrics) Collect(ch chan<- prometheus.Metric) { m.open.Collect(ch); m.refused.Collect(ch) }
