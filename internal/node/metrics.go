package node

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"tandem/internal/state"
)

// collector exposes the status as Prometheus metrics, computed at scrape
// time from the same snapshot `tandem status` shows. Every name is
// documented in docs/metrics.md (a test scrapes an agent and compares).
type collector struct {
	n                                      *Node
	quorum, leader, nodes                  *prometheus.Desc
	nodeUp, standby, maint                 *prometheus.Desc
	linkUp, linkRTT, linkLoss              *prometheus.Desc
	groupEpoch, groupHolder, groupRunning  *prometheus.Desc
	groupPhase, groupFailures, groupBanned *prometheus.Desc
	groupLastTakeover, localPhase          *prometheus.Desc
	resState, resCheck                     *prometheus.Desc
	guardDropped, guardLate                *prometheus.Desc
	volReplica                             *prometheus.Desc
	fenceUp, fenceChecked                  *prometheus.Desc
	all                                    []*prometheus.Desc
}

func newCollector(n *Node) *collector {
	c := &collector{n: n}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		desc := prometheus.NewDesc(name, help, labels, nil)
		c.all = append(c.all, desc)
		return desc
	}
	c.quorum = d("tandem_cluster_quorum", "1 when a raft leader is known (the cluster can decide).")
	c.leader = d("tandem_cluster_leader", "1 for the voter that leads raft, as this node sees it.", "node")
	c.nodes = d("tandem_cluster_nodes", "Voters configured (data nodes and the witness).")
	c.nodeUp = d("tandem_cluster_node_up", "1 when this node sees the voter alive.", "node")
	c.standby = d("tandem_cluster_node_standby", "1 when the node is in standby.", "node")
	c.maint = d("tandem_cluster_node_maintenance", "1 when the node is in maintenance.", "node")
	c.linkUp = d("tandem_cluster_link_up", "1 when the heartbeat link to the peer works both ways.", "peer", "link")
	c.linkRTT = d("tandem_cluster_link_rtt_seconds", "Smoothed heartbeat round-trip time.", "peer", "link")
	c.linkLoss = d("tandem_cluster_link_loss_ratio", "Share of the peer's last 20 heartbeats lost on the link.", "peer", "link")
	c.groupEpoch = d("tandem_group_epoch", "Epoch of the group (grows on every change of holder).", "group")
	c.groupHolder = d("tandem_group_holder", "1 for the node holding the group (no series while no node holds it).", "group", "node")
	c.groupRunning = d("tandem_group_running", "1 while the group's holder reports every resource running.", "group")
	c.groupPhase = d("tandem_group_phase", "1 for the phase the group's holder last reported (none while no node holds it).", "group", "phase")
	c.groupFailures = d("tandem_group_failures", "Active failures of the group counted against the node (placement bans the node at max_restarts).", "group", "node")
	c.groupBanned = d("tandem_group_banned", "1 when placement keeps the group off the node after failures (tandem cleanup clears).", "group", "node")
	c.groupLastTakeover = d("tandem_group_last_takeover_timestamp_seconds", "When the group's last failover (not a planned move) was recorded in the cluster state (Unix time; 0: never).", "group")
	c.localPhase = d("tandem_group_local_phase", "1 for the group's phase on this node, as its lifecycle last observed it.", "group", "phase")
	c.resState = d("tandem_resource_state", "1 for the state this node last observed of the resource (running, stopped, failed, unknown).", "group", "resource", "state")
	c.resCheck = d("tandem_resource_last_check_timestamp_seconds", "When this node last monitored or probed the resource (Unix time).", "group", "resource")
	c.guardDropped = d("tandem_vipguard_dropped_packets_total", "Packets to the group's VIPs the kernel guard turned away on this node since the agent started (on the holder: clients turned away by mistake; each such stretch is also a guard_drops event).", "group")
	c.guardLate = d("tandem_vipguard_late_refreshes_total", "Guard refreshes the kernel applied too late to trust: the VIP was silenced until the next renewal.", "group")
	c.volReplica = d("tandem_volume_recorded_disk_state", "The cluster's record of each replica's disk state (1 for the recorded one), as replicated by raft: what a takeover may promote.", "volume", "node", "state")
	c.fenceUp = d("tandem_fence_device_up", "1 when the fence device answered this node's last monitor (every 60 s), 0 when it did not (no series before the first).", "device")
	c.fenceChecked = d("tandem_fence_device_last_monitor_timestamp_seconds", "When this node last monitored the fence device (Unix time).", "device")
	return c
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.all {
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
	s := c.n.status() // without raft's statistics: no metric reads them
	g := prometheus.GaugeValue
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, g, v, labels...)
	}
	for _, d := range s.FenceDevices {
		if !d.Checked.IsZero() {
			gauge(c.fenceUp, b2f(d.OK), d.Name)
			gauge(c.fenceChecked, float64(d.Checked.UnixNano())/1e9, d.Name)
		}
	}
	for _, gr := range s.Groups {
		gauge(c.groupEpoch, float64(gr.Epoch), gr.Name)
		gauge(c.groupRunning, b2f(gr.Holder != "" && gr.Running), gr.Name)
		if gr.Holder != "" {
			phase := gr.Phase
			if phase == "" {
				phase = "unreported"
			}
			gauge(c.groupHolder, 1, gr.Name, gr.Holder)
			gauge(c.groupPhase, 1, gr.Name, phase)
		}
		last := 0.0
		if gr.Takeover != nil && !gr.Takeover.At.IsZero() {
			last = float64(gr.Takeover.At.UnixNano()) / 1e9
		}
		gauge(c.groupLastTakeover, last, gr.Name)
		banned := map[string]bool{}
		for _, b := range gr.Banned {
			banned[b] = true
		}
		for _, v := range c.n.voters {
			if c.n.cfg.IsWitness(v.Name) {
				continue
			}
			gauge(c.groupFailures, float64(gr.Failures[v.Name]), gr.Name, v.Name)
			gauge(c.groupBanned, b2f(banned[v.Name]), gr.Name, v.Name)
		}
	}
	for _, l := range s.Local {
		gauge(c.localPhase, 1, l.Name, l.Phase)
		ch <- prometheus.MustNewConstMetric(c.guardDropped, prometheus.CounterValue, float64(l.GuardDropped), l.Name)
		ch <- prometheus.MustNewConstMetric(c.guardLate, prometheus.CounterValue, float64(l.GuardLate), l.Name)
		for _, r := range l.Resources {
			gauge(c.resState, 1, l.Name, r.Name, r.State)
			if !r.LastCheck.IsZero() {
				gauge(c.resCheck, float64(r.LastCheck.UnixNano())/1e9, l.Name, r.Name)
			}
		}
	}
	gauge(c.quorum, b2f(s.Quorum))
	gauge(c.nodes, float64(len(s.Nodes)))
	for _, n := range s.Nodes {
		gauge(c.nodeUp, b2f(n.Up), n.Name)
		gauge(c.leader, b2f(n.Name == s.Leader), n.Name)
		gauge(c.standby, b2f(n.Standby), n.Name)
		gauge(c.maint, b2f(n.Maintenance), n.Name)
		for _, l := range n.Links {
			li := strconv.Itoa(l.Index)
			gauge(c.linkUp, b2f(l.Up), n.Name, li)
			gauge(c.linkRTT, l.RTT/1000, n.Name, li)
			gauge(c.linkLoss, l.Loss, n.Name, li)
		}
	}
	for _, v := range s.Volumes {
		for node, r := range v.Replicas {
			for _, st := range state.Disks {
				gauge(c.volReplica, b2f(r.Disk == st), v.Name, node, st)
			}
		}
	}
}
