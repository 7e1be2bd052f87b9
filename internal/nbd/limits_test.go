package nbd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tandem/internal/blockdev"
	"tandem/internal/nbd/wire"
)

// rss returns the process's resident memory, or -1 where /proc is not.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return -1
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// tcpSession opens a raw NBD session on export over TCP.
func tcpSession(t testing.TB, ts *testServer, export string) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.Dial("tcp", ts.tcp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	br := bufio.NewReader(nc)
	if _, err := clientGreeting(nc, br); err != nil {
		t.Fatal(err)
	}
	if _, err := clientInfo(nc, br, wire.OptGo, export); err != nil {
		t.Fatal(err)
	}
	return nc, br
}

// sendReads sends n READs of size bytes and never reads a reply.
func sendReads(t testing.TB, nc net.Conn, n int, size uint32, devSize int64) {
	var b []byte
	for i := range n {
		off := uint64(i) * uint64(size) % uint64(devSize-int64(size)+1)
		b = wire.AppendRequest(b, wire.Request{Type: wire.CmdRead, Handle: uint64(i), Offset: off &^ 4095, Length: size})
	}
	nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write(b); err != nil {
		t.Errorf("sending reads: %v", err)
	}
}

// peak samples f every few milliseconds until stop is closed and returns
// the largest value seen.
func peak(f func() int64, stop <-chan struct{}) <-chan int64 {
	out := make(chan int64, 1)
	go func() {
		var m int64
		for {
			m = max(m, f())
			select {
			case <-stop:
				out <- max(m, f())
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return out
}

func inFlight(s *Server) int64 { v, _ := s.mem.stats(); return v }

// TestMisbehavingClientsStayWithinMemoryBound: 30 TCP clients send 4 MiB
// reads and never read a reply. Before the server-wide budget each could
// pin 64 MiB (30 × 64 MiB ≈ 2 GB, issue 10); now all of them together hold
// at most MaxMemory, a well-behaved client is still served at once from
// its reserve, and when the bad clients go the memory goes back to the
// system.
func TestMisbehavingClientsStayWithinMemoryBound(t *testing.T) {
	if testing.Short() {
		t.Skip("moves a few hundred MiB")
	}
	const (
		bad       = 30
		maxMemory = 128 << 20
		devSize   = 16 << 20
	)
	dev := blockdev.NewMem(devSize)
	dev.WriteAt(pattern(devSize, 3), 0) // resident before the baseline
	ts := startServerWith(t, func(s *Server) error {
		// A stall timeout far beyond the test: memory must be bounded by
		// the budget, not by clients being cut off.
		return s.SetLimits(Limits{MaxConns: bad + 4, MaxMemory: maxMemory, StallTimeout: time.Minute})
	}, Export{Name: "vol", Device: dev})
	reserve := ts.Limits().reserve()
	good, err := Dial(context.Background(), "tcp", ts.tcp, "vol")
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	buf := make([]byte, 1<<20)
	if _, err := good.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	baseRSS := rss()

	stop := make(chan struct{})
	peakFlight := peak(func() int64 { return inFlight(ts.Server) }, stop)
	peakAlloc := peak(allocatedBytes.Load, stop)
	peakRSS := peak(rss, stop)
	var conns []net.Conn
	var wg sync.WaitGroup
	for range bad {
		nc, _ := tcpSession(t, ts, "vol")
		conns = append(conns, nc)
		wg.Go(func() { sendReads(t, nc, 64, 4<<20, devSize) })
	}
	wg.Wait()
	// Let the server read what it will and pin what it can: until what
	// is in flight stops growing.
	for last, still, deadline := int64(-1), 0, time.Now().Add(10*time.Second); still < 5 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		if v := inFlight(ts.Server); v == last {
			still++
		} else {
			last, still = v, 0
		}
	}
	t.Logf("bad clients pin %d MiB of payload (reserve %d KiB each)", inFlight(ts.Server)>>20, reserve>>10)

	// The good client, and a new one, are served while they do, within
	// their reserves.
	want := pattern(int(min(reserve, 1<<20)), 9)
	served := make(chan error, 1)
	go func() {
		late, err := Dial(context.Background(), "tcp", ts.tcp, "vol")
		if err != nil {
			served <- err
			return
		}
		defer late.Close()
		if _, err := late.ReadAt(make([]byte, 256<<10), 0); err != nil {
			served <- err
			return
		}
		if _, err := good.WriteAt(want, 8<<20); err != nil {
			served <- err
			return
		}
		got := make([]byte, len(want))
		if _, err := good.ReadAt(got, 8<<20); err != nil {
			served <- err
			return
		}
		if !bytes.Equal(got, want) {
			served <- errors.New("read back other data")
		}
		served <- nil
	}()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("good client: %v", err)
		}
	case <-time.After(5 * time.Second):
		pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		t.Fatal("good client not served while bad clients pin memory")
	}

	for _, nc := range conns {
		nc.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for (inFlight(ts.Server) > 0 || allocatedBytes.Load() > poolBytes) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	pf, pa, pr := <-peakFlight, <-peakAlloc, <-peakRSS
	afterRSS := rss()
	t.Logf("peak payload in flight %d MiB (bound %d), peak allocated %d MiB, RSS %d MiB → peak %d MiB → after %d MiB",
		pf>>20, maxMemory>>20, pa>>20, baseRSS>>20, pr>>20, afterRSS>>20)
	if pf > maxMemory {
		t.Errorf("payload in flight peaked at %d MiB, over the %d MiB bound", pf>>20, maxMemory>>20)
	}
	if pa > maxMemory+poolBytes {
		t.Errorf("payload allocated peaked at %d MiB, over the bound %d + pool %d MiB", pa>>20, maxMemory>>20, poolBytes>>20)
	}
	if got := inFlight(ts.Server); got != 0 {
		t.Errorf("%d bytes still in flight after the bad clients left", got)
	}
	if got := allocatedBytes.Load(); got > poolBytes {
		t.Errorf("%d MiB of payload still allocated after the bad clients left, more than the %d MiB pool", got>>20, poolBytes>>20)
	}
	// Resident memory: the budget plus the pool plus goroutines and
	// runtime slack while they were there, and back within the pool and
	// slack after.
	const slack = 48 << 20
	if baseRSS > 0 {
		if pr-baseRSS > maxMemory+poolBytes+slack {
			t.Errorf("RSS grew by %d MiB with the bad clients, bound %d MiB", (pr-baseRSS)>>20, (maxMemory+poolBytes+slack)>>20)
		}
		if afterRSS-baseRSS > poolBytes+slack {
			t.Errorf("RSS still %d MiB above the baseline after the bad clients left", (afterRSS-baseRSS)>>20)
		}
	}
	good.Close()
	deadline = time.Now().Add(5 * time.Second)
	for allocatedBytes.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := allocatedBytes.Load(); got != 0 {
		t.Errorf("%d bytes of payload allocated with no connection left", got)
	}
}

// TestStalledClientsAreCutOff: clients that send reads and never read the
// replies lose their connections after StallTimeout, without closing them
// themselves, and the memory they pinned is released.
func TestStalledClientsAreCutOff(t *testing.T) {
	const devSize = 8 << 20
	ts := startServerWith(t, func(s *Server) error {
		return s.SetLimits(Limits{StallTimeout: 400 * time.Millisecond})
	}, Export{Name: "vol", Device: blockdev.NewMem(devSize)})
	reg := prometheus.NewRegistry()
	if err := ts.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	var brs []*bufio.Reader
	var ncs []net.Conn
	for range 5 {
		nc, br := tcpSession(t, ts, "vol")
		sendReads(t, nc, 32, 1<<20, devSize)
		ncs, brs = append(ncs, nc), append(brs, br)
	}
	deadline := time.Now().Add(5 * time.Second)
	for inFlight(ts.Server) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if inFlight(ts.Server) == 0 {
		t.Fatal("the stalled clients pinned nothing; the test proves nothing")
	}
	deadline = time.Now().Add(10 * time.Second)
	for inFlight(ts.Server) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := inFlight(ts.Server); got > 0 {
		t.Fatalf("stalled clients still pin %d bytes", got)
	}
	if got := counterValue(t, reg, "tandem_nbd_connections_timed_out_total", "stall"); got != 5 {
		t.Errorf("timed out (stall) = %v, want 5", got)
	}
	for i := range ncs {
		waitClosed(t, "stalled client", ncs[i], brs[i])
	}
}

// TestIdleTimeout: with IdleTimeout set, a connection that sends nothing is
// closed, but not one whose request is still running.
func TestIdleTimeout(t *testing.T) {
	dev := newHookDev(1 << 20)
	release := make(chan struct{})
	ts := startServerWith(t, func(s *Server) error {
		return s.SetLimits(Limits{IdleTimeout: 300 * time.Millisecond})
	}, Export{Name: "vol", Device: dev})
	reg := prometheus.NewRegistry()
	if err := ts.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	idle, idleBR := tcpSession(t, ts, "vol")
	start := time.Now()
	waitClosed(t, "idle client", idle, idleBR)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("idle client closed after %v, timeout 300ms", d)
	}

	// A request that runs for three idle timeouts keeps its connection.
	dev.mu.Lock()
	dev.onRead = func(int64) error { <-release; return nil }
	dev.mu.Unlock()
	busy := dial(t, "tcp", ts.tcp, "vol")
	done := make(chan error, 1)
	go func() { _, err := busy.ReadAt(make([]byte, 4096), 0); done <- err }()
	time.Sleep(900 * time.Millisecond)
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("a client waiting on a slow request was cut off: %v", err)
	}
	// Idleness counts from the answer: half a timeout after it the
	// connection still serves (it was cut up to a whole timeout early when
	// the deadline armed during the request ran out just after the answer).
	time.Sleep(150 * time.Millisecond)
	if _, err := busy.ReadAt(make([]byte, 4096), 0); err != nil {
		t.Fatalf("a client was cut off less than the idle timeout after its answer: %v", err)
	}
	if got := counterValue(t, reg, "tandem_nbd_connections_timed_out_total", "idle"); got != 1 {
		t.Errorf("timed out (idle) = %v, want 1", got)
	}
}

