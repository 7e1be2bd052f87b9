package replication

import (
	"testing"
	"time"
)

// benchPair is two connected machines whose local I/O completes at once:
// what the pure core costs per request, without disks or a network.
type benchPair struct {
	m    [2]*Machine
	now  time.Time
	wire [2][]Frame
	done int
}

func newBenchPair(b *testing.B, mode Mode) *benchPair {
	p := &benchPair{now: time.Unix(1, 0)}
	var gen GenID = 100
	for i, n := range []string{"a", "b"} {
		cfg := Config{Volume: VolumeID{1}, Node: n, Size: 1 << 30, Mode: mode, NewGenID: func() GenID { gen++; return gen }}
		m, err := New(cfg, Persisted{Meta: Meta{GenIDs: GenIDs{Current: 50}, Disk: UpToDate}}, p.now)
		if err != nil {
			b.Fatal(err)
		}
		p.m[i] = m
	}
	p.m[0].LinkUp(p.now)
	p.m[1].LinkUp(p.now)
	p.run()
	if err := p.m[0].Promote(p.now, 1, false); err != nil {
		b.Fatal(err)
	}
	p.run()
	return p
}

// run carries out actions until none is left: local I/O succeeds at once,
// frames are delivered in order.
func (p *benchPair) run() {
	for busy := true; busy; {
		busy = false
		for i, m := range p.m {
			for _, a := range m.Actions() {
				busy = true
				switch a := a.(type) {
				case WriteLocal:
					m.Done(p.now, Completion{ID: a.ID})
				case FlushLocal:
					m.Done(p.now, Completion{ID: a.ID})
				case ReadLocal:
					m.Done(p.now, Completion{ID: a.ID, Data: make([]byte, a.Len)})
				case Send:
					p.wire[i] = append(p.wire[i], a.Frame)
				case Complete:
					p.done++
				}
			}
			for _, f := range p.wire[i] {
				p.m[1-i].Receive(p.now, f)
			}
			p.wire[i] = p.wire[i][:0]
		}
	}
}

func benchWrites(b *testing.B, mode Mode, depth int) {
	p := newBenchPair(b, mode)
	data := make([]byte, 4096)
	b.SetBytes(4096)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += depth {
		for k := 0; k < depth; k++ {
			off := int64((i+k)%(1<<18)) * 4096
			p.m[0].Submit(p.now, Request{ID: uint64(i + k), Op: OpWrite, Off: off, Data: data})
		}
		p.run()
	}
	if p.done < b.N {
		b.Fatalf("%d of %d writes completed", p.done, b.N)
	}
}

// BenchmarkSyncWrite4K: the core's cost for a 4 KiB sync write, both
// machines included, one at a time and 32 at a time.
func BenchmarkSyncWrite4K(b *testing.B)         { benchWrites(b, Sync, 1) }
func BenchmarkSyncWrite4KDepth32(b *testing.B)  { benchWrites(b, Sync, 32) }
func BenchmarkAsyncWrite4KDepth32(b *testing.B) { benchWrites(b, Async, 32) }
