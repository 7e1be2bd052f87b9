package clock

import (
	"testing"
	"time"
)

func TestFakeFiresInOrder(t *testing.T) {
	start := time.Unix(1000, 0)
	f := NewFake(start)
	var got []time.Duration
	f.AfterFunc(30*time.Millisecond, func() { got = append(got, f.Since(start)) })
	f.AfterFunc(10*time.Millisecond, func() { got = append(got, f.Since(start)) })
	stopped := f.AfterFunc(20*time.Millisecond, func() { t.Fatal("stopped timer fired") })
	if !stopped.Stop() {
		t.Fatal("Stop on an active timer returned false")
	}
	f.Advance(25 * time.Millisecond)
	if len(got) != 1 || got[0] != 10*time.Millisecond {
		t.Fatalf("after 25ms got %v, want [10ms]", got)
	}
	f.Advance(10 * time.Millisecond)
	if len(got) != 2 || got[1] != 30*time.Millisecond {
		t.Fatalf("after 35ms got %v", got)
	}
	if f.Since(start) != 35*time.Millisecond {
		t.Fatalf("now = %v", f.Since(start))
	}
}

func TestFakeTicker(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	tk := f.NewTicker(10 * time.Millisecond)
	n := 0
	for i := 0; i < 5; i++ {
		f.Advance(10 * time.Millisecond)
		select {
		case <-tk.C():
			n++
		default:
		}
	}
	if n != 5 {
		t.Fatalf("ticks = %d, want 5", n)
	}
	tk.Stop()
	f.Advance(time.Second)
	select {
	case <-tk.C():
		t.Fatal("stopped ticker ticked")
	default:
	}
}
