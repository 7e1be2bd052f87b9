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

// negotiation is the server side of one fixed newstyle handshake.
type negotiation struct {
	s *Server
	r *bufio.Reader
	w *bufio.Writer
	// startTLS, when the server has TLS, runs the TLS handshake once
	// NBD_OPT_STARTTLS was acknowledged and returns the reader and writer
	// to go on with (r still holds whatever the client sent after the
	// option). Nil: STARTTLS is not supported.
	startTLS func(r *bufio.Reader) (*bufio.Reader, *bufio.Writer, error)
	// tlsRequired refuses everything but STARTTLS and ABORT until TLS is up.
	tlsRequired bool
	tlsUp       bool
	wantTLS     bool // STARTTLS was acknowledged: the TLS handshake is next
	// refusal, when set, refuses every option with NBD_REP_ERR_POLICY and
	// this message (the server is full).
	refusal string
}

// negotiate runs the server side of the fixed newstyle handshake on r and w
// and returns the export the client chose. Any error means the connection
// must be closed (hard disconnect), errAbort included. It touches nothing
// but r and w, so tests and the fuzzer drive it with in-memory buffers.
func (s *Server) negotiate(r *bufio.Reader, w *bufio.Writer) (*export, error) {
	n := &negotiation{s: s, r: r, w: w, tlsRequired: s.tlsRequire}
	return n.run()
}

func (n *negotiation) run() (*export, error) {
	n.w.Write(wire.AppendGreeting(nil, handshakeFlags))
	if err := n.w.Flush(); err != nil {
		return nil, fmt.Errorf("nbd: send greeting: %w", err)
	}
	var cf [4]byte
	if _, err := io.ReadFull(n.r, cf[:]); err != nil {
		return nil, fmt.Errorf("nbd: read client flags: %w", err)
	}
	clientFlags := binary.BigEndian.Uint32(cf[:])
	if err := wire.CheckClientFlags(clientFlags, handshakeFlags); err != nil {
		return nil, err
	}
	noZeroes := clientFlags&wire.ClientFlagNoZeroes != 0

	var hdr [wire.OptHeaderSize]byte
	for {
		if _, err := io.ReadFull(n.r, hdr[:]); err != nil {
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
		if _, err := io.ReadFull(n.r, data); err != nil {
			return nil, fmt.Errorf("nbd: read option %s data: %w", wire.OptName(opt.Option), err)
		}
		exp, done, err := n.option(opt.Option, data, noZeroes)
		if err != nil {
			return nil, err
		}
		if err := n.w.Flush(); err != nil {
			return nil, fmt.Errorf("nbd: reply to option %s: %w", wire.OptName(opt.Option), err)
		}
		if done {
			return exp, nil
		}
		if n.wantTLS {
			// The spec: after the ACK, the TLS handshake; then option
			// haggling starts afresh inside TLS (no new greeting).
			n.wantTLS = false
			r, w, err := n.startTLS(n.r)
			if err != nil {
				return nil, fmt.Errorf("nbd: TLS handshake: %w", err)
			}
			n.r, n.w, n.tlsUp = r, w, true
		}
	}
}

// option answers one option. done means transmission starts with exp.
func (n *negotiation) option(opt uint32, data []byte, noZeroes bool) (exp *export, done bool, err error) {
	s, w := n.s, n.w
	reply := func(typ uint32, payload []byte) { w.Write(wire.AppendOptReply(nil, opt, typ, payload)) }
	replyErr := func(typ uint32, format string, args ...any) {
		reply(typ, []byte(fmt.Sprintf(format, args...)))
	}
	switch {
	case n.refusal != "" && opt != wire.OptAbort:
		if opt == wire.OptExportName {
			return nil, false, fmt.Errorf("nbd: refused: %s", n.refusal)
		}
		replyErr(wire.RepErrPolicy, "%s", n.refusal)
		return nil, false, nil
	case opt == wire.OptStartTLS:
		switch {
		case n.startTLS == nil:
			replyErr(wire.RepErrUnsup, "this server has no TLS certificate")
		case len(data) != 0:
			replyErr(wire.RepErrInvalid, "NBD_OPT_STARTTLS takes no data")
		case n.tlsUp:
			replyErr(wire.RepErrInvalid, "TLS is already up")
		default:
			reply(wire.RepAck, nil)
			n.wantTLS = true // run() starts the TLS handshake once the ACK is out
		}
		return nil, false, nil
	case n.tlsRequired && !n.tlsUp && opt != wire.OptAbort:
		if opt == wire.OptExportName {
			// This option cannot carry an error: the spec says hang up.
			return nil, false, errors.New("nbd: client asked for an export without TLS, which this server requires")
		}
		replyErr(wire.RepErrTLSReqd, "this server requires TLS (NBD_OPT_STARTTLS)")
		return nil, false, nil
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
		// STRUCTURED_REPLY, meta contexts, extended headers and anything
		// newer: we serve simple replies only.
		replyErr(wire.RepErrUnsup, "option %s is not supported", wire.OptName(opt))
		return nil, false, nil
	}
}
