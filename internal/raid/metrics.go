package raid

import "github.com/prometheus/client_golang/prometheus"

// metrics exposes an array's health on the Registerer given in Options,
// computed from Status at scrape time (label array=NAME).
type metrics struct {
	a                                       *Array
	inSync, slots, degraded, progress, mism *prometheus.Desc
	repaired, readErrors                    *prometheus.Desc
}

func newMetrics(a *Array) *metrics {
	l := prometheus.Labels{"array": a.name}
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("tandem_raid_"+name, help, nil, l)
	}
	return &metrics{
		a:          a,
		inSync:     d("members_in_sync", "Slots holding an in-sync member."),
		slots:      d("members_slots", "Active slots of the array."),
		degraded:   d("degraded", "1 when a slot lacks an in-sync member."),
		progress:   d("rebuild_progress_ratio", "Fraction done of the running resync or rebuild (0 when none)."),
		mism:       d("mismatched_stripes", "Stripes found inconsistent by the last check."),
		repaired:   d("repaired_blocks_total", "Blocks rewritten from redundancy after a checksum failure or by repair."),
		readErrors: d("read_errors_total", "Member read errors."),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.inSync, m.slots, m.degraded, m.progress, m.mism, m.repaired, m.readErrors} {
		ch <- d
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	st := m.a.Status()
	deg, prog := 0.0, 0.0
	if st.InSync < st.Slots {
		deg = 1
	}
	if st.Progress != nil {
		prog = st.Progress.Fraction
	}
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	c := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	g(m.inSync, float64(st.InSync))
	g(m.slots, float64(st.Slots))
	g(m.degraded, deg)
	g(m.progress, prog)
	g(m.mism, float64(st.Mismatches))
	c(m.repaired, float64(st.Repaired))
	c(m.readErrors, float64(st.ReadErrors))
}
