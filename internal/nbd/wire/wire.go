// Package wire owns the NBD wire format: the protocol constants and pure
// encoders/decoders for the fixed newstyle handshake, option haggling and the
// transmission-phase request and simple reply headers, as written in the NBD
// protocol document (NetworkBlockDevice/nbd doc/proto.md, including the INFO
// and WRITE_ZEROES extensions). It does no I/O and imports nothing of ours;
// the nbd server and client, tests and fuzzers may import it.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Magic numbers.
const (
	MagicInit          uint64 = 0x4e42444d41474943 // "NBDMAGIC" (INIT_PASSWD)
	MagicOpt           uint64 = 0x49484156454f5054 // "IHAVEOPT"
	MagicOptReply      uint64 = 0x0003e889045565a9
	MagicRequest       uint32 = 0x25609513
	MagicSimpleReply   uint32 = 0x67446698
	MagicStructuredRep uint32 = 0x668e33ef
)

// Handshake flags (server, 16 bits).
const (
	FlagFixedNewstyle uint16 = 1 << 0
	FlagNoZeroes      uint16 = 1 << 1
)

// Client flags (32 bits).
const (
	ClientFlagFixedNewstyle uint32 = 1 << 0
	ClientFlagNoZeroes      uint32 = 1 << 1
	clientFlagsKnown               = ClientFlagFixedNewstyle | ClientFlagNoZeroes
)

// Transmission flags (16 bits).
const (
	FlagHasFlags        uint16 = 1 << 0
	FlagReadOnly        uint16 = 1 << 1
	FlagSendFlush       uint16 = 1 << 2
	FlagSendFUA         uint16 = 1 << 3
	FlagRotational      uint16 = 1 << 4
	FlagSendTrim        uint16 = 1 << 5
	FlagSendWriteZeroes uint16 = 1 << 6
	FlagSendDF          uint16 = 1 << 7
	FlagCanMultiConn    uint16 = 1 << 8
	FlagSendResize      uint16 = 1 << 9
	FlagSendCache       uint16 = 1 << 10
	FlagSendFastZero    uint16 = 1 << 11
)

// Options.
const (
	OptExportName      uint32 = 1
	OptAbort           uint32 = 2
	OptList            uint32 = 3
	OptPeekExport      uint32 = 4
	OptStartTLS        uint32 = 5
	OptInfo            uint32 = 6
	OptGo              uint32 = 7
	OptStructuredReply uint32 = 8
	OptListMetaContext uint32 = 9
	OptSetMetaContext  uint32 = 10
	OptExtendedHeaders uint32 = 11
)

// Option reply types.
const (
	RepAck              uint32 = 1
	RepServer           uint32 = 2
	RepInfo             uint32 = 3
	RepMetaContext      uint32 = 4
	RepFlagError        uint32 = 1 << 31
	RepErrUnsup         uint32 = RepFlagError | 1
	RepErrPolicy        uint32 = RepFlagError | 2
	RepErrInvalid       uint32 = RepFlagError | 3
	RepErrPlatform      uint32 = RepFlagError | 4
	RepErrTLSReqd       uint32 = RepFlagError | 5
	RepErrUnknown       uint32 = RepFlagError | 6
	RepErrShutdown      uint32 = RepFlagError | 7
	RepErrBlockSizeReqd uint32 = RepFlagError | 8
	RepErrTooBig        uint32 = RepFlagError | 9
)

// Information types for NBD_OPT_INFO / NBD_OPT_GO.
const (
	InfoExport      uint16 = 0
	InfoName        uint16 = 1
	InfoDescription uint16 = 2
	InfoBlockSize   uint16 = 3
)

// Commands.
const (
	CmdRead        uint16 = 0
	CmdWrite       uint16 = 1
	CmdDisc        uint16 = 2
	CmdFlush       uint16 = 3
	CmdTrim        uint16 = 4
	CmdCache       uint16 = 5
	CmdWriteZeroes uint16 = 6
	CmdBlockStatus uint16 = 7
)

// Command flags.
const (
	CmdFlagFUA      uint16 = 1 << 0
	CmdFlagNoHole   uint16 = 1 << 1
	CmdFlagDF       uint16 = 1 << 2
	CmdFlagReqOne   uint16 = 1 << 3
	CmdFlagFastZero uint16 = 1 << 4
)

