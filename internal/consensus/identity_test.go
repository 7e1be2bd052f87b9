package consensus

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"tandem/internal/peerid"
)

// muxes starts one mux per name, all keyed with key, each knowing every
// voter's address; redirect maps a voter to the one whose address is
// given out for it (a redirecting or reflecting network).
func muxes(t *testing.T, keys map[string][]byte, redirect map[string]string, names ...string) map[string]*mux {
	t.Helper()
	addrs := map[string]netip.AddrPort{}
	for _, n := range names {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs[n] = netip.MustParseAddrPort(ln.Addr().String())
		ln.Close()
	}
	peers := map[raft.ServerAddress][]netip.AddrPort{}
	for _, n := range names {
		at := n
		if r, ok := redirect[n]; ok {
			at = r
		}
		peers[raft.ServerAddress(n)] = []netip.AddrPort{addrs[at]}
	}
	out := map[string]*mux{}
	for _, n := range names {
		m, err := newMux(n, []netip.AddrPort{addrs[n]}, peers, keys[n], time.Second)
		if err != nil {
			t.Fatal(err)
		}
		m.start(nil)
		t.Cleanup(func() { m.Close() })
		out[n] = m
	}
	return out
}

func sameKey(k []byte, names ...string) map[string][]byte {
	m := map[string][]byte{}
	for _, n := range names {
		m[n] = k
	}
	return m
}

// accepted waits briefly for a raft connection on m.
func accepted(m *mux, within time.Duration) bool {
	select {
	case c := <-m.raftConns:
		c.Close()
		return true
	case <-time.After(within):
		return false
	}
}

// refusedByServer reports whether the listener closed c (rather than
// keeping it open for raft).
func refusedByServer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func TestVotersConnectWithTheirOwnIdentities(t *testing.T) {
	ms := muxes(t, sameKey(bytes.Repeat([]byte{1}, 32), "a", "b"), nil, "a", "b")
	c, err := ms["a"].dial(context.Background(), "b", purposeRaft)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !accepted(ms["b"], 3*time.Second) {
		t.Fatal("b did not accept a's raft connection")
	}
}

// A connection to b that the network sends back to its sender must not be
// taken for b: every voter used to present the same certificate.
func TestReflectedConnectionIsRefused(t *testing.T) {
	ms := muxes(t, sameKey(bytes.Repeat([]byte{1}, 32), "a", "b"), map[string]string{"b": "a"}, "a", "b")
	c, err := ms["a"].dial(context.Background(), "b", purposeRaft)
	if err == nil {
		refused := refusedByServer(c)
		c.Close()
		if !refused {
			t.Fatal("a's connection to b, reflected to a, was taken for b on both ends")
		}
		t.Fatal("a's connection to b, reflected to a, was taken for b by the dialler")
	}
	if accepted(ms["a"], 300*time.Millisecond) {
		t.Fatal("a accepted a raft connection from itself")
	}
}

// A connection to b that the network redirects to c is refused: c is a
// voter holding the cluster key, but it is not b.
func TestRedirectedConnectionIsRefused(t *testing.T) {
	ms := muxes(t, sameKey(bytes.Repeat([]byte{1}, 32), "a", "b", "c"), map[string]string{"b": "c"}, "a", "b", "c")
	if c, err := ms["a"].dial(context.Background(), "b", purposeRaft); err == nil {
		c.Close()
		t.Fatal("a's connection to b, redirected to c, was accepted")
	} else if !errors.Is(err, errIdentity) {
		t.Logf("refused, but not for identity: %v", err)
	}
	if accepted(ms["c"], 300*time.Millisecond) {
		t.Fatal("c accepted a connection meant for b")
	}
}

// A voter that claims another voter's name in its hello is refused.
func TestVoterClaimingAnotherNameIsRefused(t *testing.T) {
	ms := muxes(t, sameKey(bytes.Repeat([]byte{1}, 32), "a", "b", "c"), nil, "a", "b", "c")
	ms["c"].name = "b" // c's certificate, b's name in the hello
	c, err := ms["c"].dial(context.Background(), "a", purposeRaft)
	if err == nil {
		defer c.Close()
		if !refusedByServer(c) {
			t.Fatal("a kept a connection whose hello claims b from c's certificate")
		}
	}
	if accepted(ms["a"], 300*time.Millisecond) {
		t.Fatal("a accepted c as b")
	}
}

func TestWrongKeyIsRefused(t *testing.T) {
	keys := map[string][]byte{"a": bytes.Repeat([]byte{1}, 32), "b": bytes.Repeat([]byte{2}, 32)}
	ms := muxes(t, keys, nil, "a", "b")
	if c, err := ms["a"].dial(context.Background(), "b", purposeRaft); err == nil {
		refused := refusedByServer(c)
		c.Close()
		if !refused {
			t.Fatal("a voter with another cluster key was accepted")
		}
	}
	if accepted(ms["b"], 300*time.Millisecond) {
		t.Fatal("b accepted a voter with another cluster key")
	}
}

func TestIdentityCertificateNamesTheVoter(t *testing.T) {
	k := bytes.Repeat([]byte{1}, 32)
	a, err := newIdentities(k, "a", []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newIdentities(k, "b", []string{"a", "b"})
	if name, err := b.MemberOf(a.Certificate()); err != nil || name != "a" {
		t.Fatalf("b reads a's certificate as %q, %v", name, err)
	}
	if _, err := a.MemberOf(a.Certificate()); err == nil {
		t.Fatal("a accepted its own certificate from a peer")
	}
	ka, _ := peerid.Key(k, voterDomain, "a")
	kb, _ := peerid.Key(k, voterDomain, "b")
	if ka.Equal(kb) {
		t.Fatal("two voters derived the same key")
	}
}

// Connections that never authenticate are capped per source: a flood from
// one address is closed at once beyond the cap (instead of each holding a
// descriptor for the handshake deadline), and voters still connect.
func TestUnauthenticatedConnectionsAreCapped(t *testing.T) {
	ms := muxes(t, sameKey(bytes.Repeat([]byte{1}, 32), "a", "b"), nil, "a", "b")
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.5")}}
	var flood []net.Conn
	for i := 0; i < 3*maxHandshakesPerSource; i++ {
		c, err := d.Dial("tcp", ms["b"].self.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		flood = append(flood, c)
	}
	closed := 0
	for _, c := range flood {
		if refusedByServerWithin(c, 200*time.Millisecond) {
			closed++
		}
	}
	if closed != 2*maxHandshakesPerSource {
		t.Fatalf("%d of %d silent connections from one source closed at once, want %d", closed, len(flood), 2*maxHandshakesPerSource)
	}
	c, err := ms["a"].dial(context.Background(), "b", purposeRaft)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !accepted(ms["b"], 3*time.Second) {
		t.Fatal("a voter could not connect during the flood")
	}
}

func refusedByServerWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}
