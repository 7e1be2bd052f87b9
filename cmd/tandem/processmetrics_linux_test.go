package main

import (
	"math"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

func gatherValues(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		if g := m.GetGauge(); g != nil {
			out[mf.GetName()] = g.GetValue()
		} else {
			out[mf.GetName()] = m.GetCounter().GetValue()
		}
	}
	return out
}

// The lean process collector reports the standard one's metrics, with the
// same values (within what changes between two reads).
func TestMetricsProcessCollectorMatchesTheStandardOne(t *testing.T) {
	lean := gatherValues(t, newProcessCollector())
	std := gatherValues(t, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for name, want := range std {
		got, ok := lean[name]
		if !ok {
			t.Errorf("%s: missing (standard: %v)", name, want)
			continue
		}
		var tol float64
		switch name {
		case "process_cpu_seconds_total":
			tol = 0.5
		case "process_start_time_seconds":
			tol = 0.011
		case "process_open_fds":
			tol = 2
		case "process_resident_memory_bytes", "process_virtual_memory_bytes":
			tol = 0.2 * want
		case "process_network_receive_bytes_total", "process_network_transmit_bytes_total":
			tol = 1e6
		}
		if math.Abs(got-want) > tol {
			t.Errorf("%s = %v, standard collector %v", name, got, want)
		}
	}
	for name := range lean {
		if _, ok := std[name]; !ok {
			t.Errorf("%s: not a metric of the standard collector", name)
		}
	}
}

func TestMetricsParseSelfStat(t *testing.T) {
	line := []byte("4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 12345 1048576 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n")
	st, ok := parseSelfStat(line)
	if !ok || st.utime != 250 || st.stime != 75 || st.starttime != 12345 || st.vsize != 1048576 || st.rssPages != 300 {
		t.Fatalf("parseSelfStat = %+v, %v", st, ok)
	}
	if _, ok := parseSelfStat([]byte("4242 (x) S 1 2")); ok {
		t.Fatal("a short line parsed")
	}
}

func TestMetricsParseIPExtOctets(t *testing.T) {
	b := []byte("TcpExt: SyncookiesSent SyncookiesRecv\nTcpExt: 0 0\nIpExt: InNoRoutes InOctets OutOctets\nIpExt: 3 1000 2000\n")
	rx, tx, ok := parseIPExtOctets(b)
	if !ok || rx != 1000 || tx != 2000 {
		t.Fatalf("parseIPExtOctets = %v, %v, %v", rx, tx, ok)
	}
	if _, _, ok := parseIPExtOctets([]byte("IpExt: InOctets\nIpExt: 5\n")); ok {
		t.Fatal("parsed without OutOctets")
	}
}
