package demo

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"tandem/internal/config"
	"time"
)

// Usage is a process's CPU share and resident memory over a window.
type Usage struct {
	CPUPercent float64 `json:"cpu_percent"` // of one core
	RSSMB      float64 `json:"rss_mb"`      // at the end of the window
}

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat; it is
// 100 on every Linux architecture tandem runs on.
const clockTicks = 100

func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("demo: short /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ut + st, nil
}

func rssMB(pid int) (float64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, err := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("demo: no VmRSS for %d", pid)
}

// measureIdle samples every agent's CPU time over d.
func (r *run) measureIdle(ctx context.Context, d time.Duration) (map[string]Usage, error) {
	// The baseline, measured in the same window: on each host a minimal Go
	// program that only sends and receives the same heartbeat datagrams
	// (one per peer every default heartbeat interval, the demo's timing;
	// nothing else) — what any Go heartbeat costs on this machine.
	procs := map[string]*exec.Cmd{}
	for h, cmd := range r.agents {
		procs[h] = cmd
	}
	hosts := []string{"node1", "node2", "witness"}
	for _, h := range hosts {
		args := []string{"heartbeat-floor", "--listen", r.env.addr(h) + ":17790", "--interval", config.DefaultHeartbeatInterval.String()}
		for _, o := range hosts {
			if o != h {
				args = append(args, "--peer", r.env.addr(o)+":17790")
			}
		}
		cmd := r.env.command(ctx, h, args...)
		cmd.SysProcAttr = childAttrs(false)
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("demo: start the baseline: %w", err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		procs["baseline-"+h] = cmd
	}
	time.Sleep(time.Second) // let the baselines settle
	start := map[string]int64{}
	for h, cmd := range procs {
		t, err := cpuTicks(cmd.Process.Pid)
		if err != nil {
			return nil, err
		}
		start[h] = t
	}
	t0 := time.Now()
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	el := time.Since(t0).Seconds()
	out := map[string]Usage{}
	for h, cmd := range procs {
		t, err := cpuTicks(cmd.Process.Pid)
		if err != nil {
			return nil, err
		}
		rss, err := rssMB(cmd.Process.Pid)
		if err != nil {
			return nil, err
		}
		out[h] = Usage{CPUPercent: 100 * float64(t-start[h]) / clockTicks / el, RSSMB: rss}
	}
	return out, nil
}
