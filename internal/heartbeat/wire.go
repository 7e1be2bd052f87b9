package heartbeat

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// MsgKind distinguishes a heartbeat round from an immediate lease reply.
type MsgKind uint8

const (
	KindHeartbeat MsgKind = 1 // one round of a sender, sent to every peer on every link
	KindLeaseAck  MsgKind = 2 // immediate answer to the lease requests of a round
)

// Message is the plaintext payload of a datagram (see package seal for the
// envelope). Field order on the wire is the field order here.
type Message struct {
	Kind       MsgKind
	ConfigHash uint32 // fingerprint of the voter list; mismatches are dropped
	Round      uint64 // sender's round; 0 in a lease ack
	// Echo is the newest round the sender received from the destination on
	// this same link, and EchoDelay how long (µs) the sender held it. They
	// prove the path works both ways and give the RTT.
	Echo      uint64
	EchoDelay uint32
	Seen      uint16 // bit i: the sender currently sees voter i alive
	Applied   uint64 // sender's applied consensus index (diagnostics)
	Requests  []LeaseRequest
	Acks      []LeaseAck
	Releases  []LeaseRelease
}

// LeaseRequest asks a voter to vouch for the sender holding Group at Epoch.
type LeaseRequest struct {
	Group string
	Epoch uint64
}

// LeaseAck grants the request of round Round.
type LeaseAck struct {
	Group string
	Epoch uint64
	Round uint64
}

// LeaseRelease gives a lease back early (after a clean stop).
type LeaseRelease struct {
	Group string
	Epoch uint64
}

// Limits keep a datagram under a typical MTU and bound decoder work.
const (
	MaxEntries   = 32
	MaxGroupName = 63
	fixedSize    = 1 + 4 + 8 + 8 + 4 + 2 + 8 + 3
)

var errMalformed = errors.New("heartbeat: malformed message")

// Append encodes m onto b.
func (m *Message) Append(b []byte) ([]byte, error) {
	if len(m.Requests) > MaxEntries || len(m.Acks) > MaxEntries || len(m.Releases) > MaxEntries {
		return nil, fmt.Errorf("heartbeat: more than %d lease entries", MaxEntries)
	}
	b = append(b, byte(m.Kind))
	b = binary.BigEndian.AppendUint32(b, m.ConfigHash)
	b = binary.BigEndian.AppendUint64(b, m.Round)
	b = binary.BigEndian.AppendUint64(b, m.Echo)
	b = binary.BigEndian.AppendUint32(b, m.EchoDelay)
	b = binary.BigEndian.AppendUint16(b, m.Seen)
	b = binary.BigEndian.AppendUint64(b, m.Applied)
	b = append(b, byte(len(m.Requests)), byte(len(m.Acks)), byte(len(m.Releases)))
	var err error
	for _, r := range m.Requests {
		if b, err = appendEntry(b, r.Group, r.Epoch); err != nil {
			return nil, err
		}
	}
	for _, a := range m.Acks {
		if b, err = appendEntry(b, a.Group, a.Epoch); err != nil {
			return nil, err
		}
		b = binary.BigEndian.AppendUint64(b, a.Round)
	}
	for _, r := range m.Releases {
		if b, err = appendEntry(b, r.Group, r.Epoch); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func appendEntry(b []byte, group string, epoch uint64) ([]byte, error) {
	if len(group) == 0 || len(group) > MaxGroupName {
		return nil, fmt.Errorf("heartbeat: group name %q length out of range", group)
	}
	b = append(b, byte(len(group)))
	b = append(b, group...)
	return binary.BigEndian.AppendUint64(b, epoch), nil
}

// Decode parses a payload. It never panics on any input.
func Decode(b []byte) (*Message, error) {
	if len(b) < fixedSize {
		return nil, errMalformed
	}
	m := &Message{
		Kind:       MsgKind(b[0]),
		ConfigHash: binary.BigEndian.Uint32(b[1:]),
		Round:      binary.BigEndian.Uint64(b[5:]),
		Echo:       binary.BigEndian.Uint64(b[13:]),
		EchoDelay:  binary.BigEndian.Uint32(b[21:]),
		Seen:       binary.BigEndian.Uint16(b[25:]),
		Applied:    binary.BigEndian.Uint64(b[27:]),
	}
	if m.Kind != KindHeartbeat && m.Kind != KindLeaseAck {
		return nil, fmt.Errorf("%w: kind %d", errMalformed, m.Kind)
	}
	nReq, nAck, nRel := int(b[35]), int(b[36]), int(b[37])
	if nReq > MaxEntries || nAck > MaxEntries || nRel > MaxEntries {
		return nil, fmt.Errorf("%w: too many entries", errMalformed)
	}
	r := reader{b: b[fixedSize:]}
	for i := 0; i < nReq; i++ {
		g, e := r.entry()
		m.Requests = append(m.Requests, LeaseRequest{Group: g, Epoch: e})
	}
	for i := 0; i < nAck; i++ {
		g, e := r.entry()
		m.Acks = append(m.Acks, LeaseAck{Group: g, Epoch: e, Round: r.u64()})
	}
	for i := 0; i < nRel; i++ {
		g, e := r.entry()
		m.Releases = append(m.Releases, LeaseRelease{Group: g, Epoch: e})
	}
	if r.bad || len(r.b) != 0 {
		return nil, fmt.Errorf("%w: bad entry list", errMalformed)
	}
	return m, nil
}

type reader struct {
	b   []byte
	bad bool
}

func (r *reader) u64() uint64 {
	if len(r.b) < 8 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) entry() (string, uint64) {
	if len(r.b) < 1 {
		r.bad = true
		return "", 0
	}
	n := int(r.b[0])
	if n == 0 || n > MaxGroupName || len(r.b) < 1+n {
		r.bad = true
		return "", 0
	}
	g := string(r.b[1 : 1+n])
	r.b = r.b[1+n:]
	return g, r.u64()
}
