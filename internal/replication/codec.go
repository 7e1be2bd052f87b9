package replication

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The payload of each frame kind; the link's header carries the kind,
// volume, epoch and sequence number. Integers are big-endian; str8 is a
// length byte and the bytes, str16 a 2-byte length and the bytes; ids are
// Current, Bitmap, History[0], History[1] as four u64.
//
//	hello            u8 version (2), str8 node, ids, u8 disk, u8 role,
//	                 u8 flags (1: crashed primary), u64 dirty bytes,
//	                 u64 primary epoch, u64 size, u8 mode, str8 discard node
//	state            u8 role, u8 disk, ids
//	data             u64 offset, u8 flags (1: FUA), the data (the rest)
//	data-ack,
//	flush-ack        u64 ack, str16 error
//	flush, resync-done-ack, outdate   empty
//	bitmap,
//	bitmap-ack       u64 sync id, u8 flags (1: full, 2: more), u32 first word,
//	                 u32 words, the words (u64 each)
//	resync-data      u32 first region, the data (the rest): whole regions
//	resync-done      ids, u8 disk
//	verify-start     u8 flags (1: repair)
//	verify-digest    u32 first region, u32 regions (1 to 256), a 32-byte
//	                 digest each
//	verify-result    u32 first region, u32 regions (1 to 256), str16 error,
//	                 a bitmap of (regions+7)/8 bytes: bit i (byte i/8,
//	                 value 1<<(i%8)) set if region first+i differs; unused
//	                 bits 0
//
// Protocol versions (the hello's first byte; a peer speaking another is
// refused at its hello, before anything else is decoded):
//
//	1  a resync-data frame carried one region, which the target wrote with
//	   FUA and answered with resync-ack (kind 10); verify digests were the
//	   SHA-256 of each region, one region a frame.
//	2  resync-data carries a chunk of consecutive regions written without
//	   FUA, covered by the source's flush (resync-ack is retired); verify
//	   digests are RegionDigest's (CRC-32C per 4 KiB block), a chunk of
//	   regions a frame, answered with a bitmap of those that differ.
//	stale            u64 ack
//	read-req         u64 offset, u64 length
//	read-reply       u64 ack, str16 error, the data (the rest)
//	detached, refuse str16 reason

// ErrBadFrame is wrapped by every payload decoding error: the connection
// it came on is dropped.
var ErrBadFrame = errors.New("replication: bad frame payload")

// helloVersion is the protocol this node speaks (see above).
const helloVersion = 2

// AppendPayload appends f's payload to dst.
func AppendPayload(dst []byte, f *Frame) ([]byte, error) {
	w := enc{b: dst}
	switch f.Kind {
	case FrameHello:
		h := f.Hello
		if h == nil {
			return dst, fmt.Errorf("replication: hello frame without a hello")
		}
		if len(h.Node) > 255 || len(h.DiscardNode) > 255 {
			return dst, fmt.Errorf("replication: node name longer than 255 bytes")
		}
		w.u8(helloVersion)
		w.str8(h.Node)
		w.ids(h.GenIDs)
		w.u8(uint8(h.Disk))
		w.u8(uint8(h.Role))
		w.u8(bitIf(h.CrashedPrimary, 1))
		w.u64(uint64(h.DirtyBytes))
		w.u64(uint64(h.PrimaryEpoch))
		w.u64(uint64(h.Size))
		w.u8(uint8(h.Mode))
		w.str8(h.DiscardNode)
	case FrameState:
		w.u8(uint8(f.Role))
		w.u8(uint8(f.Disk))
		w.ids(f.GenIDs)
	case FrameData:
		w.u64(uint64(f.Off))
		w.u8(bitIf(f.FUA, 1))
		w.b = append(w.b, f.Data...)
	case FrameDataAck, FrameFlushAck:
		w.u64(f.Ack)
		w.str16(f.Err)
	case FrameFlush, FrameResyncDoneAck, FrameOutdate:
	case FrameBitmap, FrameBitmapAck:
		w.u64(uint64(f.SyncID))
		w.u8(bitIf(f.Full, 1) | bitIf(f.More, 2))
		w.u32(uint32(f.BitsFrom))
		w.u32(uint32(len(f.Bits)))
		for _, x := range f.Bits {
			w.u64(x)
		}
	case FrameResyncData:
		w.u32(uint32(f.Region))
		w.b = append(w.b, f.Data...)
	case FrameResyncDone:
		w.ids(f.GenIDs)
		w.u8(uint8(f.Disk))
	case FrameVerifyStart:
		w.u8(bitIf(f.Repair, 1))
	case FrameVerifyDigest:
		if len(f.Digests) < 1 || len(f.Digests) > maxVerifyRegions {
			return dst, fmt.Errorf("replication: verify-digest of %d regions", len(f.Digests))
		}
		w.u32(uint32(f.Region))
		w.u32(uint32(len(f.Digests)))
		for _, d := range f.Digests {
			w.b = append(w.b, d[:]...)
		}
	case FrameVerifyResult:
		bits, err := differBits(f)
		if err != nil {
			return dst, err
		}
		w.u32(uint32(f.Region))
		w.u32(uint32(f.Regions))
		w.str16(f.Err)
		w.b = append(w.b, bits...)
	case FrameStale:
		w.u64(f.Ack)
	case FrameReadReq:
		w.u64(uint64(f.Off))
		w.u64(uint64(f.Len))
	case FrameReadReply:
		w.u64(f.Ack)
		w.str16(f.Err)
		w.b = append(w.b, f.Data...)
	case FrameDetached, FrameRefuse:
		w.str16(f.Err)
	default:
		return dst, fmt.Errorf("replication: encode: unknown %v", f.Kind)
	}
	if w.long {
		return dst, fmt.Errorf("replication: %v: error text longer than 65535 bytes", f.Kind)
	}
	return w.b, nil
}