// TestMaxConns: connections over the limit are refused with
// NBD_REP_ERR_POLICY and a reason; once one closes, a new one gets in.
func TestMaxConns(t *testing.T) {
	ts := startServerWith(t, func(s *Server) error {
		return s.SetLimits(Limits{MaxConns: 2})
	}, Export{Name: "vol", Device: blockdev.NewMem(1 << 20)})
	reg := prometheus.NewRegistry()
	if err := ts.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	a := dial(t, "tcp", ts.tcp, "vol")
	dial(t, "unix", ts.sock, "vol")
	_, err := Dial(context.Background(), "tcp", ts.tcp, "vol")
	var oe *OptError
	if !errors.As(err, &oe) || oe.Type != wire.RepErrPolicy || !strings.Contains(oe.Message, "too many connections") {
		t.Fatalf("third connection: got %v, want NBD_REP_ERR_POLICY: too many connections", err)
	}
	if got := counterValue(t, reg, "tandem_nbd_connections_refused_total", "full"); got != 1 {
		t.Errorf("refused = %v, want 1", got)
	}
	a.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := Dial(context.Background(), "tcp", ts.tcp, "vol")
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no room after a client left: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLimitsValidate(t *testing.T) {
	if err := (Limits{}).Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	err := Limits{MaxConns: -1, MaxMemory: 1 << 20, ConnMemory: 10, IdleTimeout: -time.Second}.Validate()
	for _, want := range []string{"max connections", "max memory", "connection memory", "timeouts"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v; want it to mention %q", err, want)
		}
	}
	// Every valid request fits: the largest one in a reserve and the
	// shared part, whatever the connection count.
	for _, l := range []Limits{{}, {MaxConns: 1000, MaxMemory: 64 << 20}, {MaxConns: 1, MaxMemory: 64 << 20, ConnMemory: 1 << 30}} {
		l = l.withDefaults()
		shared := l.MaxMemory - int64(l.MaxConns)*l.reserve()
		if l.reserve()+shared < MaxPayload || l.connLimit() > l.reserve()+shared || shared < 0 {
			t.Errorf("%+v: reserve %d shared %d conn limit %d", l, l.reserve(), shared, l.connLimit())
		}
	}
}
