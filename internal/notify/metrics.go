package notify

import "github.com/prometheus/client_golang/prometheus"

// metrics count what each target (exec, webhook) did.
type metrics struct {
	sent     *prometheus.CounterVec
	failures *prometheus.CounterVec
	dropped  *prometheus.CounterVec
	queued   *prometheus.GaugeVec
}

func newMetrics() *metrics {
	return &metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_notify_sent_total",
			Help: "Notifications delivered, by target (exec, webhook)."}, []string{"target"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_notify_failures_total",
			Help: "Notification attempts that failed (each retry counts), by target."}, []string{"target"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_notify_dropped_total",
			Help: "Notifications given up, by target and reason (queue_full: the oldest made room; failed: out of retries; stopped: the agent stopped)."},
			[]string{"target", "reason"}),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tandem_notify_queued",
			Help: "Notifications waiting, by target."}, []string{"target"}),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.sent.Describe(ch)
	m.failures.Describe(ch)
	m.dropped.Describe(ch)
	m.queued.Describe(ch)
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.sent.Collect(ch)
	m.failures.Collect(ch)
	m.dropped.Collect(ch)
	m.queued.Collect(ch)
}
