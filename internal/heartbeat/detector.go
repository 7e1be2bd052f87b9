package heartbeat

import (
	"math/bits"
	"time"
)

// sentRounds remembers when this node sent its recent rounds, so an echo can
// be checked for freshness and turned into an RTT.
type sentRounds struct {
	ring [1024]struct {
		round uint64
		at    time.Time
	}
}

func (s *sentRounds) add(round uint64, at time.Time) {
	e := &s.ring[round%uint64(len(s.ring))]
	e.round, e.at = round, at
}

// at returns when round was sent, if it is still remembered.
func (s *sentRounds) at(round uint64) (time.Time, bool) {
	if round == 0 {
		return time.Time{}, false
	}
	e := s.ring[round%uint64(len(s.ring))]
	return e.at, e.round == round
}

// linkState is what one node knows about one link to one peer.
type linkState struct {
	up        bool
	since     time.Time // of the current up/down state
	lastValid time.Time // last datagram proving the path works both ways
	// newest round received from the peer on this link, and when: echoed
	// back in our next datagram on this link.
	echoRound uint64
	echoAt    time.Time
	rtt       time.Duration // smoothed
	// loss window: bit i of recv is round hi-i received.
	hi, first uint64
	recv      uint64
}

func (l *linkState) noteRound(r uint64) {
	if r == 0 {
		return
	}
	if l.first == 0 {
		l.first, l.hi = r, r
	}
	switch {
	case r > l.hi:
		shift := r - l.hi
		if shift >= 64 {
			l.recv = 0
		} else {
			l.recv <<= shift
		}
		l.hi = r
		l.recv |= 1
	case l.hi-r < 64:
		l.recv |= 1 << (l.hi - r)
	default: // far behind: the peer restarted; start a new loss window
		l.first, l.hi, l.recv = r, r, 1
	}
}

// lossWindow is how many of the peer's rounds the loss figure covers
// (one second at the default 50 ms interval).
const lossWindow = 20

// loss returns the fraction of the peer's last lossWindow rounds that did
// not arrive on this link. Rounds the peer must have sent while the link was
// silent (one per interval) count as lost, so a dead link shows 100 %.
func (l *linkState) loss(now time.Time, interval time.Duration) float64 {
	if l.first == 0 {
		return 1
	}
	missing := uint64(0)
	if silent := now.Sub(l.lastValid); interval > 0 && silent > interval {
		missing = uint64(silent/interval) - 1
	}
	if missing >= lossWindow {
		return 1
	}
	want := uint64(lossWindow) - missing // newest received-window rounds to look at
	if span := l.hi - l.first + 1; span < want {
		want = span
	}
	got := bits.OnesCount64(l.recv & (1<<want - 1))
	return 1 - float64(got)/float64(want+missing)
}

func (l *linkState) noteRTT(sample time.Duration) {
	if sample < 0 {
		sample = 0
	}
	if l.rtt == 0 {
		l.rtt = sample
		return
	}
	l.rtt = (7*l.rtt + sample) / 8
}

// peerState is what one node knows about one peer.
type peerState struct {
	name  string
	links []linkState
	up    bool
	since time.Time
	// lastHeard is the newest lastValid over all links.
	lastHeard time.Time
	// seen is the peer's own view (bit i: it sees voter i), as last reported.
	seen uint16
	// applied is the peer's applied consensus index, as last reported.
	applied uint64
}
