package heartbeat

import (
	"bytes"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"tandem/internal/clock"
	"tandem/internal/lease"
)

// listenLoopback binds n UDP sockets on addr (port 0) and returns the
// transport and the addresses it got.
func listenLoopback(t *testing.T, addr string, n int) (*UDP, []netip.AddrPort) {
	t.Helper()
	var links []netip.AddrPort
	for range n {
		links = append(links, netip.AddrPortFrom(netip.MustParseAddr(addr), 0))
	}
	u, err := ListenUDP(links)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { u.Close() })
	var got []netip.AddrPort
	for _, c := range u.conns {
		got = append(got, c.LocalAddr().(interface{ AddrPort() netip.AddrPort }).AddrPort())
	}
	return u, got
}

// TestUDPSendBatchDeliversEach sends a batch to two receivers and more
// datagrams than one read takes to one of them: every datagram arrives
// once, intact, from the sender's address, on the queue before a handler
// is installed and to the handler after.
func TestUDPSendBatchDeliversEach(t *testing.T) {
	for _, addr := range []string{"127.0.0.1", "::1"} {
		t.Run(addr, func(t *testing.T) {
			a, aa := listenLoopback(t, addr, 1)
			b, ba := listenLoopback(t, addr, 1)
			c, ca := listenLoopback(t, addr, 1)
			pkts := []Packet{{To: ba[0], Data: []byte("to b")}, {To: ca[0], Data: []byte("to c")}}
			if n, err := a.SendBatch(0, pkts); n != 2 || err != nil {
				t.Fatalf("SendBatch = %d, %v", n, err)
			}
			for _, r := range []struct {
				u    *UDP
				want string
			}{{b, "to b"}, {c, "to c"}} {
				select {
				case dg := <-r.u.Recv():
					if string(dg.Data) != r.want || dg.From != aa[0] || dg.Link != 0 {
						t.Fatalf("got %q from %v on link %d, want %q from %v", dg.Data, dg.From, dg.Link, r.want, aa[0])
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("%q never arrived", r.want)
				}
			}

			// A burst larger than one read's batch, to the handler.
			var mu sync.Mutex
			got := map[string]int{}
			all := make(chan struct{})
			const burst = 25 // more than three reads of recvmmsg's batch on Linux
			b.SetHandler(func(dg Datagram) {
				mu.Lock()
				defer mu.Unlock()
				if dg.From != aa[0] {
					t.Errorf("from %v, want %v", dg.From, aa[0])
				}
				got[string(dg.Data)]++ // the buffer is reused: copied by the conversion
				if len(got) == burst {
					close(all)
				}
			})
			var many []Packet
			for i := range burst {
				many = append(many, Packet{To: ba[0], Data: []byte(fmt.Sprintf("datagram %d", i))})
			}
			if n, err := a.SendBatch(0, many); n != burst || err != nil {
				t.Fatalf("SendBatch = %d, %v", n, err)
			}
			select {
			case <-all:
			case <-time.After(5 * time.Second):
				mu.Lock()
				t.Fatalf("%d of %d datagrams arrived", len(got), burst)
			}
			mu.Lock()
			defer mu.Unlock()
			for k, n := range got {
				if n != 1 {
					t.Errorf("%q arrived %d times", k, n)
				}
			}
		})
	}
}

// TestUDPSendBatchSkipsWhatTheSocketCannotReach: an IPv6 destination on an
// IPv4 link is an error, and the batch's other datagrams still go.
func TestUDPSendBatchSkipsWhatTheSocketCannotReach(t *testing.T) {
	a, _ := listenLoopback(t, "127.0.0.1", 1)
	b, ba := listenLoopback(t, "127.0.0.1", 1)
	pkts := []Packet{{To: netip.MustParseAddrPort("[2001:db8::1]:7789"), Data: []byte("nowhere")}, {To: ba[0], Data: []byte("to b")}}
	n, err := a.SendBatch(0, pkts)
	if n != 1 || err == nil {
		t.Fatalf("SendBatch = %d, %v; want 1 and an error", n, err)
	}
	select {
	case dg := <-b.Recv():
		if !bytes.Equal(dg.Data, []byte("to b")) {
			t.Fatalf("got %q", dg.Data)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the reachable datagram never arrived")
	}
	if _, err := a.SendBatch(1, pkts); err == nil {
		t.Fatal("a link that does not exist was accepted")
	}
}

// TestUDPCloseEndsTheReaders: Close closes the queue once every reader has
// returned.
func TestUDPCloseEndsTheReaders(t *testing.T) {
	u, _ := listenLoopback(t, "127.0.0.1", 2)
	u.Close()
	select {
	case _, ok := <-u.Recv():
		if ok {
			t.Fatal("a datagram from nowhere")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the readers did not end")
	}
}

// TestRunnersOverUDPWithTwoLinks runs three runners over real sockets, two
// links each, so each round is one batch a link: every peer and link
// comes up and a held lease is renewed.
func TestRunnersOverUDPWithTwoLinks(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	var trs []*UDP
	var addrs [][]netip.AddrPort
	for range 3 {
		u, a := listenLoopback(t, "127.0.0.1", 2)
		trs, addrs = append(trs, u), append(addrs, a)
	}
	voters := []Peer{{Name: "a", Links: 2}, {Name: "b", Links: 2}, {Name: "w", Links: 2}}
	lp := lease.Params{Duration: time.Second, Drift: 0.01}
	var runners []*Runner
	for i := range voters {
		r := StartRunner(RunnerConfig{
			Engine: Config{Self: i, Voters: voters, ConfigHash: 5, Interval: 20 * time.Millisecond,
				Timeout: time.Second, Lease: lp},
			Key: key, Addrs: addrs, Transport: trs[i], Clock: clock.Real{},
		})
		t.Cleanup(r.Stop)
		runners = append(runners, r)
	}
	state := map[string]GroupState{"g": {Holder: "a", Epoch: 1}}
	for _, r := range runners {
		r.SetState(state, 1)
	}
	allUp := func() bool {
		for _, r := range runners {
			for _, p := range r.Status().Peers {
				if !p.Up || len(p.Links) != 2 || !p.Links[0].Up || !p.Links[1].Up {
					return false
				}
			}
		}
		_, _, held := runners[0].Lease("g")
		return held
	}
	deadline := time.Now().Add(10 * time.Second)
	for !allUp() {
		if time.Now().After(deadline) {
			t.Fatalf("not every link came up or the lease was not won: %+v", runners[0].Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, first, _ := runners[0].Lease("g")
	for {
		if _, until, held := runners[0].Lease("g"); held && until.After(first) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lease was not renewed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, r := range runners {
		if d := r.Drops(); len(d) != 0 {
			t.Errorf("drops %v", d)
		}
	}
}
