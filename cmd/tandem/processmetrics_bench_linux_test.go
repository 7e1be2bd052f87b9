package main

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

func benchGather(b *testing.B, c prometheus.Collector) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	for i := 0; i < b.N; i++ {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkProcessCollectorLean(b *testing.B) { benchGather(b, newProcessCollector()) }
func BenchmarkProcessCollectorStandard(b *testing.B) {
	benchGather(b, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}
func BenchmarkGoCollector(b *testing.B) { benchGather(b, collectors.NewGoCollector()) }

func BenchmarkProcessReadNetstat(b *testing.B) {
	for i := 0; i < b.N; i++ {
		readIPExtOctets()
	}
}
func BenchmarkProcessReadStat(b *testing.B) {
	for i := 0; i < b.N; i++ {
		readSelfStat()
	}
}
func BenchmarkProcessCountFds(b *testing.B) {
	for i := 0; i < b.N; i++ {
		countOpenFds()
	}
}
