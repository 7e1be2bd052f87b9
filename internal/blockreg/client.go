package blockreg

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"tandem/internal/nbd"
)

// Config is a workload against one NBD export.
type Config struct {
	Addr   string // host:port of the export
	Export string
	// Blocks registers of BlockSize bytes, spread evenly over the export
	// (so they fall in different bitmap regions and extents).
	Blocks    int
	BlockSize int
	// Clients run one operation at a time each, on a connection of their
	// own, reconnecting after a failure.
	Clients int
	// Timeout of one operation: past it the connection is closed and the
	// operation's outcome is unknown.
	Timeout time.Duration
	// WritePercent of the operations are writes (a write and a flush);
	// the rest read.
	WritePercent int
	// Pace is a client's think time after each operation: it bounds the
	// history's length (a primary that writes alone takes ten thousand
	// writes a second, and porcupine's check grows with them).
	Pace time.Duration
	// Seed draws the operations; Stamp (at most 16 bits) goes into every
	// write's number, so two runs on one volume never write the same one.
	Seed  uint64
	Stamp uint16
	// Final: read every block once (retrying until answered or ctx ends)
	// and return, instead of the workload.
	Final bool
	// Dial connects to Addr (default: TCP).
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

// DefaultConfig: 64 blocks of 4 KiB, 4 clients, half writes, 6 s timeout
// (above the replication link's 5 s timeout, after which a sync primary
// that lost its peer goes on alone: a write stalled by a lost link is
// then acknowledged, not unknown), 5 ms between a client's operations (at
// most 800 a second).
func DefaultConfig() Config {
	return Config{Blocks: 64, BlockSize: 4096, Clients: 4, Timeout: 6 * time.Second, WritePercent: 50, Pace: 5 * time.Millisecond}
}

func (c *Config) validate() error {
	switch {
	case c.Addr == "" || c.Export == "":
		return errors.New("blockreg: an address and an export are needed")
	case c.Blocks <= 0 || c.BlockSize <= 0 || c.BlockSize%512 != 0:
		return fmt.Errorf("blockreg: %d blocks of %d bytes: need at least one block of a multiple of 512 bytes", c.Blocks, c.BlockSize)
	case c.Clients <= 0 || c.Timeout <= 0:
		return errors.New("blockreg: need a client and a positive timeout")
	case c.WritePercent < 0 || c.WritePercent > 100:
		return fmt.Errorf("blockreg: write percentage %d", c.WritePercent)
	case c.Pace < 0:
		return fmt.Errorf("blockreg: negative pace %v", c.Pace)
	}
	if c.Dial == nil {
		c.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	return nil
}

// workload is one run's shared state.
type workload struct {
	cfg    Config
	rec    func(Op)
	stride int64
	next   atomic.Uint64
}

// Run runs the workload until ctx ends (Final: until every block was
// read once), calling rec with every operation as it returns. Operations
// out when ctx ends finish (or time out) first.
func Run(ctx context.Context, cfg Config, rec func(Op)) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	w := &workload{cfg: cfg, rec: rec}
	var c *conn
	for c == nil { // the export's size fixes the layout
		var err error
		if c, err = w.dial(ctx); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("blockreg: no connection to %s: %w", cfg.Addr, err)
			}
			pause(ctx, 50*time.Millisecond)
		}
	}
	w.stride = c.c.Size() / int64(cfg.Blocks) / int64(cfg.BlockSize) * int64(cfg.BlockSize)
	if w.stride == 0 {
		c.close()
		return fmt.Errorf("blockreg: the export (%d bytes) is smaller than %d blocks of %d", c.c.Size(), cfg.Blocks, cfg.BlockSize)
	}
	if cfg.Final {
		return w.final(ctx, c)
	}
	var wg sync.WaitGroup
	for id := range cfg.Clients {
		first := c
		if id > 0 {
			first = nil
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.client(ctx, id, first)
		}()
	}
	wg.Wait()
	return nil
}

// conn is a client's connection.
type conn struct {
	nc net.Conn
	c  *nbd.Client
}

// close says goodbye (NBD_CMD_DISC) unless the server does not take it
// at once, and closes the connection.
func (c *conn) close() {
	c.nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	c.c.Close()
}

func (w *workload) dial(ctx context.Context) (*conn, error) {
	dctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	nc, err := w.cfg.Dial(dctx, w.cfg.Addr)
	if err != nil {
		return nil, err
	}
	// The handshake under the same deadline: a frozen server accepts
	// (its kernel does) and never answers.
	nc.SetDeadline(time.Now().Add(w.cfg.Timeout))
	c, err := nbd.NewClient(nc, w.cfg.Export)
	if err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	return &conn{nc: nc, c: c}, nil
}

func (w *workload) off(block int) int64 { return int64(block) * w.stride }

// client runs one client until ctx ends.
func (w *workload) client(ctx context.Context, id int, c *conn) {
	rng := rand.New(rand.NewPCG(w.cfg.Seed, uint64(id)))
	for ctx.Err() == nil {
		if c == nil {
			var err error
			if c, err = w.dial(ctx); err != nil {
				pause(ctx, 20*time.Millisecond) // retry pace while the VIP moves
				continue
			}
		}
		op := Op{Client: id, Block: rng.IntN(w.cfg.Blocks), Write: rng.IntN(100) < w.cfg.WritePercent}
		if op.Write {
			op.Value = uint64(w.cfg.Stamp)<<48 | w.next.Add(1)
		}
		w.do(c, &op)
		w.rec(op)
		if op.Result != OK {
			c.close()
			c = nil
		}
		pause(ctx, w.cfg.Pace)
	}
	if c != nil {
		c.close()
	}
}

// do runs op on c within the timeout and fills in its times and outcome.
func (w *workload) do(c *conn, op *Op) {
	var timedOut atomic.Bool
	timer := time.AfterFunc(w.cfg.Timeout, func() {
		timedOut.Store(true)
		c.nc.Close() // fails the call in flight
	})
	op.Call = time.Now().UnixNano()
	var err error
	if op.Write {
		if _, err = c.c.WriteAt(Encode(op.Value, w.cfg.BlockSize), w.off(op.Block)); err == nil {
			err = c.c.Flush()
		}
	} else {
		buf := make([]byte, w.cfg.BlockSize)
		if _, err = c.c.ReadAt(buf, w.off(op.Block)); err == nil {
			op.Value = Decode(buf)
		}
	}
	op.Return = time.Now().UnixNano()
	timer.Stop()
	switch {
	case err == nil:
		op.Result = OK
	case timedOut.Load():
		op.Result, op.Err = TimedOut, err.Error()
	default:
		op.Result, op.Err = Failed, err.Error()
	}
}

// final reads every block once, reconnecting as needed.
func (w *workload) final(ctx context.Context, c *conn) error {
	defer func() {
		if c != nil {
			c.close()
		}
	}()
	for b := 0; b < w.cfg.Blocks; {
		if ctx.Err() != nil {
			return fmt.Errorf("blockreg: final read: %d of %d blocks read: %w", b, w.cfg.Blocks, ctx.Err())
		}
		if c == nil {
			var err error
			if c, err = w.dial(ctx); err != nil {
				pause(ctx, 20*time.Millisecond)
				continue
			}
		}
		op := Op{Block: b, Final: true}
		w.do(c, &op)
		w.rec(op)
		if op.Result != OK {
			c.close()
			c = nil
			continue
		}
		b++
	}
	return nil
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
