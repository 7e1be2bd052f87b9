package main

import (
	"bytes"
	"os"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// processCollector is the standard process collector's documented metrics
// (docs/metrics.md) at a fraction of its cost per scrape: it reads
// /proc/self/stat, counts /proc/self/fd, asks getrlimit, and picks the two
// IpExt octet counters out of /proc/self/net/netstat by hand; the start
// time is worked out once. The standard one parses /proc/stat,
// /proc/self/limits and all of netstat into maps on every scrape, about 40 %
// of an idle agent's scrape (docs/benchmarks.md, issue 14).
type processCollector struct {
	cpu, rss, vsize, vsizeMax, fds, maxFds, start, netRx, netTx *prometheus.Desc
	startTime                                                   float64
}

// userHZ is the kernel's USER_HZ, the unit of /proc's CPU times: 100 on
// every Linux architecture Go supports (the standard collector assumes it too).
const userHZ = 100

func newProcessCollector() prometheus.Collector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	c := &processCollector{
		cpu:      d("process_cpu_seconds_total", "Total user and system CPU time spent in seconds."),
		rss:      d("process_resident_memory_bytes", "Resident memory size in bytes."),
		vsize:    d("process_virtual_memory_bytes", "Virtual memory size in bytes."),
		vsizeMax: d("process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes."),
		fds:      d("process_open_fds", "Number of open file descriptors."),
		maxFds:   d("process_max_fds", "Maximum number of open file descriptors."),
		start:    d("process_start_time_seconds", "Start time of the process since unix epoch in seconds."),
		netRx:    d("process_network_receive_bytes_total", "Number of bytes received by the process over the network."),
		netTx:    d("process_network_transmit_bytes_total", "Number of bytes sent by the process over the network."),
	}
	c.startTime = processStartTime()
	return c
}

func (c *processCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.cpu, c.rss, c.vsize, c.vsizeMax, c.fds, c.maxFds, c.start, c.netRx, c.netTx} {
		ch <- d
	}
}

func (c *processCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	if st, ok := readSelfStat(); ok {
		counter(c.cpu, float64(st.utime+st.stime)/userHZ)
		gauge(c.vsize, float64(st.vsize))
		gauge(c.rss, float64(st.rssPages*int64(os.Getpagesize())))
	}
	if c.startTime > 0 {
		gauge(c.start, c.startTime)
	}
	if n, err := countOpenFds(); err == nil {
		gauge(c.fds, float64(n))
	}
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil {
		gauge(c.maxFds, float64(lim.Cur))
	}
	if unix.Getrlimit(unix.RLIMIT_AS, &lim) == nil {
		gauge(c.vsizeMax, float64(lim.Cur))
	}
	if rx, tx, ok := readIPExtOctets(); ok {
		counter(c.netRx, rx)
		counter(c.netTx, tx)
	}
}

type selfStat struct {
	utime, stime, starttime, vsize, rssPages int64
}

// readSelfStat parses /proc/self/stat (proc(5)): the fields after the
// command's closing parenthesis, state being field 3.
func readSelfStat() (selfStat, bool) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return selfStat{}, false
	}
	return parseSelfStat(b)
}

func parseSelfStat(b []byte) (selfStat, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return selfStat{}, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 22 {
		return selfStat{}, false
	}
	field := func(n int) int64 { v, _ := strconv.ParseInt(string(f[n-3]), 10, 64); return v }
	return selfStat{utime: field(14), stime: field(15), starttime: field(22), vsize: field(23), rssPages: field(24)}, true
}

// processStartTime is the boot time (btime in /proc/stat) plus the
// process's start in ticks after boot; 0 when either cannot be read.
func processStartTime() float64 {
	st, ok := readSelfStat()
	b, err := os.ReadFile("/proc/stat")
	if !ok || err != nil {
		return 0
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if rest, found := bytes.CutPrefix(line, []byte("btime ")); found {
			btime, err := strconv.ParseInt(string(bytes.TrimSpace(rest)), 10, 64)
			if err != nil {
				return 0
			}
			return float64(btime) + float64(st.starttime)/userHZ
		}
	}
	return 0
}

func countOpenFds() (int, error) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	defer d.Close()
	n := 0
	for {
		names, err := d.Readdirnames(256)
		n += len(names)
		if err != nil || len(names) == 0 {
			// The count includes the descriptor reading the directory,
			// as the standard collector's does.
			return n, nil
		}
	}
}

// readIPExtOctets is InOctets and OutOctets of the IpExt lines of
// /proc/self/net/netstat (a header line of names, then a line of values):
// what the standard collector reports as process_network_*.
func readIPExtOctets() (rx, tx float64, ok bool) {
	b, err := os.ReadFile("/proc/self/net/netstat")
	if err != nil {
		return 0, 0, false
	}
	return parseIPExtOctets(b)
}

func parseIPExtOctets(b []byte) (rx, tx float64, ok bool) {
	var names [][]byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		rest, found := bytes.CutPrefix(line, []byte("IpExt:"))
		if !found {
			continue
		}
		if names == nil {
			names = bytes.Fields(rest)
			continue
		}
		vals := bytes.Fields(rest)
		var gotRx, gotTx bool
		for i, name := range names {
			if i >= len(vals) {
				break
			}
			switch string(name) {
			case "InOctets":
				rx, gotRx = parseFloat(vals[i])
			case "OutOctets":
				tx, gotTx = parseFloat(vals[i])
			}
		}
		return rx, tx, gotRx && gotTx
	}
	return 0, 0, false
}

func parseFloat(b []byte) (float64, bool) {
	v, err := strconv.ParseFloat(string(b), 64)
	return v, err == nil
}
