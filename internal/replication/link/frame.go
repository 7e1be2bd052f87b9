package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"tandem/internal/replication"
)

// A frame is a fixed 44-byte header and a payload. Integers are big-endian.
//
//	offset size field
//	0      2    magic 0x54 0x4c ("TL")
//	2      1    version (1)
//	3      1    kind
//	4      2    flags (the state machine's; 0 on link frames)
//	6      2    reserved, 0
//	8      16   volume ID
//	24     8    epoch
//	32     8    sequence
//	40     4    payload length (at most MaxPayload)
const (
	HeaderSize = 44
	// MaxPayload bounds a frame's payload: a 1 MiB write with room for the
	// state machine's own fields around it. No length field makes the
	// decoder allocate more.
	MaxPayload = 1<<20 + 4096
	// MaxFrame is the largest frame on the wire.
	MaxFrame = HeaderSize + MaxPayload

	magic0, magic1 = 'T', 'L'
	wireVersion    = 1
)

// Kind says what a frame carries. Kinds below FirstLinkKind belong to the
// replication state machine, which gives them their meaning; the link
// carries them as opaque bytes. Kinds from FirstLinkKind up are the link's
// own and never reach Recv, except KindStale.
type Kind uint8

const (
	// FirstLinkKind is the first kind the link reserves.
	FirstLinkKind Kind = 0xf0

	kindHello  Kind = 0xf0 // handshake: Hello
	kindRefuse Kind = 0xf1 // handshake refused or session ended: Refusal
	kindPing   Kind = 0xf2 // keepalive: 8 opaque bytes, echoed by kindPong
	kindPong   Kind = 0xf3
	// KindStale is the peer's refusal of a frame whose epoch is older than
	// the newest it has seen (S2's fencing token); Recv returns it, and
	// DecodeStale reads it.
	KindStale  Kind = 0xf4
	kindSwitch Kind = 0xf5 // last frame on a path the session leaves
)

// IsData reports whether k is a state-machine kind that Send accepts.
func (k Kind) IsData() bool { return k != 0 && k < FirstLinkKind }

func (k Kind) String() string {
	switch k {
	case kindHello:
		return "hello"
	case kindRefuse:
		return "refuse"
	case kindPing:
		return "ping"
	case kindPong:
		return "pong"
	case KindStale:
		return "stale"
	case kindSwitch:
		return "switch"
	}
	return fmt.Sprintf("kind %d", uint8(k))
}

// Header is a frame without its payload.
type Header struct {
	Kind   Kind
	Flags  uint16
	Volume replication.VolumeID
	Epoch  replication.Epoch
	Seq    uint64
	Length uint32
}

// Frame is a header's fields and the payload they describe.
type Frame struct {
	Kind    Kind
	Flags   uint16
	Volume  replication.VolumeID
	Epoch   replication.Epoch
	Seq     uint64
	Payload []byte
	// Tail, when sending, is the rest of the payload, written from where
	// it lies (a write's data behind its fields, never copied). A frame
	// received has its whole payload in Payload.
	Tail []byte
}

func (f *Frame) size() int { return len(f.Payload) + len(f.Tail) }

func (f *Frame) header() Header {
	return Header{Kind: f.Kind, Flags: f.Flags, Volume: f.Volume, Epoch: f.Epoch, Seq: f.Seq, Length: uint32(f.size())}
}

// ErrFrame is wrapped by every decoding error: the bytes are not a frame
// of this protocol, and the connection they came on is dropped.
var ErrFrame = errors.New("link: bad frame")

// IsBadFrame reports whether err is a decoding error.
func IsBadFrame(err error) bool { return errors.Is(err, ErrFrame) }

// PutHeader writes h into b[:HeaderSize].
func PutHeader(b []byte, h Header) {
	_ = b[HeaderSize-1]
	b[0], b[1], b[2], b[3] = magic0, magic1, wireVersion, byte(h.Kind)
	binary.BigEndian.PutUint16(b[4:], h.Flags)
	b[6], b[7] = 0, 0
	copy(b[8:24], h.Volume[:])
	binary.BigEndian.PutUint64(b[24:], uint64(h.Epoch))
	binary.BigEndian.PutUint64(b[32:], h.Seq)
	binary.BigEndian.PutUint32(b[40:], h.Length)
}