// Error values carried in replies (fixed by the protocol, not host errno).
const (
	EPERM     uint32 = 1
	EIO       uint32 = 5
	ENOMEM    uint32 = 12
	EINVAL    uint32 = 22
	ENOSPC    uint32 = 28
	EOVERFLOW uint32 = 75
	ENOTSUP   uint32 = 95
	ESHUTDOWN uint32 = 108
)

// Sizes of fixed-length messages.
const (
	GreetingSize      = 18 // NBDMAGIC, IHAVEOPT, handshake flags
	OptHeaderSize     = 16 // IHAVEOPT, option, length
	OptReplyHdrSize   = 20 // magic, option, type, length
	RequestSize       = 28
	SimpleReplySize   = 16
	ExportNameZeroPad = 124
	MaxStringLen      = 4096 // names and messages, per the spec
)

// ErrBadMagic is returned by decoders when a message does not start with its
// magic number: the peer is not speaking NBD (or lost framing).
var ErrBadMagic = errors.New("nbd: bad magic")

// ErrInvalid is returned for a well-framed message whose contents break the
// protocol (lengths that do not add up, strings too long).
var ErrInvalid = errors.New("nbd: invalid message")

var be = binary.BigEndian

// AppendGreeting appends the server's newstyle greeting.
func AppendGreeting(b []byte, handshakeFlags uint16) []byte {
	b = be.AppendUint64(b, MagicInit)
	b = be.AppendUint64(b, MagicOpt)
	return be.AppendUint16(b, handshakeFlags)
}

// CheckClientFlags validates the 32-bit client flags against what the server
// advertised. The server must drop the connection on an error.
func CheckClientFlags(client uint32, advertised uint16) error {
	if client&^clientFlagsKnown != 0 {
		return fmt.Errorf("%w: unknown client flags %#x", ErrInvalid, client)
	}
	if client&ClientFlagNoZeroes != 0 && advertised&FlagNoZeroes == 0 {
		return fmt.Errorf("%w: client set NO_ZEROES that was not offered", ErrInvalid)
	}
	return nil
}

// OptHeader is the header of one option sent by the client.
type OptHeader struct {
	Option uint32
	Length uint32
}

// DecodeOptHeader decodes a 16-byte option header.
func DecodeOptHeader(b []byte) (OptHeader, error) {
	if len(b) < OptHeaderSize {
		return OptHeader{}, fmt.Errorf("%w: short option header", ErrInvalid)
	}
	if be.Uint64(b) != MagicOpt {
		return OptHeader{}, fmt.Errorf("%w: option magic %#x", ErrBadMagic, be.Uint64(b))
	}
	return OptHeader{Option: be.Uint32(b[8:]), Length: be.Uint32(b[12:])}, nil
}

// AppendOptHeader appends an option header (client side).
func AppendOptHeader(b []byte, h OptHeader) []byte {
	b = be.AppendUint64(b, MagicOpt)
	b = be.AppendUint32(b, h.Option)
	return be.AppendUint32(b, h.Length)
}

// OptReply is the header of one option reply sent by the server.
type OptReply struct {
	Option uint32
	Type   uint32
	Length uint32
}

