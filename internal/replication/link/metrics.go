package link

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// linkStats are a link's counters over all its sessions.
type linkStats struct {
	sessions, refusals, stale, switches atomic.Uint64
	// ended sums the traffic of the sessions that ended (with Link.mu);
	// the live one's is added at scrape time
	ended State
}

func (st *linkStats) count(k EventKind) {
	switch k {
	case EventUp:
		st.sessions.Add(1)
	case EventRefused:
		st.refusals.Add(1)
	case EventStale:
		st.stale.Add(1)
	case EventSwitched:
		st.switches.Add(1)
	}
}

// sessionEnded adds a finished session's traffic; the caller holds
// Link.mu, so a scrape sees each session either live or summed, never both.
func (st *linkStats) sessionEnded(s State) {
	st.ended.BytesIn += s.BytesIn
	st.ended.BytesOut += s.BytesOut
	st.ended.FramesIn += s.FramesIn
	st.ended.FramesOut += s.FramesOut
}

// snapshot is the live session's state, if any, and the ended sessions'
// traffic, read together.
func (l *Link) snapshot() (live State, up bool, ended State) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.live != nil {
		live, up = l.live.State(), true
	}
	return live, up, l.stats.ended
}

// Collector exposes the links added to it as Prometheus metrics, read at
// scrape time: tandem_replication_link_up, _path (-1 while down),
// _rtt_seconds, _epoch (the newest seen), _bytes_total and _frames_total
// {direction}, _sessions_total, _refusals_total, _stale_frames_total and
// _switches_total, each labelled by volume and peer.
type Collector struct {
	mu    sync.Mutex
	links map[*Link]string // the volume's name, or "" for its UUID
	up, path, rtt, epoch, bytes, frames,
	sessions, refusals, stale, switches *prometheus.Desc
}

// NewCollector returns a collector with no links; register it once.
func NewCollector() *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("tandem_replication_link_"+name, help, append([]string{"volume", "peer"}, labels...), nil)
	}
	return &Collector{
		links:    map[*Link]string{},
		up:       d("up", "1 while a replication session with the peer is up."),
		path:     d("path", "Index of the path the session uses (0 is the preferred one); -1 while down."),
		rtt:      d("rtt_seconds", "Round-trip time of the last keepalive answered."),
		epoch:    d("epoch", "The newest epoch this node has seen for the volume (S2's fencing token)."),
		bytes:    d("bytes_total", "Bytes of frames sent (out) and received (in), headers included.", "direction"),
		frames:   d("frames_total", "Data frames sent (out) and received (in).", "direction"),
		sessions: d("sessions_total", "Sessions that came up."),
		refusals: d("refusals_total", "Connections refused, by either side (wrong key or node, volume or size mismatch, already connected...)."),
		stale:    d("stale_frames_total", "Frames refused for an epoch older than the newest seen, by either side."),
		switches: d("switches_total", "Moves of a live session to another path (failback), nothing lost."),
	}
}

// Add starts exposing l, labelled with its volume's UUID; Remove stops.
func (c *Collector) Add(l *Link) { c.AddNamed(l, "") }

// AddNamed starts exposing l labelled volume=name, as the volume's own
// series are (its UUID when name is "").
func (c *Collector) AddNamed(l *Link, name string) {
	c.mu.Lock()
	c.links[l] = name
	c.mu.Unlock()
}

func (c *Collector) Remove(l *Link) {
	c.mu.Lock()
	delete(c.links, l)
	c.mu.Unlock()
}

func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.path, c.rtt, c.epoch, c.bytes, c.frames, c.sessions, c.refusals, c.stale, c.switches} {
		ch <- d
	}
}

func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	links := make(map[*Link]string, len(c.links))
	for l, name := range c.links {
		links[l] = name
	}
	c.mu.Unlock()
	for l, vol := range links {
		if vol == "" {
			vol = l.cfg.Volume.String()
		}
		peer := l.cfg.Peer
		g := func(d *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{vol, peer}, labels...)...)
		}
		n := func(d *prometheus.Desc, v uint64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{vol, peer}, labels...)...)
		}
		live, up, ended := l.snapshot()
		if up {
			g(c.up, 1)
			g(c.path, float64(live.Path))
		} else {
			g(c.up, 0)
			g(c.path, -1)
		}
		g(c.rtt, live.RTT.Seconds())
		g(c.epoch, float64(l.fence.get()))
		n(c.bytes, ended.BytesIn+live.BytesIn, "in")
		n(c.bytes, ended.BytesOut+live.BytesOut, "out")
		n(c.frames, ended.FramesIn+live.FramesIn, "in")
		n(c.frames, ended.FramesOut+live.FramesOut, "out")
		s := &l.stats
		n(c.sessions, s.sessions.Load())
		n(c.refusals, s.refusals.Load())
		n(c.stale, s.stale.Load())
		n(c.switches, s.switches.Load())
	}
}
