package link

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"

	"tandem/internal/replication"
)

// The replication machine's frames (replication.Frame) travel as link
// frames: the kind is the machine's, the header carries the volume, the
// epoch and the machine's sequence number, and the payload holds the
// other fields. A 32-bit mask says which fields are present; they follow
// in the order of the mask's bits, and the write data, if any, is last and
// fills the rest of the payload, so it is sent from the caller's buffer
// and received without a copy. A field that is present is never zero, so
// every message has exactly one encoding.
//
//	bit field          encoding
//	0   Off            8 bytes
//	1   Len            8 bytes
//	2   FUA            (the bit alone)
//	3   Ack            8 bytes
//	4   Region         8 bytes
//	5   Err            2-byte length, UTF-8 (at most maxErr bytes)
//	6   Bits           4-byte count n, n × 8 bytes (words of 64 regions)
//	7   SyncID         8 bytes
//	8   Full           (the bit alone)
//	9   GenIDs         4 × 8 bytes: current, bitmap, history[0], history[1]
//	10  Disk           1 byte
//	11  Role           1 byte
//	12  Digest         32 bytes
//	13  Match          (the bit alone)
//	14  Repair         (the bit alone)
//	15  Hello          1-byte name length, name, GenIDs (32), disk (1), role (1),
//	                   flags (1: bit 0 crashed primary, bit 1 discard), dirty bytes (8),
//	                   primary epoch (8), size (8), mode (1), 1-byte length, discard node
//	16  BitsFrom       8 bytes
//	17  More           (the bit alone)
//	31  Data           the rest of the payload
const (
	mOff = 1 << iota
	mLen
	mFUA
	mAck
	mRegion
	mErr
	mBits
	mSyncID
	mFull
	mGenIDs
	mDisk
	mRole
	mDigest
	mMatch
	mRepair
	mHello
	mBitsFrom
	mMore
	mData  = 1 << 31
	mKnown = mMore<<1 - 1 | mData
)

const maxErr = 1024

// EncodeMessage turns m into a frame for Send, reusing buf for its
// fields. m.Data is not copied: it is the frame's Tail, and must stay
// unchanged until Send returns.
func EncodeMessage(m *replication.Frame, buf []byte) (Frame, error) {
	if k := Kind(m.Kind); !k.IsData() {
		return Frame{}, fmt.Errorf("link: message kind %v is not below %d", m.Kind, FirstLinkKind)
	}
	if len(m.Err) > maxErr {
		return Frame{}, fmt.Errorf("link: message %v: error text of %d bytes, at most %d", m.Kind, len(m.Err), maxErr)
	}
	var mask uint32
	p := append(buf[:0], 0, 0, 0, 0)
	u64 := func(bit uint32, v uint64) {
		if v != 0 {
			mask |= bit
			p = binary.BigEndian.AppendUint64(p, v)
		}
	}
	flag := func(bit uint32, v bool) {
		if v {
			mask |= bit
		}
	}
	u64(mOff, uint64(m.Off))
	u64(mLen, uint64(m.Len))
	flag(mFUA, m.FUA)
	u64(mAck, m.Ack)
	u64(mRegion, uint64(m.Region))
	if m.Err != "" {
		mask |= mErr
		p = binary.BigEndian.AppendUint16(p, uint16(len(m.Err)))
		p = append(p, m.Err...)
	}
	if len(m.Bits) > 0 {
		mask |= mBits
		p = binary.BigEndian.AppendUint32(p, uint32(min(len(m.Bits), math.MaxUint32)))
		for _, w := range m.Bits {
			p = binary.BigEndian.AppendUint64(p, w)
		}
	}
	u64(mSyncID, uint64(m.SyncID))
	flag(mFull, m.Full)
	if m.GenIDs != (replication.GenIDs{}) {
		mask |= mGenIDs
		p = appendGenIDs(p, m.GenIDs)
	}
	if m.Disk != 0 {
		mask |= mDisk
		p = append(p, byte(m.Disk))
	}
	if m.Role != 0 {
		mask |= mRole
		p = append(p, byte(m.Role))
	}
	if m.Digest != (replication.Digest{}) {
		mask |= mDigest
		p = append(p, m.Digest[:]...)
	}
	flag(mMatch, m.Match)
	flag(mRepair, m.Repair)
	if h := m.Hello; h != nil {
		if len(h.Node) > maxName || len(h.DiscardNode) > maxName {
			return Frame{}, fmt.Errorf("link: message %v: node names are at most %d bytes", m.Kind, maxName)
		}
		mask |= mHello
		p = append(p, byte(len(h.Node)))
		p = append(p, h.Node...)
		p = appendGenIDs(p, h.GenIDs)
		var fl byte
		if h.CrashedPrimary {
			fl |= 1
		}
		if h.Discard {
			fl |= 2
		}
		p = append(p, byte(h.Disk), byte(h.Role), fl)
		p = binary.BigEndian.AppendUint64(p, uint64(h.DirtyBytes))
		p = binary.BigEndian.AppendUint64(p, uint64(h.PrimaryEpoch))
		p = binary.BigEndian.AppendUint64(p, uint64(h.Size))
		p = append(p, byte(h.Mode), byte(len(h.DiscardNode)))
		p = append(p, h.DiscardNode...)
	}
	u64(mBitsFrom, uint64(m.BitsFrom))
	flag(mMore, m.More)
	if len(m.Data) > 0 {
		mask |= mData
	}
	binary.BigEndian.PutUint32(p, mask)
	if len(p)+len(m.Data) > MaxPayload {
		return Frame{}, fmt.Errorf("link: message %v of %d bytes, at most %d", m.Kind, len(p)+len(m.Data), MaxPayload)
	}
	return Frame{Kind: Kind(m.Kind), Epoch: m.Epoch, Seq: m.Seq, Payload: p, Tail: m.Data}, nil
}

