package volumecli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"tandem/internal/netutil"
)

// benchHosts are the bench's two hosts: network namespaces a and b on one
// bridge (veth pairs), running the tandem binary.
type benchHosts struct {
	dir  string
	bin  string
	lab  *netutil.Lab
	a, b *netutil.Host

	mu     sync.Mutex
	procs  []*benchProc
	closed bool
}

// benchProc is a process the bench started; done is closed once it exited.
type benchProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// benchNSBase starts the name of every namespace the bench creates; the
// pid follows, so a later run removes what a killed one left.
const benchNSBase = "tvb"

var (
	benchAddrA = netip.MustParseAddr("10.77.0.1")
	benchAddrB = netip.MustParseAddr("10.77.0.2")
)

func newBenchHosts(dir, bin string) (*benchHosts, error) {
	removeStaleBenchHosts()
	lab, err := netutil.NewLab(netutil.UniquePrefix(benchNSBase))
	if err != nil {
		return nil, fmt.Errorf("volume: bench: %w", err)
	}
	hb := &benchHosts{dir: dir, bin: bin, lab: lab}
	if hb.a, err = lab.AddHost("a", netip.PrefixFrom(benchAddrA, 24)); err == nil {
		hb.b, err = lab.AddHost("b", netip.PrefixFrom(benchAddrB, 24))
	}
	if err != nil {
		hb.close()
		return nil, fmt.Errorf("volume: bench: %w", err)
	}
	return hb, nil
}

// removeStaleBenchHosts kills what runs that died left running in their
// namespaces, then deletes the namespaces.
func removeStaleBenchHosts() {
	entries, _ := os.ReadDir(netutil.NamedDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), benchNSBase) && !netutil.OwnerAlive(strings.TrimPrefix(e.Name(), benchNSBase)) {
			for _, pid := range netutil.ProcessesIn(filepath.Join(netutil.NamedDir, e.Name())) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	netutil.RemoveStale(benchNSBase)
}

// start runs `tandem ARGS` on host h, its output appended to the log
// file name in the bench directory. The process dies with the bench.
func (hb *benchHosts) start(h *netutil.Host, log string, args ...string) (*benchProc, error) {
	out, err := os.OpenFile(filepath.Join(hb.dir, log), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := h.Command(context.Background(), hb.bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	hb.mu.Lock()
	defer hb.mu.Unlock()
	if hb.closed {
		return nil, errors.New("volume: bench: stopped")
	}
	if err := spawn(cmd); err != nil {
		return nil, fmt.Errorf("volume: bench: start %s on %s: %w", strings.Join(args, " "), h.Name, err)
	}
	p := &benchProc{cmd: cmd, done: make(chan struct{})}
	hb.procs = append(hb.procs, p)
	go func() { cmd.Wait(); close(p.done) }()
	return p, nil
}

// run runs `tandem ARGS` in this namespace and returns its output.
func (hb *benchHosts) run(args ...string) (string, error) {
	out, err := exec.Command(hb.bin, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("volume: bench: tandem %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// stop ends the process with SIGTERM (so an `up` writes its profile and
// closes its volume cleanly), SIGKILL after 10 s.
func (p *benchProc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// dial connects from host h to addr.
func dialFrom(h *netutil.Host, addr string) (net.Conn, error) {
	var c net.Conn
	err := h.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, 3*time.Second)
		return err
	})
	return c, err
}

// waitDial waits until addr accepts connections from h.
func waitDial(h *netutil.Host, addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := dialFrom(h, addr)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("volume: bench: %s does not answer from %s: %w", addr, h.Name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (hb *benchHosts) close() {
	hb.mu.Lock()
	hb.closed = true
	procs := hb.procs
	hb.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop() }()
	}
	wg.Wait()
	if hb.lab != nil {
		for _, h := range hb.lab.Hosts {
			for _, pid := range netutil.ProcessesIn(h.Path()) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		hb.lab.Close()
	}
}

// spawn starts cmd from one OS thread that lives as long as the process:
// Pdeathsig fires when the thread that forked the child ends, and Go ends
// the threads of goroutines that exit locked (every namespace switch).
func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked
			for f := range spawnCh {
				f()
			}
		}()
	})
	errc := make(chan error, 1)
	spawnCh <- func() { errc <- cmd.Start() }
	return <-errc
}

var (
	spawnOnce sync.Once
	spawnCh   chan func()
)
