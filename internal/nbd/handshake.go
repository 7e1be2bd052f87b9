package nbd

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"tandem/internal/nbd/wire"
)

// maxOptionData bounds the data of one option. The largest legitimate
// option (NBD_OPT_GO with a 4096-byte name and a few info requests) is
// far smaller; a client sending more is treated as hostile and dropped.
const maxOptionData = 64 << 10

// errAbort means the client ended the handshake with NBD_OPT_ABORT.
var errAbort = errors.New("nbd: client aborted the handshake")

// handshakeFlags is what we offer: fixed newstyle, and no 124 zero bytes
// after NBD_OPT_EXPORT_NAME for clients that do not want them.
const handshakeFlags = wire.FlagFixedNewstyle | wire.FlagNoZeroes

// negotiate runs the server side of the fixed newstyle handshake on r and w
// and returns the export the client chose. Any error means the connection
// must be closed (hard disconnect), errAbort included. It touches nothing
// but r and w, so tests and the fuzzer drive it with in-memory buffers.
func (s *Server) negotiate(r *bufio.Reader, w *bufio.Writer) (*export, error) {
	w.Write(wire.AppendGreeting(nil, handshakeFlags))
	if err := w.Flush(); err != nil {
		return nil, fmt.Errorf("nbd: send greeting: %w", err)
	}
	var cf [4]byte
	if _, err := io.ReadFull(r, cf[:]); err != nil {
		return nil, fmt.Errorf("nbd: read client flags: %w", err)
	}
	clientFlags := binary.BigEndian.Uint32(cf[:])
	if err := wire.CheckClientFlags(clientFlags, handshakeFlags); err != nil {
		return nil, err
	}
	noZeroes := clientFlags&wire.ClientFlagNoZeroes != 0

	var hdr [wire.OptHeaderSize]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil, fmt.Errorf("nbd: read option: %w", err)
		}
		opt, err := wire.DecodeOptHeader(hdr[:])
		if err != nil {
			return nil, err
		}
		if opt.Length > maxOptionData {
			return nil, fmt.Errorf("nbd: option %s with %d bytes of data: %w", wire.OptName(opt.Option), opt.Length, wire.ErrInvalid)
		}
		data := make([]byte, opt.Length)
		if _, err := io.ReadFull(r, data); err != nil {
			return nil, fmt.Errorf("nbd: read option %s data: %w", wire.OptName(opt.Option), err)
		}
		exp, done, err := s.option(w, opt.Option, data, noZeroes)
		if err != nil {
			return nil, err
		}
		if err := w.Flush(); err != nil {
			return nil, fmt.Errorf("nbd: reply to option %s: %w", wire.OptName(opt.Option), err)
		}
		if done {
			return exp, nil
		}
	}
}

// option answers one option. done means transmission starts with exp.
func (s *Server) option(w *bufio.Writer, opt uint32, data []byte, noZeroes bool) (exp *export, done bool, err error) {
	reply := func(typ uint32, payload []byte) { w.Write(wire.AppendOptReply(nil, opt, typ, payload)) }
	replyErr := func(typ uint32, format string, args ...any) {
		reply(typ, []byte(fmt.Sprintf(format, args...)))
	}
	switch opt {
	case wire.OptExportName:
		exp := s.lookup(string(data))
		if exp == nil {
			// This option cannot carry an error: the spec says hang up.
			return nil, false, fmt.Errorf("nbd: client asked for unknown export %q", data)
		}
		w.Write(wire.AppendExportNameReply(nil, exp.size, exp.flags, noZeroes))
		return exp, true, nil

	case wire.OptAbort:
		reply(wire.RepAck, nil)
		w.Flush() // the client may already be gone; either way we hang up
		return nil, false, errAbort

	case wire.OptList:
		if len(data) != 0 {
			replyErr(wire.RepErrInvalid, "NBD_OPT_LIST takes no data")
			return nil, false, nil
		}
		for _, e := range s.exports {
			reply(wire.RepServer, wire.ServerData(e.Name, e.Description))
		}
		reply(wire.RepAck, nil)
		return nil, false, nil

	case wire.OptInfo, wire.OptGo:
		req, err := wire.DecodeInfoRequest(data)
		if err != nil {
			replyErr(wire.RepErrInvalid, "%v", err)
			return nil, false, nil
		}
		exp := s.lookup(req.Name)
		if exp == nil {
			replyErr(wire.RepErrUnknown, "no export named %q", req.Name)
			return nil, false, nil
		}
		reply(wire.RepInfo, wire.InfoExportData(exp.size, exp.flags))
		if req.Wants(wire.InfoName) {
			reply(wire.RepInfo, wire.InfoStringData(wire.InfoName, exp.Name))
		}
		if req.Wants(wire.InfoDescription) && exp.Description != "" {
			reply(wire.RepInfo, wire.InfoStringData(wire.InfoDescription, exp.Description))
		}
		// Sent even when not asked for, as qemu does: clients that do not
		// understand it ignore it, and it tells the rest our limits.
		reply(wire.RepInfo, wire.InfoBlockSizeData(exp.bs))
		reply(wire.RepAck, nil)
		return exp, opt == wire.OptGo, nil

	default:
		// STARTTLS, STRUCTURED_REPLY, meta contexts, extended headers and
		// anything newer: we serve simple replies in plain text only.
		replyErr(wire.RepErrUnsup, "option %s is not supported", wire.OptName(opt))
		return nil, false, nil
	}
}
