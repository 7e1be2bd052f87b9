package node

import (
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tandem/internal/events"
	"tandem/internal/manager"
)

// eventMetrics are the metrics counted from what happens rather than read
// from the status: takeovers and their times, handovers, drills (events on
// the node's bus, as the audit log sees them) and resource operations
// (the manager's OnOp). Series of configured groups exist from the start,
// at zero, so an alert on a rise needs no first event.
type eventMetrics struct {
	takeovers, handovers *prometheus.CounterVec
	detect, decide       *prometheus.HistogramVec
	start, total         *prometheus.HistogramVec
	ops                  *prometheus.CounterVec
	opDur                *prometheus.HistogramVec

	mu        sync.Mutex
	lastDrill map[string]float64 // by group: Unix time of the last passed drill
	drillDesc *prometheus.Desc
}

// takeoverBuckets cover a sub-second failover up to a slow minute.
var takeoverBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

func newEventMetrics(groups []string) *eventMetrics {
	h := func(name, help string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: takeoverBuckets}, []string{"group"})
	}
	m := &eventMetrics{
		takeovers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_group_takeovers_total",
			Help: "Failovers of the group to this node (a takeover after its holder failed or was cut off)."}, []string{"group"}),
		handovers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_group_handovers_total",
			Help: "Planned moves of the group away from this node (switchover, standby, shutdown): stopped here, lease released."}, []string{"group"}),
		detect: h("tandem_group_takeover_detect_seconds", "Takeovers to this node: from the holder's last heartbeat to its failure being declared."),
		decide: h("tandem_group_takeover_decide_seconds", "Takeovers to this node: from the failure declared to the new placement applied."),
		start:  h("tandem_group_takeover_start_seconds", "Takeovers to this node: from the placement to every resource running (lease wait included)."),
		total:  h("tandem_group_takeover_total_seconds", "Takeovers to this node: detect + decide + start, the outage the clients saw."),
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_resource_operations_total",
			Help: "Resource operations finished on this node, by operation (start, stop, monitor, probe) and outcome (ok, not_running, failed, timeout)."},
			[]string{"group", "resource", "kind", "op", "outcome"}),
		opDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tandem_resource_operation_duration_seconds",
			Help:    "How long resource operations took on this node.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 30, 120}}, []string{"group", "resource", "op"}),
		lastDrill: map[string]float64{},
		drillDesc: prometheus.NewDesc("tandem_drill_last_success_timestamp_seconds",
			"When the last failover drill of the group that passed was recorded in this node's audit log (Unix time; 0: none in the log). Take the max over the nodes.",
			[]string{"group"}, nil),
	}
	for _, g := range groups {
		m.takeovers.WithLabelValues(g)
		m.handovers.WithLabelValues(g)
		m.detect.WithLabelValues(g)
		m.decide.WithLabelValues(g)
		m.start.WithLabelValues(g)
		m.total.WithLabelValues(g)
		m.lastDrill[g] = 0
	}
	return m
}

func (m *eventMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.takeovers, m.handovers, m.detect, m.decide, m.start, m.total, m.ops, m.opDur, drillCollector{m}}
}

// Publish takes the node's events (an events.Sink).
func (m *eventMetrics) Publish(e events.Event) {
	group := e.Group
	if group == "" {
		group = e.Subject
	}
	switch e.Kind {
	case events.Takeover:
		m.takeovers.WithLabelValues(group).Inc()
		ms := func(k string) (float64, bool) {
			v, ok := attrNumber(e.Attrs[k])
			return v / 1000, ok
		}
		detect, ok1 := ms("detect_ms")
		decide, ok2 := ms("decide_ms")
		start, ok3 := ms("start_ms")
		if ok1 {
			m.detect.WithLabelValues(group).Observe(detect)
		}
		if ok2 {
			m.decide.WithLabelValues(group).Observe(decide)
		}
		if ok3 {
			m.start.WithLabelValues(group).Observe(start)
		}
		if total, ok := ms("total_ms"); ok {
			m.total.WithLabelValues(group).Observe(total)
		} else if ok1 && ok2 && ok3 {
			m.total.WithLabelValues(group).Observe(detect + decide + start)
		}
	case events.Handover:
		m.handovers.WithLabelValues(group).Inc()
	case events.Drill:
		m.drill(e)
	}
}

func (m *eventMetrics) drill(e events.Event) {
	if r, _ := e.Attrs["result"].(string); r != "pass" {
		return
	}
	group := e.Group
	if group == "" {
		group = e.Subject
	}
	t := float64(e.Time.UnixNano()) / 1e9
	m.mu.Lock()
	if t > m.lastDrill[group] {
		m.lastDrill[group] = t
	}
	m.mu.Unlock()
}

// loadDrills reads the passed drills already in the audit log, so a
// restarted agent still knows when the last one was.
func (m *eventMetrics) loadDrills(path string) error {
	res, err := events.ScanFile(path, events.Filter{Kinds: []events.Kind{events.Drill}})
	for _, e := range res.Events {
		m.drill(e)
	}
	return err
}

func (m *eventMetrics) op(r manager.OpResult) {
	m.ops.WithLabelValues(r.Group, r.Resource, r.Kind, r.Op, r.Outcome).Inc()
	m.opDur.WithLabelValues(r.Group, r.Resource, r.Op).Observe(r.Took.Seconds())
}

// attrNumber reads a number from an event's attributes: an int64 when the
// event was made here, a float64 when it was read back from JSON.
func attrNumber(v any) (float64, bool) {
	switch x := v.(type) {
	case int64:
		return float64(x), true
	case int:
		return float64(x), true
	case float64:
		return x, !math.IsNaN(x)
	case time.Duration:
		return float64(x.Milliseconds()), true
	}
	return 0, false
}

// drillCollector exposes the last passed drill of each group.
type drillCollector struct{ m *eventMetrics }

func (d drillCollector) Describe(ch chan<- *prometheus.Desc) { ch <- d.m.drillDesc }

func (d drillCollector) Collect(ch chan<- prometheus.Metric) {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	for g, t := range d.m.lastDrill {
		ch <- prometheus.MustNewConstMetric(d.m.drillDesc, prometheus.GaugeValue, t, g)
	}
}
