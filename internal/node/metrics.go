package node

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// collector exposes the status as Prometheus metrics, computed at scrape
// time from the same snapshot `tandem status` shows.
type collector struct {
	n                                          *Node
	groupEpoch, groupActive, nodeUp, linkUp    *prometheus.Desc
	linkRTT, linkLoss, quorum, leader, standby *prometheus.Desc
	localPhase, resState, resCheck             *prometheus.Desc
	guardDropped, guardLate                    *prometheus.Desc
}

func newCollector(n *Node) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &collector{n: n,
		groupEpoch:   d("tandem_group_epoch", "Epoch of the group (grows on every change of holder).", "group"),
		groupActive:  d("tandem_group_active", "1 for the node holding the group; running is true and phase is running only while its holder reports every resource running.", "group", "node", "running", "phase"),
		localPhase:   d("tandem_group_local_phase", "1 for the group's phase on this node, as its lifecycle last observed it.", "group", "phase"),
		resState:     d("tandem_resource_state", "1 for the state this node last observed of the resource (running, stopped, failed, unknown).", "group", "resource", "state"),
		resCheck:     d("tandem_resource_last_check_timestamp_seconds", "When this node last monitored or probed the resource (Unix time).", "group", "resource"),
		guardDropped: d("tandem_vipguard_dropped_packets_total", "Packets to the group's VIPs the kernel guard turned away on this node since the agent started (on the holder: clients turned away by mistake; each such stretch is also a guard_drops event).", "group"),
		guardLate:    d("tandem_vipguard_late_refreshes_total", "Guard refreshes the kernel applied too late to trust: the VIP was silenced until the next renewal.", "group"),
		nodeUp:       d("tandem_node_up", "1 when this node sees the voter alive.", "node"),
		linkUp:       d("tandem_link_up", "1 when the heartbeat link to the peer works both ways.", "peer", "link"),
		linkRTT:      d("tandem_link_rtt_seconds", "Smoothed heartbeat round-trip time.", "peer", "link"),
		linkLoss:     d("tandem_link_loss_ratio", "Share of the peer's last 20 heartbeats lost on the link.", "peer", "link"),
		quorum:       d("tandem_quorum", "1 when a raft leader is known (the cluster can decide)."),
		leader:       d("tandem_raft_leader", "1 for the voter that leads raft, as this node sees it.", "node"),
		standby:      d("tandem_node_standby", "1 when the node is in standby.", "node"),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.groupEpoch, c.groupActive, c.nodeUp, c.linkUp, c.linkRTT, c.linkLoss, c.quorum, c.leader, c.standby,
		c.localPhase, c.resState, c.resCheck, c.guardDropped, c.guardLate} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.n.Status()
	g := prometheus.GaugeValue
	for _, gr := range s.Groups {
		ch <- prometheus.MustNewConstMetric(c.groupEpoch, g, float64(gr.Epoch), gr.Name)
		if gr.Holder != "" {
			phase := gr.Phase
			if phase == "" {
				phase = "unreported"
			}
			ch <- prometheus.MustNewConstMetric(c.groupActive, g, 1, gr.Name, gr.Holder, strconv.FormatBool(gr.Running), phase)
		}
	}
	for _, l := range s.Local {
		ch <- prometheus.MustNewConstMetric(c.localPhase, g, 1, l.Name, l.Phase)
		ch <- prometheus.MustNewConstMetric(c.guardDropped, prometheus.CounterValue, float64(l.GuardDropped), l.Name)
		ch <- prometheus.MustNewConstMetric(c.guardLate, prometheus.CounterValue, float64(l.GuardLate), l.Name)
		for _, r := range l.Resources {
			ch <- prometheus.MustNewConstMetric(c.resState, g, 1, l.Name, r.Name, r.State)
			if !r.LastCheck.IsZero() {
				ch <- prometheus.MustNewConstMetric(c.resCheck, g, float64(r.LastCheck.UnixNano())/1e9, l.Name, r.Name)
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(c.quorum, g, b2f(s.Quorum))
	for _, n := range s.Nodes {
		ch <- prometheus.MustNewConstMetric(c.nodeUp, g, b2f(n.Up), n.Name)
		ch <- prometheus.MustNewConstMetric(c.leader, g, b2f(n.Name == s.Leader), n.Name)
		ch <- prometheus.MustNewConstMetric(c.standby, g, b2f(n.Standby), n.Name)
		for _, l := range n.Links {
			li := strconv.Itoa(l.Index)
			ch <- prometheus.MustNewConstMetric(c.linkUp, g, b2f(l.Up), n.Name, li)
			ch <- prometheus.MustNewConstMetric(c.linkRTT, g, l.RTT/1000, n.Name, li)
			ch <- prometheus.MustNewConstMetric(c.linkLoss, g, l.Loss, n.Name, li)
		}
	}
}