// DecodePayload reads the payload p of a frame of kind k into f (whose
// Volume, Epoch and Seq come from the link's header). Data aliases p.
func DecodePayload(k FrameKind, p []byte) (Frame, error) {
	r := dec{b: p}
	f := Frame{Kind: k}
	switch k {
	case FrameHello:
		h := &Hello{}
		if v := r.u8(); v != helloVersion && r.err == nil {
			return f, fmt.Errorf("%w: hello version %d, this node speaks %d", ErrBadFrame, v, helloVersion)
		}
		h.Node = r.str8()
		h.GenIDs = r.ids()
		h.Disk = r.disk()
		h.Role = r.role()
		h.CrashedPrimary = r.flags(1)&1 != 0
		h.DirtyBytes = r.i64()
		h.PrimaryEpoch = Epoch(r.u64())
		h.Size = r.i64()
		if h.Mode = Mode(r.u8()); h.Mode > Async {
			r.bad("mode %d", h.Mode)
		}
		h.DiscardNode = r.str8()
		f.Hello = h
	case FrameState:
		f.Role = r.role()
		f.Disk = r.disk()
		f.GenIDs = r.ids()
	case FrameData:
		f.Off = r.i64()
		f.FUA = r.flags(1)&1 != 0
		f.Data = r.rest()
	case FrameDataAck, FrameFlushAck:
		f.Ack = r.u64()
		f.Err = r.str16()
	case FrameFlush, FrameResyncDoneAck, FrameOutdate:
	case FrameBitmap, FrameBitmapAck:
		f.SyncID = GenID(r.u64())
		fl := r.flags(3)
		f.Full, f.More = fl&1 != 0, fl&2 != 0
		f.BitsFrom = int(r.u32())
		n := int(r.u32())
		if r.err == nil && (n > BitmapChunkWords || n*8 > len(r.b)) {
			r.bad("%d bitmap words", n)
		}
		if r.err == nil {
			f.Bits = make([]uint64, n)
			for i := range f.Bits {
				f.Bits[i] = r.u64()
			}
		}
	case FrameResyncData:
		f.Region = r.region()
		f.Data = r.rest()
	case FrameResyncDone:
		f.GenIDs = r.ids()
		f.Disk = r.disk()
	case FrameVerifyStart:
		f.Repair = r.flags(1)&1 != 0
	case FrameVerifyDigest:
		f.Region = r.region()
		n := r.verifyRegions()
		if r.err == nil && n*len(Digest{}) != len(r.b) {
			r.bad("%d digests in %d bytes", n, len(r.b))
		}
		for ; r.err == nil && n > 0; n-- {
			f.Digests = append(f.Digests, Digest(r.take(len(Digest{}))))
		}
	case FrameVerifyResult:
		f.Region = r.region()
		f.Regions = r.verifyRegions()
		f.Err = r.str16()
		bits := r.take((f.Regions + 7) / 8)
		for i := 0; r.err == nil && i < len(bits)*8; i++ {
			switch {
			case bits[i/8]&(1<<(i%8)) == 0:
			case i >= f.Regions:
				r.bad("bit %d set past %d regions", i, f.Regions)
			default:
				f.Differ = append(f.Differ, f.Region+i)
			}
		}
	case FrameStale:
		f.Ack = r.u64()
	case FrameReadReq:
		f.Off = r.i64()
		f.Len = r.i64()
	case FrameReadReply:
		f.Ack = r.u64()
		f.Err = r.str16()
		f.Data = r.rest()
	case FrameDetached, FrameRefuse:
		f.Err = r.str16()
	default: // also the retired kinds
		return f, fmt.Errorf("%w: unknown %v", ErrBadFrame, k)
	}
	if r.err == nil && len(r.b) > 0 {
		r.bad("%d bytes left over", len(r.b))
	}
	if r.err != nil {
		return Frame{}, fmt.Errorf("%w: %v: %v", ErrBadFrame, k, r.err)
	}
	return f, nil
}

