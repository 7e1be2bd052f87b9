package node

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"tandem/internal/config"
	"tandem/internal/events"
)

// Fence events count by target, the device's agent and result; a
// confirmed fence sets the target's last success.
func TestFenceMetricsCountTheEvents(t *testing.T) {
	c := &config.Config{FenceDevices: []config.FenceDevice{
		{Name: "bmc2", Kind: config.FenceKindIPMI, Nodes: []string{"b"}},
		{Name: "pdu", Kind: config.FenceKindAgent, Agent: "fence_apc", Nodes: []string{"a", "b"}},
	}}
	m := newFenceMetrics(c)
	if n := countSeries(m.attempts); n != 6 {
		t.Fatalf("%d attempt series at start, want 6 (b with fence_ipmilan, a and b with fence_apc; ok and failed)", n)
	}
	m.Publish(events.Event{Kind: events.FenceAttempt, Subject: "b", Attrs: map[string]any{"device": "bmc2", "result": "ok"}})
	m.Publish(events.Event{Kind: events.FenceAttempt, Subject: "b", Attrs: map[string]any{"device": "bmc2", "result": "failed"}})
	m.Publish(events.Event{Kind: events.FenceAttempt, Subject: "b", Attrs: map[string]any{"device": "bmc2", "result": "failed"}})
	if v := value(m.attempts.WithLabelValues("b", "fence_ipmilan", "failed")); v != 2 {
		t.Errorf("failed attempts of b with fence_ipmilan: %v", v)
	}
	if v := value(m.success.WithLabelValues("b")); v != 0 {
		t.Errorf("last success before any: %v", v)
	}
	m.Publish(events.Event{Kind: events.FenceSucceeded, Subject: "b"})
	if v := value(m.success.WithLabelValues("b")); v == 0 {
		t.Error("a confirmed fence did not set the last success")
	}
}

func countSeries(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric, 100)
	c.Collect(ch)
	close(ch)
	return len(ch)
}

func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		return -1
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}
