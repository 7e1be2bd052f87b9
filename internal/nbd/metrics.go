package nbd

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tandem/internal/nbd/wire"
)

// metrics are the server's Prometheus collectors; nil when not registered,
// and every method is a no-op on nil.
type metrics struct {
	accepted    prometheus.Counter
	refused     *prometheus.CounterVec
	timedOut    *prometheus.CounterVec
	active      *prometheus.GaugeVec
	dropped     prometheus.Counter
	requests    *prometheus.CounterVec
	bytes       *prometheus.CounterVec
	durationVec *prometheus.HistogramVec
}

// exportMetrics are one export's series resolved once, so the request path
// does no label lookups. Indexed by command type.
type exportMetrics struct {
	active   prometheus.Gauge
	ok, fail [wire.CmdBlockStatus + 1]prometheus.Counter
	duration [wire.CmdBlockStatus + 1]prometheus.Observer
	read     prometheus.Counter
	written  prometheus.Counter
}

// RegisterMetrics registers the server's metrics on reg; connections and
// requests are counted from then on. Series: tandem_nbd_connections_accepted_total,
// tandem_nbd_connections_refused_total{reason} (full, not_allowed),
// tandem_nbd_connections_timed_out_total{reason} (stall, idle),
// tandem_nbd_payload_memory_bytes, tandem_nbd_payload_memory_waits_total,
// tandem_nbd_connections{export}, tandem_nbd_connections_dropped_total
// (protocol violations and mid-request disconnects),
// tandem_nbd_requests_total{export,op,result},
// tandem_nbd_bytes_total{export,direction},
// tandem_nbd_request_duration_seconds{export,op}.
func (s *Server) RegisterMetrics(reg prometheus.Registerer) error {
	m := &metrics{
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_nbd_connections_accepted_total", Help: "NBD connections accepted."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_nbd_connections_refused_total", Help: "NBD connections refused: Limits.MaxConns were open (full) or the address is not in the allow-list (not_allowed)."}, []string{"reason"}),
		timedOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_nbd_connections_timed_out_total", Help: "NBD connections closed because a reply made no progress (stall) or the client sent nothing (idle)."}, []string{"reason"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tandem_nbd_connections", Help: "NBD connections in transmission, by export."}, []string{"export"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_nbd_connections_dropped_total", Help: "NBD connections closed because the client broke the protocol or vanished mid-request."}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_nbd_requests_total", Help: "NBD requests answered, by export, command and result."}, []string{"export", "op", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_nbd_bytes_total", Help: "Payload bytes read from or written to exports."}, []string{"export", "direction"}),
		durationVec: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tandem_nbd_request_duration_seconds", Help: "Time from request decoded to reply queued.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 4, 10)}, []string{"export", "op"}),
	}
	memInFlight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tandem_nbd_payload_memory_bytes", Help: "Payload buffers held by requests in flight, all connections (bounded by Limits.MaxMemory)."},
		func() float64 { v, _ := s.mem.stats(); return float64(v) })
	memWaits := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "tandem_nbd_payload_memory_waits_total", Help: "Requests that waited for the shared payload memory."},
		func() float64 { _, w := s.mem.stats(); return float64(w) })
	m.refused.WithLabelValues("full")
	m.refused.WithLabelValues("not_allowed")
	m.timedOut.WithLabelValues("stall")
	m.timedOut.WithLabelValues("idle")
	var errs []error
	for _, c := range []prometheus.Collector{m.accepted, m.refused, m.timedOut, m.active, m.dropped, m.requests, m.bytes, m.durationVec, memInFlight, memWaits} {
		errs = append(errs, reg.Register(c))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, e := range s.exports {
		em := &exportMetrics{
			active:  m.active.WithLabelValues(e.Name),
			read:    m.bytes.WithLabelValues(e.Name, "read"),
			written: m.bytes.WithLabelValues(e.Name, "write"),
		}
		for t := range em.ok {
			op := wire.CmdName(uint16(t))
			em.ok[t] = m.requests.WithLabelValues(e.Name, op, "ok")
			em.fail[t] = m.requests.WithLabelValues(e.Name, op, "error")
			em.duration[t] = m.durationVec.WithLabelValues(e.Name, op)
		}
		e.metrics.Store(em)
	}
	s.metrics.Store(m)
	return nil
}

func (m *metrics) connAccepted() {
	if m != nil {
		m.accepted.Inc()
	}
}

func (m *metrics) connRefused(reason string) {
	if m != nil {
		m.refused.WithLabelValues(reason).Inc()
	}
}

func (m *metrics) connTimedOut(reason string) {
	if m != nil {
		m.timedOut.WithLabelValues(reason).Inc()
	}
}

func (m *metrics) connDropped() {
	if m != nil {
		m.dropped.Inc()
	}
}

func (em *exportMetrics) connActive(delta float64) {
	if em != nil {
		em.active.Add(delta)
	}
}

// request records one answered request; start is zero for requests refused
// before execution.
func (em *exportMetrics) request(r wire.Request, errno uint32, start time.Time) {
	if em == nil || int(r.Type) >= len(em.ok) {
		return
	}
	if errno != 0 {
		em.fail[r.Type].Inc()
	} else {
		em.ok[r.Type].Inc()
		switch r.Type {
		case wire.CmdRead:
			em.read.Add(float64(r.Length))
		case wire.CmdWrite:
			em.written.Add(float64(r.Length))
		}
	}
	if !start.IsZero() {
		em.duration[r.Type].Observe(time.Since(start).Seconds())
	}
}
