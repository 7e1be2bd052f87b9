package nbd

import (
	"bufio"
	"fmt"
	"net"
	"time"
)

// refuse turns away a connection over Limits.MaxConns. The client is told
// why, as the protocol allows: every option it sends is answered
// NBD_REP_ERR_POLICY with the reason, which qemu prints and libnbd reports
// as "server policy prevents NBD_OPT_GO". At most maxRefusing refusals run
// at once, each for at most refuseTimeout; beyond that the connection is
// closed at once. The log says so at most once a second, with the count.
func (s *Server) refuse(nc net.Conn) {
	s.metrics.Load().connRefused("full")
	s.mu.Lock()
	talk := s.refusing < maxRefusing && !s.closed
	if talk {
		s.refusing++
		s.refused[nc] = struct{}{}
		s.connWG.Add(1)
	}
	count := s.shouldLogRefusal(&s.fullLog)
	limit := s.limits.MaxConns
	s.mu.Unlock()
	if count > 0 {
		s.log.Warn("nbd: refusing connections: the server is full", "remote", nc.RemoteAddr().String(),
			"max_conns", limit, "refused_since_last_log", count)
	}
	if !talk {
		nc.Close()
		return
	}
	go func() {
		defer func() {
			nc.Close()
			s.mu.Lock()
			s.refusing--
			delete(s.refused, nc)
			s.mu.Unlock()
			s.connWG.Done()
		}()
		nc.SetDeadline(time.Now().Add(refuseTimeout))
		n := &negotiation{s: s, r: bufio.NewReaderSize(nc, 4<<10), w: bufio.NewWriterSize(nc, 4<<10),
			refusal: fmt.Sprintf("too many connections (this server allows %d at once); try again later", limit)}
		n.run()
	}()
}

// turnAway closes a connection from an address not in the allow-list,
// before anything is read or sent.
func (s *Server) turnAway(nc net.Conn) {
	nc.Close()
	s.metrics.Load().connRefused("not_allowed")
	s.mu.Lock()
	count := s.shouldLogRefusal(&s.deniedLog)
	s.mu.Unlock()
	if count > 0 {
		s.log.Warn("nbd: refusing a client not in the allow-list", "remote", nc.RemoteAddr().String(),
			"refused_since_last_log", count)
	}
}

// refusalLog rate-limits one kind of refusal message to one a second.
type refusalLog struct {
	last  time.Time
	count int
}

// shouldLogRefusal counts a refusal and returns how many to report now
// (0: stay quiet). Called with s.mu held.
func (s *Server) shouldLogRefusal(l *refusalLog) int {
	l.count++
	if now := time.Now(); now.Sub(l.last) >= time.Second {
		n := l.count
		l.last, l.count = now, 0
		return n
	}
	return 0
}