// AppendOptReply appends an option reply header followed by data; Length is
// taken from len(data).
func AppendOptReply(b []byte, option, typ uint32, data []byte) []byte {
	b = be.AppendUint64(b, MagicOptReply)
	b = be.AppendUint32(b, option)
	b = be.AppendUint32(b, typ)
	b = be.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// DecodeOptReply decodes a 20-byte option reply header (client side).
func DecodeOptReply(b []byte) (OptReply, error) {
	if len(b) < OptReplyHdrSize {
		return OptReply{}, fmt.Errorf("%w: short option reply", ErrInvalid)
	}
	if be.Uint64(b) != MagicOptReply {
		return OptReply{}, fmt.Errorf("%w: option reply magic %#x", ErrBadMagic, be.Uint64(b))
	}
	return OptReply{Option: be.Uint32(b[8:]), Type: be.Uint32(b[12:]), Length: be.Uint32(b[16:])}, nil
}

// AppendExportNameReply appends the reply to NBD_OPT_EXPORT_NAME: size,
// transmission flags and, unless the client negotiated NO_ZEROES, 124 zeroes.
func AppendExportNameReply(b []byte, size uint64, flags uint16, noZeroes bool) []byte {
	b = be.AppendUint64(b, size)
	b = be.AppendUint16(b, flags)
	if !noZeroes {
		b = append(b, make([]byte, ExportNameZeroPad)...)
	}
	return b
}

// InfoRequest is the payload of NBD_OPT_INFO and NBD_OPT_GO.
type InfoRequest struct {
	Name  string
	Infos []uint16
}

// Wants reports whether the client asked for information type t.
func (r InfoRequest) Wants(t uint16) bool {
	for _, i := range r.Infos {
		if i == t {
			return true
		}
	}
	return false
}

// DecodeInfoRequest parses the data of NBD_OPT_INFO / NBD_OPT_GO:
// 32-bit name length, name, 16-bit count, count 16-bit info types.
func DecodeInfoRequest(data []byte) (InfoRequest, error) {
	if len(data) < 6 {
		return InfoRequest{}, fmt.Errorf("%w: info request of %d bytes", ErrInvalid, len(data))
	}
	nameLen := be.Uint32(data)
	if uint64(nameLen) > uint64(len(data)-6) {
		return InfoRequest{}, fmt.Errorf("%w: name length %d in %d bytes", ErrInvalid, nameLen, len(data))
	}
	if nameLen > MaxStringLen {
		return InfoRequest{}, fmt.Errorf("%w: name of %d bytes", ErrInvalid, nameLen)
	}
	name := data[4 : 4+nameLen]
	rest := data[4+nameLen:]
	n := int(be.Uint16(rest))
	rest = rest[2:]
	if len(rest) != 2*n {
		return InfoRequest{}, fmt.Errorf("%w: %d info requests in %d bytes", ErrInvalid, n, len(rest))
	}
	req := InfoRequest{Name: string(name), Infos: make([]uint16, n)}
	for i := range n {
		req.Infos[i] = be.Uint16(rest[2*i:])
	}
	return req, nil
}

// AppendInfoRequest encodes an NBD_OPT_INFO / NBD_OPT_GO payload (client side).
func AppendInfoRequest(b []byte, r InfoRequest) []byte {
	b = be.AppendUint32(b, uint32(len(r.Name)))
	b = append(b, r.Name...)
	b = be.AppendUint16(b, uint16(len(r.Infos)))
	for _, i := range r.Infos {
		b = be.AppendUint16(b, i)
	}
	return b
}

// InfoExportData is the NBD_REP_INFO payload for NBD_INFO_EXPORT.
func InfoExportData(size uint64, flags uint16) []byte {
	b := be.AppendUint16(make([]byte, 0, 12), InfoExport)
	b = be.AppendUint64(b, size)
	return be.AppendUint16(b, flags)
}

// InfoStringData is the NBD_REP_INFO payload for NBD_INFO_NAME or
// NBD_INFO_DESCRIPTION.
func InfoStringData(typ uint16, s string) []byte {
	return append(be.AppendUint16(make([]byte, 0, 2+len(s)), typ), s...)
}

// BlockSize holds the block size constraints of an export.
type BlockSize struct {
	Min, Preferred, Max uint32
}

// InfoBlockSizeData is the NBD_REP_INFO payload for NBD_INFO_BLOCK_SIZE.
func InfoBlockSizeData(bs BlockSize) []byte {
	b := be.AppendUint16(make([]byte, 0, 14), InfoBlockSize)
	b = be.AppendUint32(b, bs.Min)
	b = be.AppendUint32(b, bs.Preferred)
	return be.AppendUint32(b, bs.Max)
}

// Info is what a client learns from NBD_REP_INFO replies.
type Info struct {
	Size        uint64
	Flags       uint16
	Name        string
	Description string
	BlockSize   BlockSize
	HasExport   bool
}

// DecodeInfo folds one NBD_REP_INFO payload into in. Unknown information
// types are ignored, as the spec asks of clients.
func DecodeInfo(in *Info, data []byte) error {
	if len(data) < 2 {
		return fmt.Errorf("%w: info reply of %d bytes", ErrInvalid, len(data))
	}
	switch typ := be.Uint16(data); typ {
	case InfoExport:
		if len(data) != 12 {
			return fmt.Errorf("%w: NBD_INFO_EXPORT of %d bytes", ErrInvalid, len(data))
		}
		in.Size, in.Flags, in.HasExport = be.Uint64(data[2:]), be.Uint16(data[10:]), true
	case InfoName:
		in.Name = string(data[2:])
	case InfoDescription:
		in.Description = string(data[2:])
	case InfoBlockSize:
		if len(data) != 14 {
			return fmt.Errorf("%w: NBD_INFO_BLOCK_SIZE of %d bytes", ErrInvalid, len(data))
		}
		in.BlockSize = BlockSize{Min: be.Uint32(data[2:]), Preferred: be.Uint32(data[6:]), Max: be.Uint32(data[10:])}
	}
	return nil
}

// ServerData is the NBD_REP_SERVER payload: the export name and, after it,
// a human-readable description.
func ServerData(name, description string) []byte {
	b := be.AppendUint32(make([]byte, 0, 4+len(name)+len(description)), uint32(len(name)))
	b = append(b, name...)
	return append(b, description...)
}

// DecodeServerData parses an NBD_REP_SERVER payload.
func DecodeServerData(data []byte) (name, description string, err error) {
	if len(data) < 4 {
		return "", "", fmt.Errorf("%w: server reply of %d bytes", ErrInvalid, len(data))
	}
	n := be.Uint32(data)
	if uint64(n) > uint64(len(data)-4) {
		return "", "", fmt.Errorf("%w: name length %d in %d bytes", ErrInvalid, n, len(data))
	}
	return string(data[4 : 4+n]), string(data[4+n:]), nil
}

// Request is a transmission-phase request header.
type Request struct {
	Flags  uint16
	Type   uint16
	Handle uint64
	Offset uint64
	Length uint32
}

// DecodeRequest decodes a 28-byte request header.
func DecodeRequest(b []byte) (Request, error) {
	if len(b) < RequestSize {
		return Request{}, fmt.Errorf("%w: short request", ErrInvalid)
	}
	if m := be.Uint32(b); m != MagicRequest {
		return Request{}, fmt.Errorf("%w: request magic %#x", ErrBadMagic, m)
	}
	return Request{
		Flags:  be.Uint16(b[4:]),
		Type:   be.Uint16(b[6:]),
		Handle: be.Uint64(b[8:]),
		Offset: be.Uint64(b[16:]),
		Length: be.Uint32(b[24:]),
	}, nil
}

// AppendRequest appends a request header (client side).
func AppendRequest(b []byte, r Request) []byte {
	b = be.AppendUint32(b, MagicRequest)
	b = be.AppendUint16(b, r.Flags)
	b = be.AppendUint16(b, r.Type)
	b = be.AppendUint64(b, r.Handle)
	b = be.AppendUint64(b, r.Offset)
	return be.AppendUint32(b, r.Length)
}

// PutSimpleReply writes a 16-byte simple reply header into b.
func PutSimpleReply(b []byte, errno uint32, handle uint64) {
	be.PutUint32(b, MagicSimpleReply)
	be.PutUint32(b[4:], errno)
	be.PutUint64(b[8:], handle)
}

// SimpleReply is a decoded simple reply header.
type SimpleReply struct {
	Error  uint32
	Handle uint64
}

// DecodeSimpleReply decodes a 16-byte simple reply header (client side).
func DecodeSimpleReply(b []byte) (SimpleReply, error) {
	if len(b) < SimpleReplySize {
		return SimpleReply{}, fmt.Errorf("%w: short reply", ErrInvalid)
	}
	if m := be.Uint32(b); m != MagicSimpleReply {
		return SimpleReply{}, fmt.Errorf("%w: reply magic %#x", ErrBadMagic, m)
	}
	return SimpleReply{Error: be.Uint32(b[4:]), Handle: be.Uint64(b[8:])}, nil
}

// CmdName names a command for logs and metrics.
func CmdName(t uint16) string {
	switch t {
	case CmdRead:
		return "read"
	case CmdWrite:
		return "write"
	case CmdDisc:
		return "disc"
	case CmdFlush:
		return "flush"
	case CmdTrim:
		return "trim"
	case CmdCache:
		return "cache"
	case CmdWriteZeroes:
		return "write_zeroes"
	case CmdBlockStatus:
		return "block_status"
	}
	return fmt.Sprintf("cmd(%d)", t)
}

// OptName names an option for logs.
func OptName(o uint32) string {
	names := [...]string{1: "export_name", "abort", "list", "peek_export", "starttls", "info", "go",
		"structured_reply", "list_meta_context", "set_meta_context", "extended_headers"}
	if int(o) < len(names) && names[o] != "" {
		return names[o]
	}
	return fmt.Sprintf("opt(%d)", o)
}
