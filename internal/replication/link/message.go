package link

import (
	"errors"
	"fmt"

	"tandem/internal/replication"
)

// The replication machine's frames (replication.Frame) travel as link
// frames: the kind is the machine's, the link's header carries the
// volume, the epoch and the machine's sequence number, and the payload is
// replication.AppendPayload's (one layout per kind, documented and tested
// in replication/codec.go). Write data is the last field of every layout
// that has one, so it is sent as the frame's Tail, from the caller's
// buffer, instead of being copied behind the other fields.

// EncodeMessage turns m into a frame for Send, reusing buf for its
// fields. m.Data is not copied: it is the frame's Tail, and must stay
// unchanged until Send returns.
func EncodeMessage(m *replication.Frame, buf []byte) (Frame, error) {
	if k := Kind(m.Kind); !k.IsData() {
		return Frame{}, fmt.Errorf("link: message kind %v is not below %d", m.Kind, FirstLinkKind)
	}
	fields := *m
	fields.Data = nil
	p, err := replication.AppendPayload(buf[:0], &fields)
	if err != nil {
		return Frame{}, fmt.Errorf("link: %w", err)
	}
	if len(p)+len(m.Data) > MaxPayload {
		return Frame{}, fmt.Errorf("link: message %v of %d bytes, at most %d", m.Kind, len(p)+len(m.Data), MaxPayload)
	}
	return Frame{Kind: Kind(m.Kind), Epoch: m.Epoch, Seq: m.Seq, Payload: p, Tail: m.Data}, nil
}

// DecodeMessage reads a frame Recv returned as a replication frame. Its
// Data aliases f.Payload: valid until the next Recv. A payload that does
// not decode wraps ErrFrame (and replication.ErrBadFrame).
func DecodeMessage(f Frame) (replication.Frame, error) {
	if !f.Kind.IsData() {
		return replication.Frame{}, fmt.Errorf("%w: %v is not a message kind", ErrFrame, f.Kind)
	}
	m, err := replication.DecodePayload(replication.FrameKind(f.Kind), f.Payload)
	if err != nil {
		return replication.Frame{}, errors.Join(ErrFrame, err)
	}
	m.Volume, m.Epoch, m.Seq = f.Volume, f.Epoch, f.Seq
	return m, nil
}

// MessageFenced is Config.Fenced for links that carry replication
// messages: the kinds the machine refuses from an older epoch.
func MessageFenced(k Kind) bool { return replication.FrameKind(k).Fenced() }
