package link

import (
	"context"
	"errors"
	"testing"
	"time"

	"tandem/internal/clock"
	"tandem/internal/replication"
)

type memPair struct {
	clk    *clock.Fake
	n      *MemNetwork
	a, b   *MemEndpoint
	ea, eb *events
}

func newMemPair(t *testing.T, mut func(a, b *MemConfig)) *memPair {
	p := &memPair{clk: clock.NewFake(time.Unix(0, 0)), ea: newEvents(t), eb: newEvents(t)}
	p.n = NewMemNetwork(p.clk)
	ca := MemConfig{Self: "a", Peer: "b", Volume: testVolume, Size: 1 << 30, Window: 2, Timeout: time.Second, Reconnect: 100 * time.Millisecond, OnEvent: p.ea.on}
	cb := MemConfig{Self: "b", Peer: "a", Volume: testVolume, Size: 1 << 30, Window: 2, Timeout: time.Second, Reconnect: 100 * time.Millisecond, OnEvent: p.eb.on}
	if mut != nil {
		mut(&ca, &cb)
	}
	var err error
	if p.a, err = p.n.Endpoint(ca); err != nil {
		t.Fatal(err)
	}
	if p.b, err = p.n.Endpoint(cb); err != nil {
		t.Fatal(err)
	}
	return p
}

func ended(s Session) bool {
	select {
	case <-s.Done():
		return true
	default:
		return false
	}
}

func TestMemMismatchIsRefusedOnBothSides(t *testing.T) {
	p := newMemPair(t, func(a, b *MemConfig) { b.Size = 5 })
	ea, ok := p.ea.wait(EventRefused, time.Second, nil)
	if !ok || !IsRefused(ea.Err, RefuseSize) {
		t.Fatalf("a: %v", ea.Err)
	}
	if eb, ok := p.eb.wait(EventRefused, time.Second, nil); !ok || !IsRefused(eb.Err, RefuseSize) {
		t.Fatalf("b: %v", eb.Err)
	}
	p = newMemPair(t, func(a, b *MemConfig) { a.Port, b.Port = "7789", "7789"; b.Volume = replication.VolumeID{7} })
	if ea, ok := p.ea.wait(EventRefused, time.Second, nil); !ok || !IsRefused(ea.Err, RefuseVolume) {
		t.Fatalf("a: %v", ea.Err)
	}
}

func TestMemPartitionAndHeal(t *testing.T) {
	p := newMemPair(t, nil)
	sa, sb := nextOf(t, p.a), nextOf(t, p.b)
	p.n.Partition("a", "b")
	if !ended(sa) || !ended(sb) {
		t.Fatal("a partition left the session up")
	}
	p.clk.Advance(time.Second) // reconnects find the partition
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := p.a.Next(ctx); err == nil {
		t.Fatal("a session across a partition")
	}
	p.n.Heal("a", "b")
	sa, sb = nextOf(t, p.a), nextOf(t, p.b)
	send(t, sa, Frame{Kind: 1})
	if f := recv(t, sb, time.Second); f.Seq != 1 {
		t.Fatalf("a new session starts at sequence 1, got %d", f.Seq)
	}
}

func TestMemCutOneWayEndsAfterTimeout(t *testing.T) {
	p := newMemPair(t, nil)
	sa, sb := nextOf(t, p.a), nextOf(t, p.b)
	p.n.Cut("a", "b")
	send(t, sa, Frame{Kind: 1}) // lost
	send(t, sb, Frame{Kind: 1}) // the other way still works
	recv(t, sa, time.Second)
	p.clk.Advance(999 * time.Millisecond)
	if ended(sb) {
		t.Fatal("ended before the timeout")
	}
	p.clk.Advance(time.Millisecond)
	if !ended(sb) || !errors.Is(sb.Err(), ErrTimeout) || !ended(sa) {
		t.Fatalf("after the timeout: b %v, a %v", sb.Err(), sa.Err())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := sb.Recv(ctx); err == nil {
		t.Fatal("b received the frame lost in the cut")
	}
}

func TestMemDelayKeepsOrder(t *testing.T) {
	p := newMemPair(t, func(a, b *MemConfig) { a.Window, b.Window = 8, 8 })
	sa, sb := nextOf(t, p.a), nextOf(t, p.b)
	p.n.SetDelay(10 * time.Millisecond)
	send(t, sa, Frame{Kind: 1})
	p.n.SetDelay(time.Millisecond) // a later frame must not overtake
	send(t, sa, Frame{Kind: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := sb.Recv(ctx); err == nil {
		t.Fatal("delivered before its delay")
	}
	p.clk.Advance(10 * time.Millisecond)
	if f := recv(t, sb, time.Second); f.Kind != 1 {
		t.Fatalf("first delivered: %v", f.Kind)
	}
	if f := recv(t, sb, time.Second); f.Kind != 2 {
		t.Fatalf("second delivered: %v", f.Kind)
	}
}

func TestMemFilterBreaksTheSessionAtAFrame(t *testing.T) {
	p := newMemPair(t, nil)
	sa, sb := nextOf(t, p.a), nextOf(t, p.b)
	p.n.SetFilter(func(from, to string, f Frame) bool { return !(from == "a" && f.Seq == 2) })
	send(t, sa, Frame{Kind: 1})
	if _, err := sa.Send(context.Background(), Frame{Kind: 1}); err == nil {
		t.Fatal("the broken frame was sent")
	}
	if f := recv(t, sb, time.Second); f.Seq != 1 {
		t.Fatalf("got %d", f.Seq)
	}
	if _, err := sb.Recv(context.Background()); err == nil {
		t.Fatal("b received past the break")
	}
	p.n.SetFilter(nil)
	p.clk.Advance(100 * time.Millisecond)
	nextOf(t, p.a)
}

func TestMemDropLosesFramesSilently(t *testing.T) {
	p := newMemPair(t, nil)
	sa, sb := nextOf(t, p.a), nextOf(t, p.b)
	p.n.SetDrop(func(from, to string, f Frame) bool { return from == "a" && f.Seq >= 2 })
	for range 4 { // more than the window: a dropped frame frees its slot
		send(t, sa, Frame{Kind: 1})
	}
	if f := recv(t, sb, time.Second); f.Seq != 1 {
		t.Fatalf("got %d", f.Seq)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := sb.Recv(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("b past the drop: %v (want nothing, the session alive)", err)
	}
	send(t, sb, Frame{Kind: 1}) // the other way still goes
	if f := recv(t, sa, time.Second); f.Seq != 1 {
		t.Fatalf("a got %d", f.Seq)
	}
}

func TestMemSendBlocksWhenTheWindowIsFull(t *testing.T) {
	p := newMemPair(t, nil) // window 2
	sa, sb := nextOf(t, p.a), nextOf(t, p.b)
	send(t, sa, Frame{Kind: 1})
	send(t, sa, Frame{Kind: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := sa.Send(ctx, Frame{Kind: 1}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a third frame into a window of 2: %v", err)
	}
	recv(t, sb, time.Second)
	send(t, sa, Frame{Kind: 1})
}
