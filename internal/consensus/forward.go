package consensus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"tandem/internal/state"
)

// A member that does not lead forwards its proposals to the leader over an
// authenticated connection (purposeForward), one JSON request and one JSON
// answer at a time. The connection is kept for the next proposal: a TLS
// handshake per proposal cost 1–2 ms on a quiet machine and several on a
// busy one, twice on the path of a handover on stop (the leaving mark,
// then the handed-over report).

type forwardRequest struct {
	Command state.Command `json:"command"`
}

type forwardResponse struct {
	// Index is the raft index at which the leader applied the command
	// (0 when it did not): the member waits until it applied it too.
	Index    uint64 `json:"index,omitempty"`
	Error    string `json:"error,omitempty"`
	Stale    bool   `json:"stale,omitempty"`
	NoLeader bool   `json:"no_leader,omitempty"`
}

// The leader closes a forward connection idle for forwardIdle; a member
// reuses one only while it has been idle for less than forwardReuse, well
// before, so a reused connection is not one the leader is closing.
const (
	forwardIdle  = 30 * time.Second
	forwardReuse = 10 * time.Second
	// forwardIdleMax is how many idle connections a member keeps per
	// leader: proposals rarely overlap.
	forwardIdleMax = 2
)

// forwardPool keeps idle forward connections by leader.
type forwardPool struct {
	mu     sync.Mutex
	closed bool
	idle   map[string][]idleConn
}

type idleConn struct {
	c     net.Conn
	since time.Time
}

// get returns the most recently used idle connection to leader, or nil.
func (p *forwardPool) get(leader string) net.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for cs := p.idle[leader]; len(cs) > 0; cs = p.idle[leader] {
		ic := cs[len(cs)-1]
		p.idle[leader] = cs[:len(cs)-1]
		if time.Since(ic.since) < forwardReuse {
			return ic.c
		}
		ic.c.Close()
	}
	return nil
}

// put keeps c for the next proposal to leader, or closes it.
func (p *forwardPool) put(leader string, c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle[leader]) >= forwardIdleMax {
		c.Close()
		return
	}
	if p.idle == nil {
		p.idle = map[string][]idleConn{}
	}
	p.idle[leader] = append(p.idle[leader], idleConn{c, time.Now()})
}

func (p *forwardPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, cs := range p.idle {
		for _, ic := range cs {
			ic.c.Close()
		}
	}
	p.idle = nil
}

func (c *Consensus) forward(ctx context.Context, leader string, cmd state.Command) (uint64, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*c.cfg.Timeout)
		defer cancel()
	}
	if conn := c.fwd.get(leader); conn != nil {
		// A leader that froze while the connection idled would hold the
		// answer until ctx ends, and Propose could not turn to the next
		// leader: wait no longer than a new dial may take.
		kctx, cancel := context.WithTimeout(ctx, c.mux.dialTO)
		idx, err := c.roundTrip(kctx, conn, leader, cmd)
		cancel()
		if !errors.Is(err, errAnswerLost) {
			return idx, err
		}
		// The kept connection broke (the leader restarted, closed it, or
		// froze): try a new one at once. The proposal's ID makes a second
		// application of a request that did arrive change nothing.
	}
	conn, err := c.mux.dial(ctx, raft.ServerAddress(leader), purposeForward)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNoLeader, err)
	}
	return c.roundTrip(ctx, conn, leader, cmd)
}

// roundTrip sends cmd on conn and reads the answer; conn goes back to the
// pool after a whole exchange and is closed after any failure.
func (c *Consensus) roundTrip(ctx context.Context, conn net.Conn, leader string, cmd state.Command) (uint64, error) {
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	// Once the request may have left, a failure leaves its outcome
	// unknown: Propose retries.
	if err := json.NewEncoder(conn).Encode(forwardRequest{Command: cmd}); err != nil {
		conn.Close()
		return 0, fmt.Errorf("%w: forward to %s: %v", errAnswerLost, leader, err)
	}
	// One answer is one line; a decoder reading ahead could only take
	// bytes of an answer that is not sent before the next request.
	var resp forwardResponse
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		conn.Close()
		return 0, fmt.Errorf("%w: forward to %s: %v", errAnswerLost, leader, err)
	}
	conn.SetDeadline(time.Time{})
	c.fwd.put(leader, conn)
	switch {
	case resp.Stale: // the text is the state's own ("state: stale epoch: …")
		return resp.Index, state.Outcome{Error: resp.Error, Stale: true}.Err()
	case resp.NoLeader:
		return 0, fmt.Errorf("%w: %s", ErrNoLeader, resp.Error)
	case resp.Error != "":
		return resp.Index, errors.New(resp.Error)
	}
	return resp.Index, nil
}

// serveForward answers the requests forwarded on conn, one at a time, until
// the member stops, the dialer closes it or it idles for forwardIdle.
func (c *Consensus) serveForward(conn net.Conn) {
	conn.SetDeadline(time.Now().Add(10 * c.cfg.Timeout))
	select { // a proposal forwarded while this member is still starting
	case <-c.ready:
	case <-c.stop:
		return
	}
	done := make(chan struct{})
	defer close(done)
	go func() { // a kept connection must not hold a stopping member up
		select {
		case <-c.stop:
			conn.Close()
		case <-done:
		}
	}()
	in := &limitedReader{c: conn}
	dec := json.NewDecoder(in)
	enc := json.NewEncoder(conn)
	for {
		in.n = maxForwardRequest
		conn.SetDeadline(time.Now().Add(forwardIdle))
		var req forwardRequest
		if err := dec.Decode(&req); err != nil {
			return
		}
		conn.SetDeadline(time.Now().Add(10 * c.cfg.Timeout))
		var resp forwardResponse
		if !c.IsLeader() {
			resp.NoLeader, resp.Error = true, "not the leader"
		} else {
			var err error
			resp.Index, err = c.applyLocal(context.Background(), req.Command)
			if err != nil {
				resp.Error = err.Error()
				resp.Stale = state.IsStaleEpoch(err)
				resp.NoLeader = errors.Is(err, ErrNoLeader)
			}
		}
		if c.cfg.dropAnswer != nil && c.cfg.dropAnswer(req.Command) {
			return
		}
		if err := enc.Encode(resp); err != nil {
			return
		}
	}
}

// maxForwardRequest caps one forwarded request.
const maxForwardRequest = 1 << 20

// limitedReader caps what a forwarded request may send; serveForward
// resets n before each request.
type limitedReader struct {
	c net.Conn
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("consensus: request too large")
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.c.Read(p)
	l.n -= int64(n)
	return n, err
}
