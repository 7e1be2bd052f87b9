package nbd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tandem/internal/blockdev"
	"tandem/internal/nbd/wire"
)

func dial(t testing.TB, network, addr, export string) *Client {
	t.Helper()
	c, err := Dial(context.Background(), network, addr, export)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rawSession completes the handshake by hand and hands back the socket,
// for tests that then misbehave on the wire.
func rawSession(t testing.TB, ts *testServer, export string) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.Dial("unix", ts.sock)
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

// waitClosed reads until the server hangs up; it fails the test if the
// server does not within 10 s (it should at once).
func waitClosed(t testing.TB, what string, nc net.Conn, br *bufio.Reader) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	// A reset is a hang-up too: the server closed with our bytes unread.
	if _, err := io.Copy(io.Discard, br); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("%s: server did not hang up: %v", what, err)
	}
}

func pattern(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	r.Read(b)
	return b
}

func wantErrno(t testing.TB, what string, err error, want uint32) {
	t.Helper()
	var e Errno
	if !errors.As(err, &e) || uint32(e) != want {
		t.Errorf("%s: got %v, want errno %d", what, err, want)
	}
}

func TestReadWriteOverUnixAndTCP(t *testing.T) {
	dev := blockdev.NewMem(40 << 20)
	ts := startServer(t, Export{Name: "vol", Device: dev})
	for _, c := range []*Client{dial(t, "unix", ts.sock, "vol"), dial(t, "tcp", ts.tcp, "vol")} {
		if c.Size() != 40<<20 {
			t.Fatalf("size %d", c.Size())
		}
		// Unaligned, small, and larger than one request (the client splits).
		for i, w := range []struct{ off, n int }{{0, 512}, {12345, 777}, {1 << 20, 4096}, {3 << 20, MaxPayload + 8192}} {
			data := pattern(w.n, uint64(i))
			if _, err := c.WriteAt(data, int64(w.off)); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, w.n)
			if _, err := c.ReadAt(got, int64(w.off)); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read back %d@%d: %v", w.n, w.off, err)
			}
			direct := make([]byte, w.n)
			dev.ReadAt(direct, int64(w.off))
			if !bytes.Equal(direct, data) {
				t.Fatalf("device does not hold %d@%d", w.n, w.off)
			}
		}
	}
}

