package ocf

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"tandem/internal/config"
	"tandem/internal/resource/exec/proc/proctest"
)

// BenchmarkNginxStartStop measures what a failover or a switchover spends
// in the service itself: starting and stopping a real nginx through
// resource-agents' ocf:heartbeat:nginx, against nginx started and stopped
// by hand (nginx -c; nginx -s quit) in the same run. It reports the
// medians in ms and the ratios agent/hand.
//
//	go test -run '^$' -bench NginxStartStop -benchtime 20x ./internal/resource/ocf/
func BenchmarkNginxStartStop(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	if _, err := os.Stat(filepath.Join(DefaultRoot, "resource.d", "heartbeat", "nginx")); err != nil {
		b.Skip("resource-agents not installed")
	}
	nginx := nginxBinary()
	if nginx == "" {
		b.Skip("nginx not installed (Debian package nginx-light)")
	}
	dir, addr, conf := nginxConf(b)
	a, err := New("bench", config.OCF{Agent: "heartbeat/nginx", Params: map[string]string{"configfile": conf, "httpd": nginx}},
		proctest.Logger(b), WithMonitorInterval(10*time.Second))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	pidFile := filepath.Join(dir, "nginx.pid")
	var agentStart, agentStop, handStart, handStop []time.Duration
	served := func() {
		for deadline := time.Now().Add(5 * time.Second); refused("http://" + addr + "/"); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatal("nginx does not answer")
			}
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := a.Start(ctx); err != nil {
			b.Fatal(err)
		}
		served()
		agentStart = append(agentStart, time.Since(t0))
		t0 = time.Now()
		if err := a.Stop(ctx); err != nil {
			b.Fatal(err)
		}
		agentStop = append(agentStop, time.Since(t0))

		t0 = time.Now()
		if out, err := exec.Command(nginx, "-c", conf).CombinedOutput(); err != nil {
			b.Fatalf("nginx: %v: %s", err, out)
		}
		served()
		handStart = append(handStart, time.Since(t0))
		master := proctest.ReadPID(b, pidFile)
		t0 = time.Now()
		if out, err := exec.Command(nginx, "-c", conf, "-s", "quit").CombinedOutput(); err != nil {
			b.Fatalf("nginx -s quit: %v: %s", err, out)
		}
		proctest.WaitGroupGone(b, master)
		handStop = append(handStop, time.Since(t0))
	}
	b.StopTimer()
	med := func(ds []time.Duration) float64 { return float64(proctest.Median(ds).Microseconds()) / 1000 }
	b.ReportMetric(med(agentStart), "start_ms")
	b.ReportMetric(med(agentStop), "stop_ms")
	b.ReportMetric(med(handStart), "hand_start_ms")
	b.ReportMetric(med(handStop), "hand_stop_ms")
	b.ReportMetric(med(agentStart)/med(handStart), "start_ratio")
	b.ReportMetric(med(agentStop)/med(handStop), "stop_ratio")
}
