package testbed

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stress is a stress-ng run on the machine itself (outside the bed's
// namespaces: CPU, memory and the disk are shared by every host anyway).
// Its files go to dir, on the disk that holds the agents' state.
type stress struct {
	cmd  *exec.Cmd
	done chan error
	log  *os.File
}

// startStress runs stress-ng with args for at most d, at normal priority or,
// with realtime, under SCHED_RR at the daemons' priority.
func startStress(ctx context.Context, logf func(string, ...any), dir string, args []string, d time.Duration, realtime bool) (*stress, error) {
	if err := EnsureTools(ctx, logf, "stress-ng"); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	argv := append([]string{"stress-ng"}, args...)
	argv = append(argv, "--temp-path", dir, "--timeout", strconv.Itoa(int(d.Seconds()+1))+"s", "--metrics-brief")
	if realtime {
		argv = append([]string{"chrt", "-r", rtPriority}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	log, err := os.Create(filepath.Join(filepath.Dir(dir), "stress-ng.log"))
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "%s %s\n", time.Now().Format("15:04:05.000"), strings.Join(argv, " "))
	cmd.Stdout, cmd.Stderr = log, log
	if err := spawn(cmd); err != nil {
		log.Close()
		return nil, fmt.Errorf("testbed: start stress-ng: %w", err)
	}
	s := &stress{cmd: cmd, done: make(chan error, 1), log: log}
	go func() { s.done <- cmd.Wait() }()
	return s, nil
}

// Stop ends stress-ng (SIGINT: it removes its files) and waits for it.
func (s *stress) Stop() {
	defer s.log.Close()
	pg := -s.cmd.Process.Pid
	select {
	case <-s.done:
		return
	default:
	}
	syscall.Kill(pg, syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		syscall.Kill(pg, syscall.SIGKILL)
		<-s.done
	}
}

// hostWatch samples the load average, the CPU time shares and the timer
// wake-up lateness of a real-time and a normal thread.
type hostWatch struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	loads      []float64
	neighbours map[string]bool
	cpu0       cpuTimes
	load       HostLoad

	rt, normal *wakeupMeter
}

func watchHost(b *Bed) (*hostWatch, error) {
	ctx, cancel := context.WithCancel(context.Background())
	w := &hostWatch{cancel: cancel, neighbours: map[string]bool{}, cpu0: readCPUTimes()}
	w.load.LoadBefore = loadavg1()
	w.wg.Add(1)
	go w.sampleLoad(ctx)
	var err error
	if w.rt, err = startWakeups(b, true); err != nil {
		w.Stop()
		return nil, err
	}
	if w.normal, err = startWakeups(b, false); err != nil {
		w.Stop()
		return nil, err
	}
	return w, nil
}

func (w *hostWatch) sampleLoad(ctx context.Context) {
	defer w.wg.Done()
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for i := 0; ; i++ {
		w.mu.Lock()
		w.loads = append(w.loads, loadavg1())
		if i%6 == 0 {
			for _, n := range neighbours() {
				w.neighbours[n] = true
			}
		}
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// wakeupMeter runs `tandem bench wakeups` on the client host and collects
// what it prints.
type wakeupMeter struct {
	cmd  *exec.Cmd
	done chan struct{}

	mu      sync.Mutex
	stalls  []Stall
	summary Latency
}

// startWakeups starts the meter under SCHED_RR at the daemons' priority
// (realtime) or at normal priority.
func startWakeups(b *Bed, realtime bool) (*wakeupMeter, error) {
	var cmd *exec.Cmd
	if realtime {
		cmd = b.Command("client", b.Binary, "bench", "wakeups")
	} else {
		cmd = b.Host("client").NS.Command(context.Background(), b.Binary, "bench", "wakeups")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	m := &wakeupMeter{cmd: cmd, done: make(chan struct{})}
	if err := b.start(cmd); err != nil {
		return nil, fmt.Errorf("testbed: start the wake-up meter: %w", err)
	}
	go func() {
		defer close(m.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var rec struct {
				Stall   *Stall   `json:"stall"`
				Summary *Latency `json:"summary"`
			}
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				continue
			}
			m.mu.Lock()
			if rec.Stall != nil {
				m.stalls = append(m.stalls, *rec.Stall)
			}
			if rec.Summary != nil {
				m.summary = *rec.Summary
			}
			m.mu.Unlock()
		}
	}()
	return m, nil
}

// stop ends the meter and returns its figures.
func (m *wakeupMeter) stop() (Latency, []Stall) {
	if m == nil {
		return Latency{}, nil
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(5 * time.Second):
		m.cmd.Process.Kill()
		<-m.done
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.summary, m.stalls
}

// Stop ends the sampling and returns the figures.
func (w *hostWatch) Stop() HostLoad {
	w.cancel()
	w.wg.Wait()
	rt, stalls := w.rt.stop()
	normal, _ := w.normal.stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.load
	for _, v := range w.loads {
		l.LoadMean += v
		l.LoadMax = max(l.LoadMax, v)
	}
	if len(w.loads) > 0 {
		l.LoadMean = round1(l.LoadMean / float64(len(w.loads)))
	}
	d := readCPUTimes().minus(w.cpu0)
	if t := d.total(); t > 0 {
		l.BusyPct = round1(100 * float64(d.user+d.nice+d.system+d.irq+d.softirq) / float64(t))
		l.IOWaitPct = round1(100 * float64(d.iowait) / float64(t))
		l.StealPct = round1(100 * float64(d.steal) / float64(t))
	}
	l.RealtimeWake, l.NormalWake, l.Stalls = rt, normal, stalls
	for n := range w.neighbours {
		l.Neighbours = append(l.Neighbours, n)
	}
	sort.Strings(l.Neighbours)
	return l
}

func round1(v float64) float64 { return float64(int(v*10+0.5)) / 10 }

func loadavg1() float64 {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

type cpuTimes struct{ user, nice, system, idle, iowait, irq, softirq, steal uint64 }

func (c cpuTimes) total() uint64 {
	return c.user + c.nice + c.system + c.idle + c.iowait + c.irq + c.softirq + c.steal
}

func (c cpuTimes) minus(o cpuTimes) cpuTimes {
	return cpuTimes{c.user - o.user, c.nice - o.nice, c.system - o.system, c.idle - o.idle,
		c.iowait - o.iowait, c.irq - o.irq, c.softirq - o.softirq, c.steal - o.steal}
}

func readCPUTimes() cpuTimes {
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var v [8]uint64
	for i := range v {
		if i+1 < len(f) {
			v[i], _ = strconv.ParseUint(f[i+1], 10, 64)
		}
	}
	return cpuTimes{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]}
}

// neighbours names the other sessions' heavy work running now: test
// binaries, go test, stress-ng not started by this process.
func neighbours() []string {
	self := os.Getpid()
	seen := map[string]bool{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cl := cmdline(pid)
		f := strings.Fields(cl)
		if len(f) == 0 {
			continue
		}
		base := filepath.Base(f[0])
		switch {
		case strings.HasSuffix(base, ".test"):
			seen[base] = true
		case base == "go" && len(f) > 1 && f[1] == "test":
			seen["go test "+strings.Join(f[2:], " ")] = true
		case base == "stress-ng" && parentOf(pid) != self && !ownedBy(pid, self):
			seen["stress-ng (another session)"] = true
		}
	}
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// ownedBy reports whether pid descends from ancestor.
func ownedBy(pid, ancestor int) bool {
	for q, i := parentOf(pid), 0; q > 1 && i < 64; q, i = parentOf(q), i+1 {
		if q == ancestor {
			return true
		}
	}
	return false
}