func TestFUAAndFlushMakeWritesDurable(t *testing.T) {
	dev := blockdev.NewMem(1 << 20)
	ts := startServer(t, Export{Name: "vol", Device: dev})
	c := dial(t, "unix", ts.sock, "vol")
	a, b, z := pattern(4096, 1), pattern(4096, 2), pattern(4096, 3)
	if _, err := c.WriteAtFUA(a, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteAt(b, 4096); err != nil {
		t.Fatal(err)
	}
	crash := make([]byte, 8192)
	dev.Crash().ReadAt(crash, 0)
	if !bytes.Equal(crash[:4096], a) {
		t.Fatal("acknowledged FUA write lost in a crash")
	}
	if bytes.Equal(crash[4096:], b) {
		t.Fatal("plain write already durable: the server flushed without being asked")
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteAt(z, 8192); err != nil { // after the flush: not covered
		t.Fatal(err)
	}
	dev.Crash().ReadAt(crash, 0)
	if !bytes.Equal(crash[4096:], b) {
		t.Fatal("write acknowledged before NBD_CMD_FLUSH lost in a crash")
	}
}

func TestRequestErrors(t *testing.T) {
	ts := startServer(t,
		Export{Name: "vol", Device: blockdev.NewMem(1 << 20)},
		Export{Name: "ro", Device: blockdev.NewMem(1 << 20), ReadOnly: true},
		Export{Name: "aligned", Device: blockdev.NewMem(1 << 20), MinBlockSize: 512})
	c := dial(t, "unix", ts.sock, "vol")
	buf := make([]byte, MaxPayload+1)
	const end = 1 << 20
	cases := []struct {
		name        string
		cmd, flags  uint16
		off         int64
		n           uint32
		errno       uint32
		exportRO    bool
		exportAlign bool
	}{
		{name: "read past end", cmd: wire.CmdRead, off: end - 1, n: 2, errno: wire.EINVAL},
		{name: "write past end", cmd: wire.CmdWrite, off: end, n: 1, errno: wire.EINVAL},
		{name: "trim past end", cmd: wire.CmdTrim, off: 0, n: end + 1, errno: wire.EINVAL},
		{name: "zeroes past end", cmd: wire.CmdWriteZeroes, off: end - 4096, n: 8192, errno: wire.EINVAL},
		{name: "offset wraps", cmd: wire.CmdRead, off: -1, n: 2, errno: wire.EINVAL},
		{name: "read above max payload", cmd: wire.CmdRead, n: MaxPayload + 1, errno: wire.EINVAL},
		{name: "unknown command", cmd: 99, errno: wire.EINVAL},
		{name: "cache not offered", cmd: wire.CmdCache, n: 4096, errno: wire.EINVAL},
		{name: "block status not negotiated", cmd: wire.CmdBlockStatus, n: 4096, errno: wire.EINVAL},
		{name: "DF without structured replies", cmd: wire.CmdRead, flags: wire.CmdFlagDF, n: 512, errno: wire.EINVAL},
		{name: "NO_HOLE on a write", cmd: wire.CmdWrite, flags: wire.CmdFlagNoHole, n: 512, errno: wire.EINVAL},
		{name: "FAST_ZERO not offered", cmd: wire.CmdWriteZeroes, flags: wire.CmdFlagFastZero, n: 512, errno: wire.EINVAL},
		{name: "unknown flag", cmd: wire.CmdFlush, flags: 1 << 9, errno: wire.EINVAL},
		{name: "write to read-only", cmd: wire.CmdWrite, n: 512, errno: wire.EPERM, exportRO: true},
		{name: "trim on read-only", cmd: wire.CmdTrim, n: 512, errno: wire.EPERM, exportRO: true},
		{name: "zeroes on read-only", cmd: wire.CmdWriteZeroes, n: 512, errno: wire.EPERM, exportRO: true},
		{name: "unaligned read", cmd: wire.CmdRead, off: 100, n: 512, errno: wire.EINVAL, exportAlign: true},
		{name: "short write", cmd: wire.CmdWrite, off: 0, n: 100, errno: wire.EINVAL, exportAlign: true},
	}
	ro, al := dial(t, "unix", ts.sock, "ro"), dial(t, "unix", ts.sock, "aligned")
	for _, tc := range cases {
		cl := c
		if tc.exportRO {
			cl = ro
		}
		if tc.exportAlign {
			cl = al
		}
		wantErrno(t, tc.name, cl.Do(tc.cmd, tc.flags, tc.off, tc.n, buf), tc.errno)
	}
	// Every connection survived its errors.
	for _, cl := range []*Client{c, ro, al} {
		if _, err := cl.ReadAt(buf[:4096], 0); err != nil {
			t.Fatalf("connection unusable after errors: %v", err)
		}
	}
	if err := ro.Flush(); err != nil {
		t.Errorf("flush on a read-only export: %v", err)
	}
	if got := al.Info().BlockSize; got != (wire.BlockSize{Min: 512, Preferred: 4096, Max: MaxPayload}) {
		t.Errorf("block size advertised %+v", got)
	}
}

func TestTrimAndWriteZeroes(t *testing.T) {
	capable := &discardDev{Mem: blockdev.NewMem(1 << 20)}
	plain := blockdev.NewMem(1 << 20)
	ts := startServer(t, Export{Name: "capable", Device: capable}, Export{Name: "plain", Device: plain})
	ones := bytes.Repeat([]byte{1}, 1<<20)
	for _, name := range []string{"capable", "plain"} {
		c := dial(t, "unix", ts.sock, name)
		if _, err := c.WriteAt(ones, 0); err != nil {
			t.Fatal(err)
		}
		if err := c.Trim(0, 4096); err != nil {
			t.Fatalf("%s: trim: %v", name, err)
		}
		if err := c.WriteZeroes(8192, 4096); err != nil {
			t.Fatalf("%s: write zeroes: %v", name, err)
		}
		if err := c.Do(wire.CmdWriteZeroes, wire.CmdFlagNoHole|wire.CmdFlagFUA, 512<<10, 256<<10, nil); err != nil {
			t.Fatalf("%s: write zeroes NO_HOLE|FUA: %v", name, err)
		}
		got := make([]byte, 1<<20)
		c.ReadAt(got, 0)
		for _, r := range [][2]int{{8192, 4096}, {512 << 10, 256 << 10}} {
			if !bytes.Equal(got[r[0]:r[0]+r[1]], make([]byte, r[1])) {
				t.Errorf("%s: %d@%d not zeroed", name, r[1], r[0])
			}
		}
		if !bytes.Equal(got[4096:8192], ones[:4096]) || !bytes.Equal(got[12288:16384], ones[:4096]) {
			t.Errorf("%s: zeroes spilled outside their range", name)
		}
	}
	// TRIM reaches a device that can discard; WRITE_ZEROES uses its fast
	// path unless NO_HOLE asks for allocated zeroes.
	trims, zeroed := capable.calls()
	if want := fmt.Sprint([][2]int64{{0, 4096}}); trims != want {
		t.Errorf("trims %v, want %v", trims, want)
	}
	if want := fmt.Sprint([][2]int64{{8192, 4096}}); zeroed != want {
		t.Errorf("fast zeroes %v, want %v (NO_HOLE must not use them)", zeroed, want)
	}
	crash := make([]byte, 256<<10)
	plain.Crash().ReadAt(crash, 512<<10)
	if !bytes.Equal(crash, make([]byte, 256<<10)) {
		t.Error("FUA write zeroes not durable")
	}
}

func TestDeviceErrorsAreReported(t *testing.T) {
	dev := newHookDev(1 << 20)
	dev.onRead = func(off int64) error {
		if off == 4096 {
			return errors.New("medium error")
		}
		return nil
	}
	dev.onWrite = func(off int64) error {
		switch off {
		case 8192:
			return fmt.Errorf("member 2: %w", syscall.EIO)
		case 12288:
			return &net.OpError{Op: "write", Err: syscall.ENOSPC}
		}
		return nil
	}
	var failFlush atomic.Bool
	failFlush.Store(true)
	dev.onFlush = func() error {
		if failFlush.Load() {
			return errors.New("flush failed")
		}
		return nil
	}
	ts := startServer(t, Export{Name: "vol", Device: dev})
	c := dial(t, "unix", ts.sock, "vol")
	buf := make([]byte, 512)
	_, err := c.ReadAt(buf, 4096)
	wantErrno(t, "read error", err, wire.EIO)
	_, err = c.WriteAt(buf, 8192)
	wantErrno(t, "write error", err, wire.EIO)
	_, err = c.WriteAt(buf, 12288)
	wantErrno(t, "no space", err, wire.ENOSPC)
	wantErrno(t, "flush error", c.Flush(), wire.EIO)
	_, err = c.WriteAtFUA(buf, 0) // written, then the flush fails: not acknowledged
	wantErrno(t, "FUA write whose flush fails", err, wire.EIO)
	failFlush.Store(false)
	if _, err := c.ReadAt(buf, 0); err != nil {
		t.Fatalf("connection unusable after device errors: %v", err)
	}
}

// A read that blocks in the device must not hold back a later one: the
// server runs requests concurrently and replies out of order.
func TestRepliesOutOfOrder(t *testing.T) {
	dev := newHookDev(1 << 20)
	gate := make(chan struct{})
	dev.onRead = func(off int64) error {
		if off == 0 {
			<-gate
		}
		return nil
	}
	ts := startServer(t, Export{Name: "vol", Device: dev})
	c := dial(t, "unix", ts.sock, "vol")
	slow := make(chan error, 1)
	go func() {
		_, err := c.ReadAt(make([]byte, 4096), 0)
		slow <- err
	}()
	fast := make(chan error, 1)
	go func() {
		_, err := c.ReadAt(make([]byte, 4096), 4096)
		fast <- err
	}()
	select {
	case err := <-fast:
		if err != nil {
			t.Fatal(err)
		}
	case <-slow:
		t.Fatal("blocked read finished first")
	case <-time.After(10 * time.Second):
		t.Fatal("second read waited for the first: requests are serialized")
	}
	close(gate)
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentClients(t *testing.T) {
	const clients, perClient, block = 4, 8, 64 << 10
	dev := blockdev.NewMem(clients * perClient * block)
	ts := startServer(t, Export{Name: "vol", Device: dev, MultiConn: true})
	var wg sync.WaitGroup
	errs := make(chan error, clients*perClient)
	for ci := range clients {
		c := dial(t, "unix", ts.sock, "vol")
		for g := range perClient {
			wg.Add(1)
			go func() {
				defer wg.Done()
				off := int64((ci*perClient + g) * block)
				data := pattern(block, uint64(off))
				for range 5 {
					if _, err := c.WriteAt(data, off); err != nil {
						errs <- err
						return
					}
					got := make([]byte, block)
					if _, err := c.ReadAt(got, off); err != nil || !bytes.Equal(got, data) {
						errs <- fmt.Errorf("read back at %d: %v", off, err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Clients that send garbage, oversized requests or vanish mid-request lose
// their own connection only; acknowledged writes stay.
func TestBadClientsLoseOnlyTheirConnection(t *testing.T) {
	dev := blockdev.NewMem(1 << 20)
	ts := startServer(t, Export{Name: "vol", Device: dev})
	reg := prometheus.NewRegistry()
	if err := ts.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	good := dial(t, "unix", ts.sock, "vol")
	acked := pattern(64<<10, 7)
	if _, err := good.WriteAtFUA(acked, 0); err != nil {
		t.Fatal(err)
	}
	bad := map[string]func(nc net.Conn, br *bufio.Reader){
		"garbage": func(nc net.Conn, _ *bufio.Reader) {
			nc.Write([]byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"))
		},
		"oversized write": func(nc net.Conn, _ *bufio.Reader) {
			nc.Write(wire.AppendRequest(nil, wire.Request{Type: wire.CmdWrite, Handle: 1, Length: MaxPayload + 1}))
		},
		"vanishes mid-header": func(nc net.Conn, _ *bufio.Reader) {
			nc.Write(wire.AppendRequest(nil, wire.Request{Type: wire.CmdRead, Length: 512})[:10])
			nc.(*net.UnixConn).CloseWrite()
		},
		"vanishes mid-write": func(nc net.Conn, br *bufio.Reader) {
			// One FUA write is acknowledged, the next is cut short.
			req := wire.AppendRequest(nil, wire.Request{Flags: wire.CmdFlagFUA, Type: wire.CmdWrite, Handle: 1, Offset: 128 << 10, Length: 4096})
			nc.Write(append(req, bytes.Repeat([]byte{9}, 4096)...))
			var rep [wire.SimpleReplySize]byte
			if _, err := io.ReadFull(br, rep[:]); err != nil {
				t.Errorf("ack: %v", err)
			}
			req = wire.AppendRequest(nil, wire.Request{Type: wire.CmdWrite, Handle: 2, Offset: 256 << 10, Length: 64 << 10})
			nc.Write(append(req, bytes.Repeat([]byte{8}, 1000)...))
			nc.(*net.UnixConn).CloseWrite()
		},
		"garbage in the handshake": nil,
	}
	for name, misbehave := range bad {
		if misbehave == nil {
			nc, err := net.Dial("unix", ts.sock)
			if err != nil {
				t.Fatal(err)
			}
			nc.Write(bytes.Repeat([]byte{0xff}, 100))
			waitClosed(t, name, nc, bufio.NewReader(nc))
			nc.Close()
		} else {
			nc, br := rawSession(t, ts, "vol")
			misbehave(nc, br)
			waitClosed(t, name, nc, br)
		}
		got := make([]byte, len(acked))
		if _, err := good.ReadAt(got, 0); err != nil || !bytes.Equal(got, acked) {
			t.Fatalf("after %s: the good client broke or lost data: %v", name, err)
		}
	}
	crash := dev.Crash()
	got := make([]byte, 4096)
	crash.ReadAt(got, 128<<10)
	if !bytes.Equal(got, bytes.Repeat([]byte{9}, 4096)) {
		t.Error("FUA write acknowledged before the client vanished was lost")
	}
	partial := make([]byte, 64<<10)
	dev.ReadAt(partial, 256<<10)
	if !bytes.Equal(partial, make([]byte, 64<<10)) {
		t.Error("a write cut short was applied")
	}
	if got := counterValue(t, reg, "tandem_nbd_connections_dropped_total"); got < 4 {
		t.Errorf("dropped connections counted %v, want at least 4", got)
	}
}

func counterValue(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func TestMetrics(t *testing.T) {
	ts := startServer(t, Export{Name: "vol", Device: blockdev.NewMem(1 << 20)})
	reg := prometheus.NewRegistry()
	if err := ts.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	c := dial(t, "unix", ts.sock, "vol")
	c.WriteAt(make([]byte, 4096), 0)
	c.ReadAt(make([]byte, 512), 0)
	c.ReadAt(make([]byte, 512), 1<<20)
	for _, w := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"tandem_nbd_requests_total", []string{"op", "write", "result", "ok"}, 1},
		{"tandem_nbd_requests_total", []string{"op", "read", "result", "ok"}, 1},
		{"tandem_nbd_requests_total", []string{"op", "read", "result", "error"}, 1},
		{"tandem_nbd_bytes_total", []string{"direction", "write"}, 4096},
		{"tandem_nbd_bytes_total", []string{"direction", "read"}, 512},
		{"tandem_nbd_connections", []string{"export", "vol"}, 1},
		{"tandem_nbd_connections_accepted_total", nil, 1},
	} {
		if got := counterValue(t, reg, w.name, w.labels...); got != w.want {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.want)
		}
	}
}

func TestListExports(t *testing.T) {
	ts := startServer(t,
		Export{Name: "vol", Description: "the volume", Device: blockdev.NewMem(1 << 20), MultiConn: true},
		Export{Name: "ro", Device: blockdev.NewMem(8192), ReadOnly: true})
	nc, err := net.Dial("tcp", ts.tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	list, err := List(nc)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 {
		t.Fatalf("listed %d exports", len(list))
	}
	if l := list[0]; l.Name != "vol" || l.Description != "the volume" || l.Size != 1<<20 || l.Flags&wire.FlagCanMultiConn == 0 || l.Flags&wire.FlagReadOnly != 0 {
		t.Errorf("vol listed as %+v", l)
	}
	if l := list[1]; l.Name != "ro" || l.Size != 8192 || l.Flags&wire.FlagReadOnly == 0 || l.Flags&(wire.FlagCanMultiConn|wire.FlagSendTrim) != 0 {
		t.Errorf("ro listed as %+v", l)
	}
	if _, err := Dial(context.Background(), "unix", ts.sock, "nope"); err == nil {
		t.Error("opened an export that does not exist")
	}
}

// Close lets a request already running finish and answers it, then hangs
// up and makes Serve return ErrServerClosed.
func TestCloseFinishesInFlightRequests(t *testing.T) {
	dev := newHookDev(1 << 20)
	entered, gate := make(chan struct{}), make(chan struct{})
	dev.onWrite = func(int64) error {
		close(entered)
		<-gate
		return nil
	}
	ts := startServer(t, Export{Name: "vol", Device: dev})
	c := dial(t, "unix", ts.sock, "vol")
	wrote := make(chan error, 1)
	go func() {
		_, err := c.WriteAt(pattern(4096, 1), 0)
		wrote <- err
	}()
	<-entered
	closed := make(chan error, 1)
	go func() { closed <- ts.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while a write was still running")
	default:
	}
	close(gate)
	if err := <-wrote; err != nil {
		t.Fatalf("in-flight write not acknowledged: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadAt(make([]byte, 512), 0); err == nil {
		t.Fatal("connection still served after Close")
	}
	if _, err := net.Dial("unix", ts.sock); err == nil {
		t.Fatal("still listening after Close")
	}
}

func TestExportConfigErrors(t *testing.T) {
	dev := blockdev.NewMem(4096)
	for name, exports := range map[string][]Export{
		"none":            nil,
		"duplicate":       {{Name: "a", Device: dev}, {Name: "a", Device: dev}},
		"no device":       {{Name: "a"}},
		"bad block size":  {{Name: "a", Device: dev, MinBlockSize: 3000}},
		"huge block size": {{Name: "a", Device: dev, MinBlockSize: 1 << 20}},
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := NewServer(nil, exports...).Serve(ln); err == nil || errors.Is(err, ErrServerClosed) {
			t.Errorf("%s: Serve returned %v", name, err)
		}
		ln.Close()
	}
	s := NewServer(nil, Export{Name: "a", Device: dev})
	s.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	if err := s.Serve(ln); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Close: %v", err)
	}
}

// A client that never finishes the handshake is dropped after the
// handshake timeout, and one idling in it does not hold up Close.
func TestHandshakeTimeoutAndCloseDuringHandshake(t *testing.T) {
	ts := startServer(t, Export{Name: "vol", Device: blockdev.NewMem(4096)})
	ts.SetHandshakeTimeout(50 * time.Millisecond)
	nc, err := net.Dial("unix", ts.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	waitClosed(t, "silent client", nc, bufio.NewReader(nc)) // reads the greeting, then EOF

	ts.SetHandshakeTimeout(time.Hour)
	idle, err := net.Dial("unix", ts.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	br := bufio.NewReader(idle)
	if _, err := clientGreeting(idle, br); err != nil {
		t.Fatal(err)
	}
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, "client idle in the handshake", idle, br)
}
