package link

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"tandem/internal/replication"
)

var testKey = bytes.Repeat([]byte{1}, 32)

// freeAddr returns an address on ip whose port was free a moment ago.
func freeAddr(t testing.TB, ip string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// fastLimits keep tests short; the ratios between them are the defaults'.
func fastLimits() Limits {
	return Limits{
		DialTimeout: 2 * time.Second, HandshakeTimeout: 1500 * time.Millisecond,
		PingInterval: 150 * time.Millisecond, Timeout: 1500 * time.Millisecond,
		ReconnectMin: 20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond,
		FailbackInterval: 200 * time.Millisecond, RecvWindow: 4,
	}
}

// events collects a link's events for a test.
type events struct {
	t  testing.TB
	mu sync.Mutex
	ch chan Event
}

func newEvents(t testing.TB) *events { return &events{t: t, ch: make(chan Event, 1024)} }

func (e *events) on(ev Event) {
	select {
	case e.ch <- ev:
	default:
	}
}

// wait returns the first event of kind (and, if match is set, matching).
func (e *events) wait(kind EventKind, within time.Duration, match func(Event) bool) (Event, bool) {
	deadline := time.After(within)
	for {
		select {
		case ev := <-e.ch:
			e.t.Logf("event %v path %d %v", ev.Kind, ev.Path, ev.Err)
			if ev.Kind == kind && (match == nil || match(ev)) {
				return ev, true
			}
		case <-deadline:
			return Event{}, false
		}
	}
}

type testNode struct {
	cfg Config
	ev  *events
	l   *Link
}

// nodes configures "a" (which dials) and "b" over n paths on loopback
// addresses 127.0.0.2x; mut may change either config before they start.
func nodes(t testing.TB, n int, mut func(a, b *Config)) (a, b *testNode) {
	t.Helper()
	var pa, pb []Path
	for i := 0; i < n; i++ {
		la := freeAddr(t, fmt.Sprintf("127.0.0.%d", 21+2*i))
		lb := freeAddr(t, fmt.Sprintf("127.0.0.%d", 22+2*i))
		pa = append(pa, Path{Local: la, Peer: lb})
		pb = append(pb, Path{Local: lb, Peer: la})
	}
	base := func(self, peer string, paths []Path) Config {
		return Config{Self: self, Peer: peer, Key: testKey, Volume: testVolume, Size: 1 << 30, Paths: paths, Limits: fastLimits(),
			Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	}
	a, b = &testNode{cfg: base("a", "b", pa), ev: newEvents(t)}, &testNode{cfg: base("b", "a", pb), ev: newEvents(t)}
	if mut != nil {
		mut(&a.cfg, &b.cfg)
	}
	b.start(t)
	a.start(t)
	return a, b
}

func (n *testNode) start(t testing.TB) {
	t.Helper()
	n.cfg.OnEvent = n.ev.on
	l, err := Start(n.cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.l = l
	t.Cleanup(func() { l.Close() })
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func next(t testing.TB, n *testNode, within time.Duration) Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	s, err := n.l.Next(ctx)
	if err != nil {
		t.Fatalf("%s: no session: %v", n.cfg.Self, err)
	}
	return s
}

func noSession(t testing.TB, n *testNode, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if s, err := n.l.Next(ctx); err == nil {
		t.Fatalf("%s: a session with %s came up", n.cfg.Self, s.Peer().Node)
	}
}

func recv(t testing.TB, s Session, within time.Duration) Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	f, err := s.Recv(ctx)
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return f
}

func send(t testing.TB, s Session, f Frame) uint64 {
	t.Helper()
	seq, err := s.Send(context.Background(), f)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	return seq
}

func TestHandshakeAndFramesBothWays(t *testing.T) {
	a, b := nodes(t, 1, func(a, b *Config) { a.Epoch = 3; b.Epoch = 2 })
	sa, sb := next(t, a, 3*time.Second), next(t, b, 3*time.Second)
	if p := sb.Peer(); p.Node != "a" || p.Size != 1<<30 || p.Epoch != 3 {
		t.Fatalf("b sees the hello %+v", p)
	}
	if b.l.Newest() != 3 {
		t.Fatalf("b's newest epoch is %d after a's hello said 3", b.l.Newest())
	}
	for i := 1; i <= 3; i++ {
		seq := send(t, sa, Frame{Kind: 1, Flags: uint16(i), Epoch: 3, Payload: bytes.Repeat([]byte{byte(i)}, i*70000)})
		if seq != uint64(i) {
			t.Fatalf("frame %d has sequence %d", i, seq)
		}
	}
	for i := 1; i <= 3; i++ {
		f := recv(t, sb, time.Second)
		if f.Seq != uint64(i) || f.Flags != uint16(i) || f.Epoch != 3 || f.Volume != testVolume || !bytes.Equal(f.Payload, bytes.Repeat([]byte{byte(i)}, i*70000)) {
			t.Fatalf("frame %d arrived as kind %v seq %d flags %d epoch %d, %d bytes", i, f.Kind, f.Seq, f.Flags, f.Epoch, len(f.Payload))
		}
	}
	send(t, sb, Frame{Kind: 2, Epoch: 3, Payload: []byte("ack")})
	if f := recv(t, sa, time.Second); f.Kind != 2 || string(f.Payload) != "ack" {
		t.Fatalf("a received %v %q", f.Kind, f.Payload)
	}
	time.Sleep(3 * a.cfg.Limits.PingInterval)
	st := sa.State()
	if st.Peer != "b" || st.Path != 0 || st.RTT <= 0 || st.BytesOut < 6*70000 || st.FramesOut != 3 || st.FramesIn != 1 || st.Remote != a.cfg.Paths[0].Peer {
		t.Fatalf("a's state %+v", st)
	}
	if _, err := sa.Send(context.Background(), Frame{Kind: kindPing}); err == nil {
		t.Fatal("Send took a link kind")
	}
	sa.Close(errors.New("test over"))
	<-sb.Done()
	if err := sb.Err(); !IsRefused(err, RefuseClosed) || !strings.Contains(err.Error(), "closed by a: test over") {
		t.Fatalf("b's session ended with %v", err)
	}
}

func TestWrongKeyIsRefused(t *testing.T) {
	a, b := nodes(t, 1, func(a, b *Config) { b.Key = bytes.Repeat([]byte{2}, 32) })
	noSession(t, b, time.Second)
	if ev, ok := a.ev.wait(EventDialFailed, time.Second, nil); !ok || !strings.Contains(ev.Err.Error(), "cluster key") {
		t.Fatalf("a's dial failure: %v", ev.Err)
	}
	if _, ok := b.ev.wait(EventRefused, time.Second, func(e Event) bool { return strings.Contains(e.Err.Error(), "TLS handshake") }); !ok {
		t.Fatal("b reported no refused handshake")
	}
}

// A key holder that is not this volume's peer is refused at TLS; one that
// presents the peer's certificate but claims another name in its hello is
// refused at the hello.
func TestWrongNodeIsRefused(t *testing.T) {
	a, b := nodes(t, 1, func(a, b *Config) { b.Peer = "a2" }) // b replicates with a2, not a
	noSession(t, b, time.Second)
	if ev, ok := a.ev.wait(EventDialFailed, time.Second, nil); !ok || !strings.Contains(ev.Err.Error(), "refused this node's certificate") {
		t.Fatalf("a's dial failure: %v", ev.Err)
	}
	if _, ok := b.ev.wait(EventRefused, time.Second, func(e Event) bool { return strings.Contains(e.Err.Error(), `names "a", not a member`) }); !ok {
		t.Fatal("b did not refuse a")
	}

	a, b = nodes(t, 1, func(a, b *Config) { a.Limits.ReconnectMin, a.Limits.ReconnectMax = time.Hour, time.Hour })
	next(t, b, 3*time.Second).Close(nil)
	a.l.mu.Lock()
	a.l.cfg.Self = "mallory" // a's certificate, another name in the hello
	a.l.mu.Unlock()
	_, _, err := a.l.dialPath(context.Background(), 0, SessionID{1}, false)
	if !IsRefused(err, RefusePeer) || !strings.Contains(err.Error(), "the hello claims mallory, the certificate is a's") {
		t.Fatalf("a hello naming mallory on a's certificate: %v", err)
	}
}

func TestVolumeOrSizeMismatchIsRefusedOnBothSides(t *testing.T) {
	for _, c := range []struct {
		name string
		mut  func(a, b *Config)
		code RefuseCode
		msg  string
	}{
		{"volume", func(a, b *Config) { b.Volume = replication.VolumeID{9} }, RefuseVolume, "volume ID differs"},
		{"size", func(a, b *Config) { b.Size = 2 << 30 }, RefuseSize, "size differs: b has 2147483648 bytes, a has 1073741824 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := nodes(t, 1, c.mut)
			ea, ok := a.ev.wait(EventRefused, 2*time.Second, nil)
			if !ok || !IsRefused(ea.Err, c.code) || !strings.Contains(ea.Err.Error(), c.msg) || !strings.Contains(ea.Err.Error(), "refused by the peer") {
				t.Fatalf("a: %v", ea.Err)
			}
			eb, ok := b.ev.wait(EventRefused, 2*time.Second, nil)
			if !ok || !IsRefused(eb.Err, c.code) || !strings.Contains(eb.Err.Error(), c.msg) {
				t.Fatalf("b: %v", eb.Err)
			}
			noSession(t, a, 100*time.Millisecond)
			noSession(t, b, 100*time.Millisecond)
		})
	}
}

// While a session is live, another connection for the volume — a second
// process claiming to be a, say — is refused and the live one is kept.
func TestSecondConnectionIsRefused(t *testing.T) {
	a, b := nodes(t, 1, nil)
	sa, sb := next(t, a, 3*time.Second), next(t, b, 3*time.Second)
	_, _, err := a.l.dialPath(context.Background(), 0, SessionID{2}, false)
	if !IsRefused(err, RefuseBusy) || !strings.Contains(err.Error(), "only one connection per volume") {
		t.Fatalf("a second connection: %v", err)
	}
	if _, ok := b.ev.wait(EventRefused, time.Second, func(e Event) bool { return IsRefused(e.Err, RefuseBusy) }); !ok {
		t.Fatal("b reported no refusal")
	}
	send(t, sa, Frame{Kind: 1, Payload: []byte("still here")})
	if f := recv(t, sb, time.Second); string(f.Payload) != "still here" {
		t.Fatalf("got %q", f.Payload)
	}
}

// takeWriter holds a session's write token (so it sends nothing, not even
// pings: a frozen peer) and returns its connection for raw writes.
func takeWriter(t testing.TB, s Session) net.Conn {
	ts := s.(*tcpSession)
	if err := ts.lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	return ts.wconn
}

func TestPeerThatHangsMidFrameIsDropped(t *testing.T) {
	a, b := nodes(t, 1, nil)
	sa, sb := next(t, a, 3*time.Second), next(t, b, 3*time.Second)
	c := takeWriter(t, sa)
	var hdr [HeaderSize]byte
	PutHeader(hdr[:], Header{Kind: 1, Volume: testVolume, Seq: 1, Length: 1000})
	c.Write(append(hdr[:], make([]byte, 10)...))
	start := time.Now()
	select {
	case <-sb.Done():
	case <-time.After(3 * b.cfg.Limits.Timeout):
		t.Fatal("b kept a peer that stopped mid-frame")
	}
	took := time.Since(start)
	if !errors.Is(sb.Err(), ErrTimeout) || took > b.cfg.Limits.Timeout*3/2 {
		t.Fatalf("dropped after %v with %v; timeout %v", took, sb.Err(), b.cfg.Limits.Timeout)
	}
	if f, err := sb.Recv(context.Background()); err == nil {
		t.Fatalf("b delivered %v from a torn frame", f.Kind)
	}
}

// A peer that stops sending anything (frozen) is dropped after Timeout.
func TestSilentPeerIsDropped(t *testing.T) {
	a, b := nodes(t, 1, nil)
	sa, sb := next(t, a, 3*time.Second), next(t, b, 3*time.Second)
	takeWriter(t, sa)
	start := time.Now()
	<-sb.Done()
	if took := time.Since(start); !errors.Is(sb.Err(), ErrTimeout) || took > b.cfg.Limits.Timeout*3/2 {
		t.Fatalf("dropped after %v with %v", took, sb.Err())
	}
}

func TestGarbageIsDroppedAndNothingDelivered(t *testing.T) {
	a, b := nodes(t, 1, nil)
	sa, sb := next(t, a, 3*time.Second), next(t, b, 3*time.Second)
	c := takeWriter(t, sa)
	c.Write(bytes.Repeat([]byte("garbage!"), 100))
	<-sb.Done()
	if !IsRefused(sb.Err(), RefuseProtocol) || !strings.Contains(sb.Err().Error(), "magic") {
		t.Fatalf("b ended with %v", sb.Err())
	}
	if f, err := sb.Recv(context.Background()); err == nil {
		t.Fatalf("b delivered %v", f.Kind)
	}

	// before TLS: a port scanner, an HTTP client
	raw, err := net.Dial("tcp", b.cfg.Paths[0].Local.String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	raw.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := raw.Read(make([]byte, 1024)); err == nil {
		// a TLS alert is fine; the connection must then close
		if _, err := raw.Read(make([]byte, 1024)); err == nil {
			t.Fatal("b kept a connection that sent HTTP")
		}
	}
}

// A data frame whose sequence number does not rise (a frame replayed or
// lost inside a session) is a protocol error, not a silent gap.
func TestSequenceThatDoesNotRiseIsDropped(t *testing.T) {
	a, b := nodes(t, 1, nil)
	sa, sb := next(t, a, 3*time.Second), next(t, b, 3*time.Second)
	send(t, sa, Frame{Kind: 1})
	recv(t, sb, time.Second)
	ts := sa.(*tcpSession)
	ts.lock(context.Background())
	ts.sendSeq = 0
	ts.unlock()
	send(t, sa, Frame{Kind: 1})
	<-sb.Done()
	if !IsRefused(sb.Err(), RefuseProtocol) || !strings.Contains(sb.Err().Error(), "frame 1 after frame 1") {
		t.Fatalf("b ended with %v", sb.Err())
	}
	<-sa.Done()
	if !IsRefused(sa.Err(), RefuseProtocol) || !strings.Contains(sa.Err().Error(), "refused by the peer") {
		t.Fatalf("a was not told why: %v", sa.Err())
	}
}

// S2: a frame of an older epoch than the receiver has seen is not
// delivered, and the sender is told the newest epoch.
func TestStaleEpochIsRefused(t *testing.T) {
	a, b := nodes(t, 1, func(a, b *Config) { a.Epoch = 3; b.Epoch = 3 })
	sa, sb := next(t, a, 3*time.Second), next(t, b, 3*time.Second)
	b.l.Observe(5) // b learnt of a newer primary
	seq := send(t, sa, Frame{Kind: 1, Epoch: 3, Payload: []byte("old primary's write")})
	f := recv(t, sa, time.Second)
	stale, err := DecodeStale(f)
	if err != nil || stale.Newest != 5 || stale.Epoch != 3 || stale.Seq != seq || stale.Kind != 1 {
		t.Fatalf("a received %v %+v %v", f.Kind, stale, err)
	}
	if a.l.Newest() != 5 {
		t.Fatalf("a's newest epoch is %d after the refusal", a.l.Newest())
	}
	send(t, sa, Frame{Kind: 1, Epoch: 5, Payload: []byte("current")})
	if f := recv(t, sb, time.Second); string(f.Payload) != "current" {
		t.Fatalf("b delivered %q first", f.Payload)
	}
	if _, ok := b.ev.wait(EventStale, time.Second, nil); !ok {
		t.Fatal("b reported no stale frame")
	}
	// a frame of a newer epoch raises the receiver's fence
	send(t, sa, Frame{Kind: 1, Epoch: 7})
	recv(t, sb, time.Second)
	if b.l.Newest() != 7 {
		t.Fatalf("b's newest epoch is %d after a frame of epoch 7", b.l.Newest())
	}
}

// relisten reopens path i's listener after a test closed it.
func (n *testNode) relisten(t testing.TB, i int) {
	t.Helper()
	ln, err := net.Listen("tcp", n.cfg.Paths[i].Local.String())
	if err != nil {
		t.Fatal(err)
	}
	n.l.listeners[i] = ln
	n.l.wg.Add(1)
	go n.l.acceptLoop(i, ln)
}

// Path 0 fails (its listener closed, its connection cut): the session
// ends and a new one comes up on path 1. When path 0 answers again, the
// session moves back to it while frames flow, none lost or reordered.
func TestFailoverToSecondPathAndBack(t *testing.T) {
	a, b := nodes(t, 2, nil)
	sa, sb := next(t, a, 3*time.Second), next(t, b, 3*time.Second)
	if sa.State().Path != 0 {
		t.Fatalf("first session on path %d", sa.State().Path)
	}
	b.l.listeners[0].Close()
	sb.(*tcpSession).path.Conn.Close()
	<-sa.Done()
	sa, sb = next(t, a, 3*time.Second), next(t, b, 3*time.Second)
	if p := sa.State().Path; p != 1 {
		t.Fatalf("after path 0 failed the session is on path %d", p)
	}

	const n = 400
	errc := make(chan error, 1)
	go func() {
		for i := 1; i <= n; i++ {
			if _, err := sa.Send(context.Background(), Frame{Kind: 1, Payload: []byte(fmt.Sprint(i))}); err != nil {
				errc <- err
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
		errc <- nil
	}()
	time.Sleep(50 * time.Millisecond)
	b.relisten(t, 0)
	for i := 1; i <= n; i++ {
		f := recv(t, sb, 2*time.Second)
		if string(f.Payload) != fmt.Sprint(i) || f.Seq != uint64(i) {
			t.Fatalf("frame %d arrived as %q seq %d", i, f.Payload, f.Seq)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if _, ok := a.ev.wait(EventSwitched, time.Second, nil); !ok {
		t.Fatal("a reported no switch")
	}
	if p := sa.State().Path; p != 0 {
		t.Fatalf("the session stayed on path %d", p)
	}
	if p := sb.State().Path; p != 0 {
		t.Fatalf("b's side of the session is on path %d", p)
	}
	// and the session still works both ways after the move
	send(t, sb, Frame{Kind: 2, Payload: []byte("back")})
	if f := recv(t, sa, time.Second); string(f.Payload) != "back" {
		t.Fatalf("got %q", f.Payload)
	}
	select {
	case <-sa.Done():
		t.Fatalf("the session ended: %v", sa.Err())
	default:
	}
}

// A receiver that stops calling Recv stops the sender (nothing is buffered
// without bound); a sender stuck that way longer than Timeout drops the
// session.
func TestBackpressureBoundsMemoryAndTime(t *testing.T) {
	a, b := nodes(t, 1, nil)
	sa, sb := next(t, a, 3*time.Second), next(t, b, 3*time.Second)
	payload := make([]byte, 1<<20)
	sent := 0
	start := time.Now()
	for {
		if _, err := sa.Send(context.Background(), Frame{Kind: 1, Payload: payload}); err != nil {
			if !errors.Is(err, ErrTimeout) {
				t.Fatalf("send failed with %v", err)
			}
			break
		}
		sent++
		if sent > 200 {
			t.Fatal("200 MiB went to a receiver that reads nothing")
		}
	}
	t.Logf("%d MiB accepted before the sender blocked; dropped after %v", sent, time.Since(start))
	if sent > b.cfg.Limits.RecvWindow+1+32 {
		t.Fatalf("%d frames accepted: more than the window and socket buffers hold", sent)
	}
	<-sb.Done()
}

// Connections that never complete a handshake are capped, and those from
// elsewhere cannot take the peer's slots: a flood of silent connections
// from 127.0.0.99 is closed at once beyond the cap, the rest after the
// handshake timeout, and a is still answered meanwhile.
func TestSilentConnectionsAreCappedAndTimedOut(t *testing.T) {
	a, b := nodes(t, 1, nil)
	next(t, b, 3*time.Second)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.99")}}
	var flood []net.Conn
	for i := 0; i < 3*maxHandshakesOthers; i++ {
		c, err := d.Dial("tcp", b.cfg.Paths[0].Local.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		flood = append(flood, c)
	}
	closedAt := func(within time.Duration) int {
		n := 0
		for _, c := range flood {
			c.SetReadDeadline(time.Now().Add(within))
			var ne net.Error
			if _, err := c.Read(make([]byte, 1)); err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
				n++
			}
		}
		return n
	}
	n := 0
	for start := time.Now(); n < 2*maxHandshakesOthers && time.Since(start) < b.cfg.Limits.HandshakeTimeout/2; {
		n = closedAt(5 * time.Millisecond)
	}
	if n != 2*maxHandshakesOthers {
		t.Fatalf("%d of %d silent connections closed at once, want %d", n, len(flood), 2*maxHandshakesOthers)
	}
	// a's hello is answered (that a session is live already) during the flood
	if _, _, err := a.l.dialPath(context.Background(), 0, SessionID{3}, false); !IsRefused(err, RefuseBusy) {
		t.Fatalf("a's handshake during the flood: %v", err)
	}
	time.Sleep(b.cfg.Limits.HandshakeTimeout)
	if n := closedAt(500 * time.Millisecond); n != len(flood) {
		t.Fatalf("%d of %d silent connections closed after the handshake timeout", n, len(flood))
	}
}

// A connection to b that the network sends back to a, or on to another
// key holder, is refused by the dialler's identity check.
func TestReflectedOrRedirectedConnectionIsRefused(t *testing.T) {
	a, _ := nodes(t, 1, func(a, b *Config) { a.Paths[0].Peer = a.Paths[0].Local }) // b's address leads to a
	if ev, ok := a.ev.wait(EventDialFailed, 2*time.Second, nil); !ok || !peerIDError(ev.Err) || !strings.Contains(ev.Err.Error(), "reflected") {
		t.Fatalf("a's connection to b, reflected to a: %v", ev.Err)
	}
	// c holds the cluster key and replicates with a, but is not b
	c := &testNode{cfg: a.cfg, ev: newEvents(t)}
	c.cfg.Self, c.cfg.Peer = "c", "a"
	c.cfg.Paths = []Path{{Local: freeAddr(t, "127.0.0.25"), Peer: freeAddr(t, "127.0.0.21")}}
	c.start(t)
	a, _ = nodes(t, 1, func(a, b *Config) { a.Paths[0].Peer = c.cfg.Paths[0].Local }) // b's address leads to c
	if ev, ok := a.ev.wait(EventDialFailed, 2*time.Second, nil); !ok || !peerIDError(ev.Err) || !strings.Contains(ev.Err.Error(), "not b") {
		t.Fatalf("a's connection to b, redirected to c: %v", ev.Err)
	}
}

func peerIDError(err error) bool { return err != nil && strings.Contains(err.Error(), "peer identity") }

// A preferred path that swallows connections (accepts, never answers)
// does not hold the session back for a whole dial timeout: the next path
// is tried a third of it later.
func TestUnansweringPathDoesNotDelayTheNext(t *testing.T) {
	tarpit, err := net.Listen("tcp", "127.0.0.22:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tarpit.Close()
	go func() {
		for {
			c, err := tarpit.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	a, _ := nodes(t, 2, func(a, b *Config) {
		a.Limits.DialTimeout, b.Limits.DialTimeout = 6*time.Second, 6*time.Second
		a.Paths[0].Peer = netip.MustParseAddrPort(tarpit.Addr().String())
	})
	s := next(t, a, 8*time.Second)
	if took := time.Since(start); s.State().Path != 1 || took > 4500*time.Millisecond { // in turn: 6 s and more
		t.Fatalf("session on path %d after %v", s.State().Path, took)
	}
}

// A peer retrying with the wrong key is reported once, not at every try.
func TestRepeatedRefusalIsReportedOnce(t *testing.T) {
	_, b := nodes(t, 1, func(a, b *Config) { b.Key = bytes.Repeat([]byte{2}, 32) })
	if _, ok := b.ev.wait(EventRefused, 3*time.Second, nil); !ok {
		t.Fatal("no refusal")
	}
	time.Sleep(time.Second) // a retries several times (backoff 20 ms .. 200 ms)
	for len(b.ev.ch) > 0 {
		if ev := <-b.ev.ch; ev.Kind == EventRefused {
			t.Fatalf("reported again: %v", ev.Err)
		}
	}
}

// A peer whose sessions the engine closes at once (a machine refusing its
// data, say) is not redialled in a tight loop.
func TestShortSessionsBackOff(t *testing.T) {
	_, b := nodes(t, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	n := 0
	for {
		s, err := b.l.Next(ctx)
		if err != nil {
			break
		}
		n++
		s.Close(errors.New("refused by the machine"))
	}
	// backoff 20, 40, 80, 160, 200, 200 ... ms: about 7 in a second
	if n > 10 {
		t.Fatalf("%d sessions in a second", n)
	}
}

// A peer that dies leaves its last frames in this side's socket, followed
// by its end; a write that fails on that end (the reset) must not lose
// them: Recv returns every frame the peer sent, in order, then the end.
// (e2e TestVolumeOutdatedPromotion lost an async primary's outdate frame
// that way: its peer's ping hit the dead primary's reset first.)
func TestFramesOfADeadPeerOutliveAFailedWrite(t *testing.T) {
	a, b := nodes(t, 1, nil)
	sa, sb := next(t, a, 3*time.Second), next(t, b, 3*time.Second)
	// more than a reads ahead (RecvWindow): the rest wait in its socket
	n := a.cfg.Limits.RecvWindow + 20
	for i := range n {
		send(t, sb, Frame{Kind: 1, Payload: []byte{byte(i)}})
	}
	b.l.Close()
	// a was not running while b died (frozen): b's last frames and its
	// end are in a's socket before a writes again
	waitPeerEnd(t, sa.(*tcpSession).rconn)
	giveUp := time.Now().Add(5 * time.Second)
	for {
		_, err := sa.Send(context.Background(), Frame{Kind: 1, Payload: []byte("x")})
		if err != nil {
			if errors.Is(err, ErrTimeout) {
				t.Fatalf("a's write timed out (%v); want it to fail on b's end", err)
			}
			t.Logf("a's write failed: %v", err)
			break
		}
		if time.Now().After(giveUp) {
			t.Fatal("a wrote to b's closed connection for 5 s without an error")
		}
	}
	for i := range n {
		f, err := sa.Recv(context.Background())
		if err != nil {
			t.Fatalf("frame %d of %d: %v: the frames b sent before it closed were lost", i, n, err)
		}
		if len(f.Payload) != 1 || f.Payload[0] != byte(i) {
			t.Fatalf("frame %d of %d: payload %v", i, n, f.Payload)
		}
	}
	if f, err := sa.Recv(context.Background()); err == nil {
		t.Fatalf("a frame after b's last: %v", f.Kind)
	}
}

// waitPeerEnd waits until pc's socket has the peer's end (its FIN or
// reset): everything the peer sent before is in this side's socket.
func waitPeerEnd(t *testing.T, pc *pathConn) {
	t.Helper()
	raw, err := pc.buf.Conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	giveUp := time.Now().Add(5 * time.Second)
	for {
		var state uint8
		var serr error
		if err := raw.Control(func(fd uintptr) {
			var info *unix.TCPInfo
			info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
			if info != nil {
				state = info.State
			}
		}); err != nil || serr != nil {
			t.Fatal(err, serr)
		}
		if state != unix.BPF_TCP_ESTABLISHED { // CLOSE_WAIT or CLOSE
			return
		}
		if time.Now().After(giveUp) {
			t.Fatal("the peer's end did not reach this side's socket within 5 s")
		}
		time.Sleep(time.Millisecond)
	}
}
