package node

import (
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tandem/internal/config"
	"tandem/internal/events"
)

// fenceMetrics count this node's fence operations from its events (an
// events.Sink): every action against a node with the agent that ran it,
// and when each node was last confirmed off. Series of every configured
// (node, agent) exist from the start, at zero, so the TandemFenceFailed
// alert needs no first failure to exist.
type fenceMetrics struct {
	attempts *prometheus.CounterVec
	success  *prometheus.GaugeVec
	agents   map[string]string // device → agent name
}

// fenceAgentName is what a device runs, for the agent label.
func fenceAgentName(d config.FenceDevice) string {
	switch d.Kind {
	case config.FenceKindIPMI:
		return config.IPMIAgent
	case config.FenceKindAgent, config.FenceKindExec:
		return d.Agent
	}
	return d.Kind // webhook, watchdog
}

func newFenceMetrics(c *config.Config) *fenceMetrics {
	m := &fenceMetrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_fence_attempts_total",
			Help: "Fence actions this node ran against node target with fence agent agent (off, status, reboot), by result (ok, failed)."},
			[]string{"target", "agent", "result"}),
		success: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tandem_fence_last_success_timestamp_seconds",
			Help: "When this node last confirmed target off (Unix time; 0: not since the agent started)."}, []string{"target"}),
		agents: map[string]string{},
	}
	targets := map[string]bool{}
	for _, d := range c.FenceDevices {
		a := fenceAgentName(d)
		m.agents[d.Name] = a
		for _, n := range d.Nodes {
			m.attempts.WithLabelValues(n, a, "ok")
			m.attempts.WithLabelValues(n, a, "failed")
			targets[n] = true
		}
	}
	names := make([]string, 0, len(targets))
	for n := range targets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		m.success.WithLabelValues(n).Set(0)
	}
	return m
}

func (m *fenceMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.attempts, m.success}
}

// Publish takes the node's events.
func (m *fenceMetrics) Publish(e events.Event) {
	switch e.Kind {
	case events.FenceAttempt:
		dev, _ := e.Attrs["device"].(string)
		result, _ := e.Attrs["result"].(string)
		if result != "ok" {
			result = "failed"
		}
		agent := m.agents[dev]
		if agent == "" {
			agent = dev
		}
		m.attempts.WithLabelValues(e.Subject, agent, result).Inc()
	case events.FenceSucceeded:
		t := e.Time
		if t.IsZero() {
			t = time.Now()
		}
		m.success.WithLabelValues(e.Subject).Set(float64(t.UnixNano()) / 1e9)
	}
}