func bitIf(v bool, bit uint8) uint8 {
	if v {
		return bit
	}
	return 0
}

type enc struct {
	b    []byte
	long bool
}

func (w *enc) u8(v uint8)   { w.b = append(w.b, v) }
func (w *enc) u32(v uint32) { w.b = binary.BigEndian.AppendUint32(w.b, v) }
func (w *enc) u64(v uint64) { w.b = binary.BigEndian.AppendUint64(w.b, v) }
func (w *enc) str8(s string) {
	w.u8(uint8(len(s)))
	w.b = append(w.b, s...)
}
func (w *enc) str16(s string) {
	if len(s) > 0xffff {
		w.long = true
		s = s[:0xffff]
	}
	w.b = binary.BigEndian.AppendUint16(w.b, uint16(len(s)))
	w.b = append(w.b, s...)
}
func (w *enc) ids(g GenIDs) {
	for _, id := range [4]GenID{g.Current, g.Bitmap, g.History[0], g.History[1]} {
		w.u64(uint64(id))
	}
}

// dec reads a payload; the first error sticks and later reads return zero.
type dec struct {
	b   []byte
	err error
}

func (r *dec) bad(format string, a ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, a...)
	}
}

func (r *dec) take(n int) []byte {
	if r.err != nil {
		return make([]byte, n)
	}
	if len(r.b) < n {
		r.bad("short: %d bytes left, %d wanted", len(r.b), n)
		return make([]byte, n)
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *dec) u8() uint8   { return r.take(1)[0] }
func (r *dec) u32() uint32 { return binary.BigEndian.Uint32(r.take(4)) }
func (r *dec) u64() uint64 { return binary.BigEndian.Uint64(r.take(8)) }
func (r *dec) str8() string {
	return string(r.take(int(r.u8())))
}
func (r *dec) str16() string {
	return string(r.take(int(binary.BigEndian.Uint16(r.take(2)))))
}
func (r *dec) rest() []byte {
	if r.err != nil {
		return nil
	}
	p := r.b
	r.b = nil
	return p
}

func (r *dec) i64() int64 {
	v := r.u64()
	if v > 1<<62 {
		r.bad("value %d out of range", v)
	}
	return int64(v)
}

// verifyRegions reads the region count of a verify frame.
func (r *dec) verifyRegions() int {
	n := r.u32()
	if r.err == nil && (n < 1 || n > maxVerifyRegions) {
		r.bad("%d regions", n)
	}
	return int(n)
}

// differBits encodes a verify-result's Differ as its bitmap.
func differBits(f *Frame) ([]byte, error) {
	if f.Regions < 1 || f.Regions > maxVerifyRegions {
		return nil, fmt.Errorf("replication: verify-result of %d regions", f.Regions)
	}
	bits := make([]byte, (f.Regions+7)/8)
	last := f.Region - 1
	for _, d := range f.Differ {
		if d <= last || d >= f.Region+f.Regions {
			return nil, fmt.Errorf("replication: verify-result: region %d out of order or outside [%d, %d)", d, f.Region, f.Region+f.Regions)
		}
		last = d
		bits[(d-f.Region)/8] |= 1 << ((d - f.Region) % 8)
	}
	return bits, nil
}

func (r *dec) region() int {
	v := r.u32()
	if v > 1<<31-1 {
		r.bad("region %d out of range", v)
	}
	return int(v)
}

// flags reads a flags byte whose bits outside known are unset.
func (r *dec) flags(known uint8) uint8 {
	v := r.u8()
	if v&^known != 0 {
		r.bad("unknown flags %#x", v)
	}
	return v
}

func (r *dec) disk() DiskState {
	d := DiskState(r.u8())
	if d > UpToDate {
		r.bad("disk state %d", d)
	}
	return d
}

func (r *dec) role() Role {
	v := Role(r.u8())
	if v > Primary {
		r.bad("role %d", v)
	}
	return v
}

func (r *dec) ids() GenIDs {
	var g GenIDs
	g.Current, g.Bitmap = GenID(r.u64()), GenID(r.u64())
	g.History[0], g.History[1] = GenID(r.u64()), GenID(r.u64())
	return g
}
