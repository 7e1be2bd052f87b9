package blockreg

import (
	"bytes"
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"tandem/internal/blockdev"
	"tandem/internal/nbd"
)

func TestEncodeDecode(t *testing.T) {
	for _, v := range []uint64{1, 42, 1<<48 | 7} {
		if got := Decode(Encode(v, 4096)); got != v {
			t.Errorf("Decode(Encode(%d)) = %d", v, got)
		}
	}
	if got := Decode(make([]byte, 4096)); got != 0 {
		t.Errorf("zeroes decode to %d, want 0", got)
	}
	torn := Encode(5, 4096)
	copy(torn[2048:], Encode(6, 4096)[2048:])
	if got := Decode(torn); got != Bad {
		t.Errorf("a torn block decodes to %d, want Bad", got)
	}
}

// serve runs an NBD server of a memory device on loopback.
func serve(t *testing.T, dev blockdev.Device) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := nbd.NewServer(nil, nbd.Export{Name: "pg", Device: dev, MultiConn: true})
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// The workload against one healthy server gives a linearizable history in
// which nothing is lost; the history survives a trip through its file
// format.
func TestWorkloadOnAHealthyServer(t *testing.T) {
	addr := serve(t, blockdev.NewMem(1<<20))
	cfg := DefaultConfig()
	cfg.Addr, cfg.Export, cfg.Blocks, cfg.Seed, cfg.Stamp = addr, "pg", 8, 1, 3
	var buf bytes.Buffer
	rec := NewRecorder(&buf)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var acked atomic.Int64
	go func() {
		done <- Run(ctx, cfg, func(op Op) {
			rec.Record(op)
			if op.Write && op.Result == OK && acked.Add(1) == 200 {
				cancel()
			}
		})
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cfg.Final = true
	if err := Run(context.Background(), cfg, rec.Record); err != nil {
		t.Fatal(err)
	}
	ops, err := Parse(&buf)
	if err != nil || rec.Err() != nil {
		t.Fatal(err, rec.Err())
	}
	s := Count(ops)
	t.Log(s)
	if s.FinalReads != cfg.Blocks || s.Unknown != 0 {
		t.Fatalf("%v", s)
	}
	res, err := Check(ops, time.Minute, "")
	if err != nil || !res.Linearizable {
		t.Fatalf("a healthy server's history: %+v %v", res, err)
	}
	if lost := Lost(ops); len(lost) > 0 {
		t.Fatalf("lost %d writes, first %+v", len(lost), lost[0])
	}
}

// A server that forgets an acknowledged write (a replica promoted without
// it) is caught by both checks; a write of unknown outcome that never
// took effect is not held against it.
func TestCheckFindsALostWrite(t *testing.T) {
	ops := []Op{
		{Client: 0, Write: true, Block: 0, Value: 1, Call: 10, Return: 20, Result: OK},
		{Client: 1, Write: true, Block: 0, Value: 2, Call: 30, Return: 40, Result: OK},
		{Client: 0, Write: true, Block: 1, Value: 3, Call: 30, Return: 45, Result: TimedOut},
		{Client: 1, Block: 1, Call: 50, Return: 55, Result: OK},           // 3 not (yet) there
		{Client: 0, Block: 0, Call: 50, Return: 60, Result: OK, Value: 1}, // 2 lost
	}
	res, err := Check(ops, time.Minute, "")
	if err != nil || res.Linearizable || len(res.Explain) != 1 {
		t.Fatalf("a lost write: %+v %v", res, err)
	}
	t.Log(res.Explain[0])
	final := append(ops[:len(ops)-1:len(ops)-1], Op{Block: 0, Final: true, Call: 70, Return: 80, Result: OK, Value: 1},
		Op{Block: 1, Final: true, Call: 70, Return: 80, Result: OK, Value: 0})
	lost := Lost(final)
	if len(lost) != 1 || lost[0].Value != 2 {
		t.Fatalf("Lost = %+v, want write 2", lost)
	}
}
