package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"tandem/internal/replication"
)

// Hello is what each side says about itself once TLS is up: the dialler
// first, the listener in answer. Its frame's header carries the volume ID.
//
//	offset size field
//	0      1    version (1)
//	1      1    flags: bit 0 = switch (move the live session to this path)
//	2      16   session ID (the dialler's choice; echoed)
//	18     8    volume size in bytes
//	26     8    newest epoch the sender has seen
//	34     1    n: length of the node name (1..maxName)
//	35     n    node name
type Hello struct {
	Node    string
	Volume  replication.VolumeID
	Size    uint64
	Epoch   replication.Epoch
	Session SessionID
	Switch  bool
}

// SessionID names one session across the paths it moves between.
type SessionID [16]byte

const (
	helloVersion = 1
	helloFixed   = 35
	maxName      = 255
	flagSwitch   = 1
	// maxHandshakePayload bounds what is read before the peer has proved
	// who it is and what volume it has.
	maxHandshakePayload = helloFixed + maxName + 3 + maxRefusalMsg
)

func (h *Hello) frame() Frame {
	p := make([]byte, helloFixed, helloFixed+len(h.Node))
	p[0] = helloVersion
	if h.Switch {
		p[1] = flagSwitch
	}
	copy(p[2:18], h.Session[:])
	binary.BigEndian.PutUint64(p[18:], h.Size)
	binary.BigEndian.PutUint64(p[26:], uint64(h.Epoch))
	p[34] = byte(len(h.Node))
	p = append(p, h.Node...)
	return Frame{Kind: kindHello, Volume: h.Volume, Epoch: h.Epoch, Payload: p}
}

func parseHello(f Frame) (Hello, error) {
	p := f.Payload
	if len(p) < helloFixed {
		return Hello{}, fmt.Errorf("%w: hello of %d bytes", ErrFrame, len(p))
	}
	if p[0] != helloVersion {
		return Hello{}, fmt.Errorf("%w: hello version %d, this node speaks %d", ErrFrame, p[0], helloVersion)
	}
	if p[1]&^flagSwitch != 0 {
		return Hello{}, fmt.Errorf("%w: hello flags %#x, this node knows %#x", ErrFrame, p[1], flagSwitch)
	}
	n := int(p[34])
	if n == 0 || len(p) != helloFixed+n {
		return Hello{}, fmt.Errorf("%w: hello with a %d-byte name in %d bytes", ErrFrame, n, len(p))
	}
	h := Hello{
		Node:   string(p[helloFixed:]),
		Volume: f.Volume,
		Size:   binary.BigEndian.Uint64(p[18:]),
		Epoch:  replication.Epoch(binary.BigEndian.Uint64(p[26:])),
		Switch: p[1]&flagSwitch != 0,
	}
	copy(h.Session[:], p[2:18])
	return h, nil
}

// RefuseCode says why a side refused a connection or ended a session.
type RefuseCode uint8

const (
	RefuseVolume   RefuseCode = 1 // the volume IDs differ
	RefuseSize     RefuseCode = 2 // the volume sizes differ
	RefusePeer     RefuseCode = 3 // not this volume's peer
	RefuseBusy     RefuseCode = 4 // a session is live already
	RefuseSession  RefuseCode = 5 // a switch to a session that is not live
	RefuseProtocol RefuseCode = 6 // a frame out of place, a sequence gap
	RefuseClosed   RefuseCode = 7 // the session was closed (the message says why)
)

var refuseNames = map[RefuseCode]string{
	RefuseVolume: "volume mismatch", RefuseSize: "size mismatch", RefusePeer: "wrong peer",
	RefuseBusy: "already connected", RefuseSession: "no such session", RefuseProtocol: "protocol error",
	RefuseClosed: "closed",
}

func (c RefuseCode) String() string {
	if s, ok := refuseNames[c]; ok {
		return s
	}
	return fmt.Sprintf("refusal %d", uint8(c))
}

const maxRefusalMsg = 1024

// RefusedError is a refusal, sent or received. Both sides report the same
// message; ByPeer says which side refused.
type RefusedError struct {
	Code   RefuseCode
	Msg    string
	ByPeer bool
}

func (e *RefusedError) Error() string {
	who := "refused"
	if e.ByPeer {
		who = "refused by the peer"
	}
	return fmt.Sprintf("link: %s (%v): %s", who, e.Code, e.Msg)
}

// IsRefused reports whether err is a refusal with code.
func IsRefused(err error, code RefuseCode) bool {
	var r *RefusedError
	return errors.As(err, &r) && r.Code == code
}

// offset size field
// 0      1    code
// 1      2    n: message length (at most 1024)
// 3      n    message (UTF-8)
func (e *RefusedError) frame(v replication.VolumeID) Frame {
	msg := e.Msg
	if len(msg) > maxRefusalMsg {
		msg = msg[:maxRefusalMsg]
	}
	p := make([]byte, 3, 3+len(msg))
	p[0] = byte(e.Code)
	binary.BigEndian.PutUint16(p[1:], uint16(len(msg)))
	return Frame{Kind: kindRefuse, Volume: v, Payload: append(p, msg...)}
}