func appendGenIDs(p []byte, g replication.GenIDs) []byte {
	for _, v := range [4]replication.GenID{g.Current, g.Bitmap, g.History[0], g.History[1]} {
		p = binary.BigEndian.AppendUint64(p, uint64(v))
	}
	return p
}

// DecodeMessage reads a frame Recv returned as a replication frame. Its
// Data aliases f.Payload: valid until the next Recv.
func DecodeMessage(f Frame) (replication.Frame, error) {
	m := replication.Frame{Kind: replication.FrameKind(f.Kind), Volume: f.Volume, Epoch: f.Epoch, Seq: f.Seq}
	bad := func(format string, a ...any) (replication.Frame, error) {
		return replication.Frame{}, fmt.Errorf("%w: %v message: %s", ErrFrame, f.Kind, fmt.Sprintf(format, a...))
	}
	if !f.Kind.IsData() {
		return bad("not a message kind")
	}
	r := reader{b: f.Payload, zero: -1}
	mask := r.u32()
	if r.short {
		return bad("%d bytes", len(f.Payload))
	}
	if mask&^mKnown != 0 {
		return bad("unknown fields %#x", mask&^mKnown)
	}
	has := func(bit uint32) bool { return mask&bit != 0 }
	u64 := func(bit uint32) uint64 {
		if !has(bit) {
			return 0
		}
		v := r.u64()
		if v == 0 {
			r.zero = bits.TrailingZeros32(bit)
		}
		return v
	}
	m.Off = int64(u64(mOff))
	m.Len = int64(u64(mLen))
	m.FUA = has(mFUA)
	m.Ack = u64(mAck)
	m.Region = int(int64(u64(mRegion)))
	if has(mErr) {
		n := int(r.u16())
		if n == 0 || n > maxErr {
			return bad("error text of %d bytes", n)
		}
		m.Err = string(r.bytes(n))
	}
	if has(mBits) {
		n := int(r.u32())
		if n == 0 || n > len(r.b)/8 {
			return bad("%d bitmap words in %d bytes", n, len(r.b))
		}
		m.Bits = make([]uint64, n)
		for i := range m.Bits {
			m.Bits[i] = r.u64()
		}
	}
	m.SyncID = replication.GenID(u64(mSyncID))
	m.Full = has(mFull)
	if has(mGenIDs) {
		m.GenIDs = r.genIDs()
		if m.GenIDs == (replication.GenIDs{}) {
			r.zero = 9
		}
	}
	if has(mDisk) {
		if m.Disk = replication.DiskState(r.u8()); m.Disk == 0 {
			r.zero = 10
		}
	}
	if has(mRole) {
		if m.Role = replication.Role(r.u8()); m.Role == 0 {
			r.zero = 11
		}
	}
	if has(mDigest) {
		copy(m.Digest[:], r.bytes(len(m.Digest)))
		if m.Digest == (replication.Digest{}) {
			r.zero = 12
		}
	}
	m.Match = has(mMatch)
	m.Repair = has(mRepair)
	if has(mHello) {
		h := &replication.Hello{}
		h.Node = string(r.bytes(int(r.u8())))
		h.GenIDs = r.genIDs()
		h.Disk, h.Role = replication.DiskState(r.u8()), replication.Role(r.u8())
		fl := r.u8()
		if fl&^3 != 0 {
			return bad("hello flags %#x", fl)
		}
		h.CrashedPrimary, h.Discard = fl&1 != 0, fl&2 != 0
		h.DirtyBytes = int64(r.u64())
		h.PrimaryEpoch = replication.Epoch(r.u64())
		h.Size = int64(r.u64())
		h.Mode = replication.Mode(r.u8())
		h.DiscardNode = string(r.bytes(int(r.u8())))
		m.Hello = h
	}
	m.BitsFrom = int(int64(u64(mBitsFrom)))
	m.More = has(mMore)
	if r.short {
		return bad("cut short in %d bytes", len(f.Payload))
	}
	if r.zero >= 0 {
		return bad("field %d present but zero", r.zero)
	}
	switch {
	case has(mData) && len(r.b) == 0:
		return bad("empty data present")
	case has(mData):
		m.Data = r.b
	case len(r.b) > 0:
		return bad("%d bytes after the fields", len(r.b))
	}
	return m, nil
}

// reader takes big-endian fields from b; past its end it gives zeros and
// sets short.
type reader struct {
	b     []byte
	short bool
	zero  int // a present field found zero (its bit), or -1
}

func (r *reader) bytes(n int) []byte {
	if n > len(r.b) {
		r.short, r.b = true, nil
		return make([]byte, n)
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() uint8   { return r.bytes(1)[0] }
func (r *reader) u16() uint16 { return binary.BigEndian.Uint16(r.bytes(2)) }
func (r *reader) u32() uint32 { return binary.BigEndian.Uint32(r.bytes(4)) }
func (r *reader) u64() uint64 { return binary.BigEndian.Uint64(r.bytes(8)) }

func (r *reader) genIDs() replication.GenIDs {
	var g replication.GenIDs
	g.Current, g.Bitmap = replication.GenID(r.u64()), replication.GenID(r.u64())
	g.History[0], g.History[1] = replication.GenID(r.u64()), replication.GenID(r.u64())
	return g
}

// MessageFenced is Config.Fenced for links that carry replication
// messages: the kinds the machine refuses from an older epoch.
func MessageFenced(k Kind) bool { return replication.FrameKind(k).Fenced() }
