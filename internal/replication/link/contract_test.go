package link

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"tandem/internal/clock"
	"tandem/internal/replication"
)

// twins makes a connected pair of endpoints, a (dials) and b, whose
// configured newest epochs are ea and eb: the TCP link on loopback, or the
// in-memory twin. The contract below holds for both.
type twins func(t *testing.T, ea, eb replication.Epoch, fenced func(Kind) bool) (a, b Endpoint)

func tcpTwins(t *testing.T, ea, eb replication.Epoch, fenced func(Kind) bool) (Endpoint, Endpoint) {
	a, b := nodes(t, 1, func(a, b *Config) { a.Epoch, b.Epoch, a.Fenced, b.Fenced = ea, eb, fenced, fenced })
	return a.l, b.l
}

func memTwins(t *testing.T, ea, eb replication.Epoch, fenced func(Kind) bool) (Endpoint, Endpoint) {
	n := NewMemNetwork(clock.NewFake(time.Unix(0, 0)))
	a, err := n.Endpoint(MemConfig{Self: "a", Peer: "b", Volume: testVolume, Size: 1 << 30, Epoch: ea, Fenced: fenced})
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.Endpoint(MemConfig{Self: "b", Peer: "a", Volume: testVolume, Size: 1 << 30, Epoch: eb, Fenced: fenced})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestContractTCP(t *testing.T) { testContract(t, tcpTwins) }
func TestContractMem(t *testing.T) { testContract(t, memTwins) }

func nextOf(t *testing.T, e Endpoint) Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s, err := e.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testContract(t *testing.T, mk twins) {
	t.Run("frames arrive in order, both ways, with what was sent", func(t *testing.T) {
		a, b := mk(t, 2, 1, nil)
		sa, sb := nextOf(t, a), nextOf(t, b)
		if sb.Peer().Node != "a" || sb.Peer().Epoch != 2 || b.Newest() != 2 {
			t.Fatalf("b: hello %+v, newest %d", sb.Peer(), b.Newest())
		}
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			for i := 1; i <= 20; i++ {
				sa.Send(context.Background(), Frame{Kind: Kind(i), Flags: uint16(i), Epoch: 2, Payload: bytes.Repeat([]byte{byte(i)}, i)})
			}
		}()
		for i := 1; i <= 20; i++ {
			f := recv(t, sb, 2*time.Second)
			if f.Kind != Kind(i) || f.Flags != uint16(i) || f.Seq != uint64(i) || f.Epoch != 2 || f.Volume != testVolume || !bytes.Equal(f.Payload, bytes.Repeat([]byte{byte(i)}, i)) {
				t.Fatalf("frame %d: %+v", i, f)
			}
		}
		send(t, sb, Frame{Kind: 9, Epoch: 2, Payload: []byte("ack")})
		if f := recv(t, sa, 2*time.Second); string(f.Payload) != "ack" || f.Seq != 1 {
			t.Fatalf("a got %+v", f)
		}
		<-sent // the last Send counts its frame after writing it, maybe after b read it
		if st := sa.State(); st.Peer != "b" || st.FramesOut != 20 || st.FramesIn != 1 {
			t.Fatalf("a's state %+v", st)
		}
		if _, err := sa.Send(context.Background(), Frame{Kind: KindStale}); err == nil {
			t.Fatal("Send took a link kind")
		}
	})
	t.Run("an older epoch is refused and the sender told the newest", func(t *testing.T) {
		a, b := mk(t, 4, 4, nil)
		sa, sb := nextOf(t, a), nextOf(t, b)
		b.Observe(6)
		seq := send(t, sa, Frame{Kind: 1, Epoch: 4})
		st, err := DecodeStale(recv(t, sa, 2*time.Second))
		if err != nil || st.Newest != 6 || st.Seq != seq || st.Epoch != 4 || !IsStaleEpoch(st) {
			t.Fatalf("a: %+v %v", st, err)
		}
		send(t, sa, Frame{Kind: 1, Epoch: 6, Payload: []byte("new")})
		if f := recv(t, sb, 2*time.Second); string(f.Payload) != "new" {
			t.Fatalf("b delivered %q", f.Payload)
		}
	})
	t.Run("a tail is sent as the rest of the payload", func(t *testing.T) {
		a, b := mk(t, 1, 1, nil)
		sa, sb := nextOf(t, a), nextOf(t, b)
		big := bytes.Repeat([]byte("0123456789abcdef"), 20000)
		for _, f := range []Frame{{Kind: 1, Epoch: 1, Payload: []byte("ab"), Tail: []byte("cd")}, {Kind: 1, Epoch: 1, Payload: []byte("fields"), Tail: big}} {
			send(t, sa, f)
			want := append(append([]byte(nil), f.Payload...), f.Tail...)
			if got := recv(t, sb, 2*time.Second); !bytes.Equal(got.Payload, want) {
				t.Fatalf("sent %d+%d bytes, received %d", len(f.Payload), len(f.Tail), len(got.Payload))
			}
		}
	})
	t.Run("only fenced kinds are refused; every kind raises the newest epoch", func(t *testing.T) {
		a, b := mk(t, 4, 4, func(k Kind) bool { return k == 1 })
		sa, sb := nextOf(t, a), nextOf(t, b)
		b.Observe(6)
		send(t, sa, Frame{Kind: 2, Epoch: 4, Payload: []byte("an ack")})
		if f := recv(t, sb, 2*time.Second); string(f.Payload) != "an ack" {
			t.Fatalf("b delivered %v %q", f.Kind, f.Payload)
		}
		send(t, sa, Frame{Kind: 1, Epoch: 4})
		if f := recv(t, sa, 2*time.Second); f.Kind != KindStale {
			t.Fatalf("a got %v for a fenced kind", f.Kind)
		}
		send(t, sb, Frame{Kind: 2, Epoch: 9})
		recv(t, sa, 2*time.Second)
		if a.Newest() != 9 {
			t.Fatalf("a's newest epoch is %d after an unfenced frame of epoch 9", a.Newest())
		}
	})
	t.Run("the sender may number its frames, rising", func(t *testing.T) {
		a, b := mk(t, 1, 1, nil)
		sa, sb := nextOf(t, a), nextOf(t, b)
		for _, seq := range []uint64{10, 20} {
			if got, err := sa.Send(context.Background(), Frame{Kind: 1, Epoch: 1, Seq: seq}); err != nil || got != seq {
				t.Fatalf("sent %d as %d, %v", seq, got, err)
			}
		}
		if _, err := sa.Send(context.Background(), Frame{Kind: 1, Epoch: 1, Seq: 15}); err == nil {
			t.Fatal("sent 15 after 20")
		}
		if got := send(t, sa, Frame{Kind: 1, Epoch: 1}); got != 21 {
			t.Fatalf("the link numbered the next %d", got)
		}
		for _, want := range []uint64{10, 20, 21} {
			if f := recv(t, sb, 2*time.Second); f.Seq != want {
				t.Fatalf("received %d, want %d", f.Seq, want)
			}
		}
	})
	t.Run("close says why on both sides", func(t *testing.T) {
		a, b := mk(t, 1, 1, nil)
		sa, sb := nextOf(t, a), nextOf(t, b)
		sb.Close(errors.New("demoted"))
		<-sa.Done()
		if !IsRefused(sa.Err(), RefuseClosed) || !strings.Contains(sa.Err().Error(), "closed by b: demoted") || !strings.Contains(sa.Err().Error(), "by the peer") {
			t.Fatalf("a: %v", sa.Err())
		}
		if _, err := sa.Send(context.Background(), Frame{Kind: 1}); err == nil {
			t.Fatal("sent on a closed session")
		}
		if _, err := sa.Recv(context.Background()); err == nil {
			t.Fatal("received on a closed session")
		}
	})
	t.Run("frames received before the end are still delivered", func(t *testing.T) {
		a, b := mk(t, 1, 1, nil)
		sa, sb := nextOf(t, a), nextOf(t, b)
		send(t, sa, Frame{Kind: 1, Epoch: 1, Payload: []byte("last words")})
		deadline := time.Now().Add(2 * time.Second)
		for sb.State().FramesIn == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		sa.Close(nil)
		<-sb.Done()
		if f := recv(t, sb, time.Second); string(f.Payload) != "last words" {
			t.Fatalf("got %q", f.Payload)
		}
	})
}