// ParseHeader reads and checks a header: magic, version, reserved bits,
// kind and a length within MaxPayload.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: %d bytes, a header has %d", ErrFrame, len(b), HeaderSize)
	}
	if b[0] != magic0 || b[1] != magic1 {
		return Header{}, fmt.Errorf("%w: magic %#02x%02x, want %#02x%02x (not a tandem replication link)", ErrFrame, b[0], b[1], magic0, magic1)
	}
	if b[2] != wireVersion {
		return Header{}, fmt.Errorf("%w: version %d, this node speaks %d", ErrFrame, b[2], wireVersion)
	}
	if b[6] != 0 || b[7] != 0 {
		return Header{}, fmt.Errorf("%w: reserved bytes set", ErrFrame)
	}
	h := Header{
		Kind:   Kind(b[3]),
		Flags:  binary.BigEndian.Uint16(b[4:]),
		Epoch:  replication.Epoch(binary.BigEndian.Uint64(b[24:])),
		Seq:    binary.BigEndian.Uint64(b[32:]),
		Length: binary.BigEndian.Uint32(b[40:]),
	}
	copy(h.Volume[:], b[8:24])
	if h.Kind == 0 || h.Kind > kindSwitch {
		return Header{}, fmt.Errorf("%w: unknown %v", ErrFrame, h.Kind)
	}
	if h.Length > MaxPayload {
		return Header{}, fmt.Errorf("%w: payload of %d bytes, at most %d", ErrFrame, h.Length, MaxPayload)
	}
	return h, nil
}

// AppendFrame appends f's encoding to dst.
func AppendFrame(dst []byte, f *Frame) ([]byte, error) {
	if f.size() > MaxPayload {
		return dst, fmt.Errorf("link: payload of %d bytes, at most %d", f.size(), MaxPayload)
	}
	n := len(dst)
	dst = append(dst, make([]byte, HeaderSize)...)
	PutHeader(dst[n:], f.header())
	return append(append(dst, f.Payload...), f.Tail...), nil
}

// DecodeFrame reads one frame from the front of b and returns it (its
// payload aliases b) and the bytes it took. io.ErrUnexpectedEOF says b
// holds only the start of a valid frame.
func DecodeFrame(b []byte) (Frame, int, error) {
	if len(b) < HeaderSize {
		if err := checkPrefix(b); err != nil {
			return Frame{}, 0, err
		}
		return Frame{}, 0, io.ErrUnexpectedEOF
	}
	h, err := ParseHeader(b)
	if err != nil {
		return Frame{}, 0, err
	}
	end := HeaderSize + int(h.Length)
	if len(b) < end {
		return Frame{}, 0, io.ErrUnexpectedEOF
	}
	return Frame{Kind: h.Kind, Flags: h.Flags, Volume: h.Volume, Epoch: h.Epoch, Seq: h.Seq, Payload: b[HeaderSize:end:end]}, end, nil
}

// checkPrefix refuses a short b that can no longer become a frame.
func checkPrefix(b []byte) error {
	full := [HeaderSize]byte{magic0, magic1, wireVersion, byte(kindHello)}
	copy(full[:], b)
	_, err := ParseHeader(full[:])
	return err
}

// FrameReader reads frames from a stream into one buffer it reuses: a
// frame's payload is valid until the next Read. It never holds more than
// MaxFrame bytes, and grows only as far as the frames it has read.
type FrameReader struct {
	r   io.Reader
	hdr [HeaderSize]byte
	buf []byte
	max int
}

// NewFrameReader reads from r frames whose payload is at most max bytes
// (at most MaxPayload).
func NewFrameReader(r io.Reader, max int) *FrameReader {
	if max <= 0 || max > MaxPayload {
		max = MaxPayload
	}
	return &FrameReader{r: r, max: max}
}

// Read returns the next frame. A stream that ends between frames gives
// io.EOF; one that ends inside a frame, io.ErrUnexpectedEOF.
func (fr *FrameReader) Read() (Frame, error) {
	h, err := fr.ReadHeader()
	if err != nil {
		return Frame{}, err
	}
	p, err := fr.ReadPayload(h, nil)
	if err != nil {
		return Frame{}, err
	}
	return Frame{Kind: h.Kind, Flags: h.Flags, Volume: h.Volume, Epoch: h.Epoch, Seq: h.Seq, Payload: p}, nil
}

// ReadHeader reads and checks the next header.
func (fr *FrameReader) ReadHeader() (Header, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return Header{}, err
	}
	h, err := ParseHeader(fr.hdr[:])
	if err != nil {
		return Header{}, err
	}
	if int(h.Length) > fr.max {
		return Header{}, fmt.Errorf("%w: payload of %d bytes, at most %d here", ErrFrame, h.Length, fr.max)
	}
	return h, nil
}

// ReadPayload reads h's payload into dst when it has room, else into the
// reader's own buffer.
func (fr *FrameReader) ReadPayload(h Header, dst []byte) ([]byte, error) {
	n := int(h.Length)
	if cap(dst) < n {
		if cap(fr.buf) < n {
			fr.buf = make([]byte, n)
		}
		dst = fr.buf
	}
	dst = dst[:n]
	if _, err := io.ReadFull(fr.r, dst); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return dst, nil
}
