package volume

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports a volume's status on /metrics.
type Collector struct {
	v *Volume
}

// NewCollector returns the collector of v's metrics.
func NewCollector(v *Volume) *Collector { return &Collector{v: v} }

var (
	labels      = []string{"volume"}
	descRole    = prometheus.NewDesc("tandem_volume_primary", "1 while this replica is primary.", labels, nil)
	descDisk    = prometheus.NewDesc("tandem_volume_disk_state", "This replica's disk state (1 for the current one).", []string{"volume", "state"}, nil)
	descPeer    = prometheus.NewDesc("tandem_volume_peer_disk_state", "The peer's disk state as last known (1 for the current one).", []string{"volume", "state"}, nil)
	descConn    = prometheus.NewDesc("tandem_volume_connected", "1 while the link to the peer is established and the handshake done.", labels, nil)
	descOOS     = prometheus.NewDesc("tandem_volume_out_of_sync_bytes", "Bytes the peer may lack (the dirty bitmap).", labels, nil)
	descLag     = prometheus.NewDesc("tandem_volume_replication_lag_bytes", "Async: bytes sent and not yet acknowledged by the peer.", labels, nil)
	descSusp    = prometheus.NewDesc("tandem_volume_io_suspended", "1 while client I/O waits for the peer to be outdated or to reconnect.", labels, nil)
	descResyncT = prometheus.NewDesc("tandem_volume_resync_total_bytes", "Bytes the running resync moves (0 when none runs).", labels, nil)
	descResyncD = prometheus.NewDesc("tandem_volume_resync_done_bytes", "Bytes the running resync moved so far.", labels, nil)
	descEpoch   = prometheus.NewDesc("tandem_volume_epoch", "The newest epoch this replica has seen.", labels, nil)
	descWrite   = prometheus.NewDesc("tandem_volume_write_latency_seconds", "Client write latency over the last 1024 writes.", []string{"volume", "quantile"}, nil)
	descDiskErr = prometheus.NewDesc("tandem_volume_disk_error", "1 once a metadata write failed and the disk was detached.", labels, nil)
)

func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRole, descDisk, descPeer, descConn, descOOS, descLag, descSusp, descResyncT, descResyncD, descEpoch, descWrite, descDiskErr} {
		ch <- d
	}
}

func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.v.Status()
	g := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{s.Name}, l...)...)
	}
	b := func(x bool) float64 {
		if x {
			return 1
		}
		return 0
	}
	g(descRole, b(s.Role == "Primary"))
	for _, st := range []string{"Diskless", "Inconsistent", "Outdated", "UpToDate"} {
		g(descDisk, b(s.Disk == st), st)
		g(descPeer, b(s.PeerDisk == st), st)
	}
	g(descConn, b(s.Connection == "Connected"))
	g(descOOS, float64(s.OutOfSync))
	g(descLag, float64(s.LagBytes))
	g(descSusp, b(s.Suspended != ""))
	g(descResyncT, float64(s.ResyncTotal))
	g(descResyncD, float64(s.ResyncDone))
	g(descEpoch, float64(s.Epoch))
	g(descWrite, float64(s.WriteP50us)/1e6, "0.5")
	g(descWrite, float64(s.WriteP99us)/1e6, "0.99")
	g(descDiskErr, b(s.DiskError != ""))
}