func parseRefusal(f Frame) (*RefusedError, error) {
	p := f.Payload
	if len(p) < 3 || len(p) != 3+int(binary.BigEndian.Uint16(p[1:])) || len(p) > 3+maxRefusalMsg {
		return nil, fmt.Errorf("%w: refusal of %d bytes", ErrFrame, len(p))
	}
	return &RefusedError{Code: RefuseCode(p[0]), Msg: string(p[3:]), ByPeer: true}, nil
}

// checkHello is what both sides check of the other's hello: the node the
// volume is replicated with, the same volume, the same size.
func checkHello(self, peer *Hello, wantPeer string) *RefusedError {
	switch {
	case peer.Node != wantPeer:
		return &RefusedError{Code: RefusePeer, Msg: fmt.Sprintf("%s replicates volume %v with %s, not %s", self.Node, self.Volume, wantPeer, peer.Node)}
	case peer.Volume != self.Volume:
		return &RefusedError{Code: RefuseVolume, Msg: fmt.Sprintf("volume ID differs: %s has %v, %s has %v (not replicas of one volume)", self.Node, self.Volume, peer.Node, peer.Volume)}
	case peer.Size != self.Size:
		return &RefusedError{Code: RefuseSize, Msg: fmt.Sprintf("volume %v: size differs: %s has %d bytes, %s has %d bytes", self.Volume, self.Node, self.Size, peer.Node, peer.Size)}
	}
	return nil
}

// StaleError is a frame the peer refused because its epoch is older than
// the newest the peer has seen: the sender has been deposed (S2).
type StaleError struct {
	Newest replication.Epoch // the newest epoch the peer has seen
	Epoch  replication.Epoch // the refused frame's
	Seq    uint64            // the refused frame's
	Kind   Kind              // the refused frame's
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("link: stale epoch: the peer refused frame %d (%v) of epoch %d; it has seen epoch %d", e.Seq, e.Kind, e.Epoch, e.Newest)
}

// IsStaleEpoch reports whether err is a StaleError.
func IsStaleEpoch(err error) bool {
	var s *StaleError
	return errors.As(err, &s)
}

//	offset size field
//	0      8    sequence of the refused frame
//	8      1    kind of the refused frame
//	9      8    epoch of the refused frame
//
// The header's epoch is the newest the refusing side has seen.
const stalePayload = 17

func (e *StaleError) frame(v replication.VolumeID) Frame {
	p := make([]byte, stalePayload)
	binary.BigEndian.PutUint64(p, e.Seq)
	p[8] = byte(e.Kind)
	binary.BigEndian.PutUint64(p[9:], uint64(e.Epoch))
	return Frame{Kind: KindStale, Volume: v, Epoch: e.Newest, Payload: p}
}

// DecodeStale reads a KindStale frame returned by Recv.
func DecodeStale(f Frame) (*StaleError, error) {
	if f.Kind != KindStale || len(f.Payload) != stalePayload {
		return nil, fmt.Errorf("%w: not a stale-epoch refusal (%v, %d bytes)", ErrFrame, f.Kind, len(f.Payload))
	}
	return &StaleError{
		Newest: f.Epoch,
		Seq:    binary.BigEndian.Uint64(f.Payload),
		Kind:   Kind(f.Payload[8]),
		Epoch:  replication.Epoch(binary.BigEndian.Uint64(f.Payload[9:])),
	}, nil
}

// fence is the newest epoch one node has seen for one volume: from its
// configuration (the metadata's last epoch), the peer's hello, every frame
// it accepted, and the engine (Observe). It outlives sessions.
type fence struct{ newest atomic.Uint64 }

// observe raises the fence to e and reports whether it rose.
func (f *fence) observe(e replication.Epoch) bool {
	for {
		old := f.newest.Load()
		if uint64(e) <= old {
			return false
		}
		if f.newest.CompareAndSwap(old, uint64(e)) {
			return true
		}
	}
}

func (f *fence) get() replication.Epoch { return replication.Epoch(f.newest.Load()) }

// admit takes a data frame's epoch into the fence and, when the frame is
// fenced and older than the newest epoch seen, returns the refusal to send
// back. raised reports that the frame's epoch is the newest now.
func (f *fence) admit(h *Header, fenced bool) (stale *StaleError, raised bool) {
	raised = f.observe(h.Epoch)
	if newest := f.get(); fenced && h.Epoch < newest {
		return &StaleError{Newest: newest, Epoch: h.Epoch, Seq: h.Seq, Kind: h.Kind}, false
	}
	return nil, raised
}

// nextSeq is the sequence number of a data frame sent after last: the
// sender's own when it gives one (it must rise), else last+1.
func nextSeq(last, own uint64) (uint64, error) {
	if own == 0 {
		return last + 1, nil
	}
	if own <= last {
		return 0, fmt.Errorf("link: send: sequence %d after %d: sequence numbers must rise", own, last)
	}
	return own, nil
}
