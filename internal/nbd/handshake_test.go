package nbd

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"tandem/internal/blockdev"
	"tandem/internal/nbd/wire"
)

func handshakeServer() *Server {
	return NewServer(nil,
		Export{Name: "vol", Description: "a volume", Device: blockdev.NewMem(1 << 20), MultiConn: true},
		Export{Name: "ro", Device: blockdev.NewMem(4096), ReadOnly: true})
}

// clientScript builds what a client sends: flags, then options.
type clientScript struct{ b []byte }

func (c *clientScript) flags(f uint32) *clientScript {
	c.b = binary.BigEndian.AppendUint32(c.b, f)
	return c
}

func (c *clientScript) opt(o uint32, data []byte) *clientScript {
	c.b = wire.AppendOptHeader(c.b, wire.OptHeader{Option: o, Length: uint32(len(data))})
	c.b = append(c.b, data...)
	return c
}

func runNegotiate(s *Server, in []byte) (*export, []byte, error) {
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	exp, err := s.negotiate(bufio.NewReader(bytes.NewReader(in)), w)
	w.Flush()
	return exp, out.Bytes(), err
}

type optReply struct {
	opt, typ uint32
	data     []byte
}

// parseServer splits server handshake output into the greeting and
// option replies; rest is whatever follows the last complete reply.
func parseServer(t testing.TB, b []byte) (replies []optReply, rest []byte) {
	t.Helper()
	if len(b) < wire.GreetingSize || !bytes.Equal(b[:wire.GreetingSize], wire.AppendGreeting(nil, handshakeFlags)) {
		t.Fatalf("bad greeting %x", b[:min(len(b), wire.GreetingSize)])
	}
	b = b[wire.GreetingSize:]
	for len(b) >= wire.OptReplyHdrSize {
		h, err := wire.DecodeOptReply(b)
		if err != nil {
			return replies, b
		}
		if uint64(len(b)) < wire.OptReplyHdrSize+uint64(h.Length) {
			t.Fatalf("truncated option reply %+v", h)
		}
		replies = append(replies, optReply{h.Option, h.Type, b[wire.OptReplyHdrSize : wire.OptReplyHdrSize+h.Length]})
		b = b[wire.OptReplyHdrSize+h.Length:]
	}
	return replies, b
}

func TestNegotiateGolden(t *testing.T) {
	s := handshakeServer()
	in := (&clientScript{}).flags(wire.ClientFlagFixedNewstyle|wire.ClientFlagNoZeroes).
		opt(wire.OptList, nil).
		opt(wire.OptInfo, wire.AppendInfoRequest(nil, wire.InfoRequest{Name: "vol", Infos: []uint16{wire.InfoName, wire.InfoDescription, wire.InfoBlockSize}})).
		opt(wire.OptGo, wire.AppendInfoRequest(nil, wire.InfoRequest{Name: "ro"})).b
	exp, out, err := runNegotiate(s, in)
	if err != nil || exp == nil || exp.Name != "ro" {
		t.Fatalf("negotiate: %v %v", exp, err)
	}
	// The whole server side, field by field from the spec.
	want := unhexT(t, ""+
		"4e42444d41474943 49484156454f5054 0003"+ // NBDMAGIC IHAVEOPT FIXED|NO_ZEROES
		// NBD_OPT_LIST: two NBD_REP_SERVER then ACK
		"0003e889045565a9 00000003 00000002 0000000f 00000003 766f6c 6120766f6c756d65"+
		"0003e889045565a9 00000003 00000002 00000006 00000002 726f"+
		"0003e889045565a9 00000003 00000001 00000000"+
		// NBD_OPT_INFO vol: EXPORT (size 1 MiB, flags HAS|FLUSH|FUA|TRIM|WZ|MULTI_CONN), NAME, DESCRIPTION, BLOCK_SIZE, ACK
		"0003e889045565a9 00000006 00000003 0000000c 0000 0000000000100000 016d"+
		"0003e889045565a9 00000006 00000003 00000005 0001 766f6c"+
		"0003e889045565a9 00000006 00000003 0000000a 0002 6120766f6c756d65"+
		"0003e889045565a9 00000006 00000003 0000000e 0003 00000001 00001000 02000000"+
		"0003e889045565a9 00000006 00000001 00000000"+
		// NBD_OPT_GO ro: EXPORT (4096 bytes, HAS_FLAGS|READ_ONLY), BLOCK_SIZE, ACK
		"0003e889045565a9 00000007 00000003 0000000c 0000 0000000000001000 0003"+
		"0003e889045565a9 00000007 00000003 0000000e 0003 00000001 00001000 02000000"+
		"0003e889045565a9 00000007 00000001 00000000")
	if !bytes.Equal(out, want) {
		t.Fatalf("server sent\n%x\nwant\n%x", out, want)
	}
}

func unhexT(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNegotiateExportName(t *testing.T) {
	s := handshakeServer()
	for _, noZeroes := range []bool{false, true} {
		flags := wire.ClientFlagFixedNewstyle
		if noZeroes {
			flags |= wire.ClientFlagNoZeroes
		}
		exp, out, err := runNegotiate(s, (&clientScript{}).flags(flags).opt(wire.OptExportName, []byte("vol")).b)
		if err != nil || exp.Name != "vol" {
			t.Fatalf("noZeroes=%v: %v %v", noZeroes, exp, err)
		}
		want := wire.AppendExportNameReply(nil, 1<<20, exp.flags, noZeroes)
		if got := out[wire.GreetingSize:]; !bytes.Equal(got, want) {
			t.Fatalf("noZeroes=%v: got %x want %x", noZeroes, got, want)
		}
	}
	// The empty name is the default (first) export; an old non-fixed
	// client (flags 0) is served too.
	exp, _, err := runNegotiate(s, (&clientScript{}).flags(0).opt(wire.OptExportName, nil).b)
	if err != nil || exp.Name != "vol" {
		t.Fatalf("default export: %v %v", exp, err)
	}
}

func TestNegotiateRefusals(t *testing.T) {
	s := handshakeServer()
	in := (&clientScript{}).flags(wire.ClientFlagFixedNewstyle).
		opt(wire.OptStructuredReply, nil).
		opt(wire.OptStartTLS, nil).
		opt(wire.OptSetMetaContext, []byte{0, 0, 0, 0}).
		opt(0x63, []byte("whatever")).
		opt(wire.OptGo, wire.AppendInfoRequest(nil, wire.InfoRequest{Name: "nope"})).
		opt(wire.OptGo, []byte{0, 0, 0, 9, 'x'}).
		opt(wire.OptList, []byte("x")).
		opt(wire.OptAbort, nil).b
	exp, out, err := runNegotiate(s, in)
	if !errors.Is(err, errAbort) || exp != nil {
		t.Fatalf("want errAbort, got %v %v", exp, err)
	}
	replies, rest := parseServer(t, out)
	want := []optReply{
		{wire.OptStructuredReply, wire.RepErrUnsup, nil},
		{wire.OptStartTLS, wire.RepErrUnsup, nil},
		{wire.OptSetMetaContext, wire.RepErrUnsup, nil},
		{0x63, wire.RepErrUnsup, nil},
		{wire.OptGo, wire.RepErrUnknown, nil},
		{wire.OptGo, wire.RepErrInvalid, nil},
		{wire.OptList, wire.RepErrInvalid, nil},
		{wire.OptAbort, wire.RepAck, nil},
	}
	if len(replies) != len(want) || len(rest) != 0 {
		t.Fatalf("got %d replies (+%d bytes), want %d", len(replies), len(rest), len(want))
	}
	for i, r := range replies {
		if r.opt != want[i].opt || r.typ != want[i].typ {
			t.Errorf("reply %d: option %d type %#x, want option %d type %#x (%s)", i, r.opt, r.typ, want[i].opt, want[i].typ, r.data)
		}
	}
}

func TestNegotiateHangsUp(t *testing.T) {
	s := handshakeServer()
	fixed := (&clientScript{}).flags(wire.ClientFlagFixedNewstyle)
	cases := map[string][]byte{
		"no client flags":     nil,
		"unknown client flag": (&clientScript{}).flags(0x80).b,
		"eof after flags":     fixed.b,
		"bad option magic":    append(append([]byte{}, fixed.b...), []byte("NBDMAGIC\x00\x00\x00\x07\x00\x00\x00\x00")...),
		"option too big":      append(append([]byte{}, fixed.b...), wire.AppendOptHeader(nil, wire.OptHeader{Option: wire.OptGo, Length: maxOptionData + 1})...),
		"truncated data":      append(append([]byte{}, fixed.b...), wire.AppendOptHeader(nil, wire.OptHeader{Option: wire.OptGo, Length: 100})...),
		"unknown export name": (&clientScript{}).flags(wire.ClientFlagFixedNewstyle).opt(wire.OptExportName, []byte("nope")).b,
	}
	for name, in := range cases {
		exp, _, err := runNegotiate(s, in)
		if err == nil || exp != nil {
			t.Errorf("%s: got export %v, err %v; want an error", name, exp, err)
		}
	}
}

// FuzzNegotiate feeds arbitrary client bytes to the handshake. It must not
// panic, must end (the input is finite), must only choose our exports, and
// must only ever send well-formed replies.
func FuzzNegotiate(f *testing.F) {
	fixed := func() *clientScript {
		return (&clientScript{}).flags(wire.ClientFlagFixedNewstyle | wire.ClientFlagNoZeroes)
	}
	f.Add(fixed().opt(wire.OptGo, wire.AppendInfoRequest(nil, wire.InfoRequest{Name: "vol", Infos: []uint16{1, 2, 3}})).b)
	f.Add(fixed().opt(wire.OptList, nil).opt(wire.OptInfo, wire.AppendInfoRequest(nil, wire.InfoRequest{Name: "ro"})).opt(wire.OptAbort, nil).b)
	f.Add(fixed().opt(wire.OptStructuredReply, nil).opt(wire.OptExportName, []byte("vol")).b)
	f.Add((&clientScript{}).flags(0).opt(wire.OptExportName, nil).b)
	f.Add(fixed().opt(0x63, []byte("junk")).opt(wire.OptGo, []byte{0, 0, 0, 1}).b)
	f.Fuzz(func(t *testing.T, in []byte) {
		s := handshakeServer()
		exp, out, err := runNegotiate(s, in)
		if (err == nil) != (exp != nil) {
			t.Fatalf("export %v with error %v", exp, err)
		}
		if exp != nil && s.lookup(exp.Name) != exp {
			t.Fatalf("chose an export we do not serve: %q", exp.Name)
		}
		replies, rest := parseServer(t, out)
		for _, r := range replies {
			if r.typ == wire.RepInfo && len(r.data) < 2 {
				t.Fatalf("short NBD_REP_INFO %x", r.data)
			}
		}
		// Only NBD_OPT_EXPORT_NAME's reply may follow the option replies.
		if len(rest) != 0 && len(rest) != 10 && len(rest) != 10+wire.ExportNameZeroPad {
			t.Fatalf("%d stray bytes after option replies: %x", len(rest), rest)
		}
	})
}

// Handshake modes FuzzNegotiateModes drives.
const (
	modePlain       = iota // no TLS offered
	modeTLSOptional        // STARTTLS offered, not required
	modeTLSRequired        // forced TLS
	modeRefusal            // the server is full
	modeCount
)

// runNegotiateMode runs the handshake in one of the modes. The "TLS" is a
// pass-through (the same reader and writer go on), so what follows
// STARTTLS is fuzzed as plain bytes.
func runNegotiateMode(s *Server, mode int, in []byte) (exp *export, out []byte, tlsUp bool, err error) {
	var b bytes.Buffer
	n := &negotiation{s: s, r: bufio.NewReader(bytes.NewReader(in)), w: bufio.NewWriter(&b)}
	switch mode {
	case modeTLSOptional, modeTLSRequired:
		n.startTLS = func(r *bufio.Reader) (*bufio.Reader, *bufio.Writer, error) { return r, n.w, nil }
		n.tlsRequired = mode == modeTLSRequired
	case modeRefusal:
		n.refusal = "too many connections"
	}
	exp, err = n.run()
	n.w.Flush()
	return exp, b.Bytes(), n.tlsUp, err
}

func TestNegotiateModes(t *testing.T) {
	s := handshakeServer()
	goVol := wire.AppendInfoRequest(nil, wire.InfoRequest{Name: "vol"})
	fixed := func() *clientScript { return (&clientScript{}).flags(wire.ClientFlagFixedNewstyle) }

	// Forced TLS: everything but STARTTLS and ABORT is refused until TLS
	// is up, then the export is served.
	exp, out, up, err := runNegotiateMode(s, modeTLSRequired, fixed().
		opt(wire.OptList, nil).opt(wire.OptGo, goVol).opt(wire.OptStartTLS, nil).opt(wire.OptGo, goVol).b)
	if err != nil || exp == nil || !up {
		t.Fatalf("forced TLS: %v %v tls=%v", exp, err, up)
	}
	replies, _ := parseServer(t, out)
	wantTypes := []uint32{wire.RepErrTLSReqd, wire.RepErrTLSReqd, wire.RepAck, wire.RepInfo, wire.RepInfo, wire.RepAck}
	if len(replies) != len(wantTypes) {
		t.Fatalf("forced TLS: %d replies, want %d", len(replies), len(wantTypes))
	}
	for i, r := range replies {
		if r.typ != wantTypes[i] {
			t.Errorf("forced TLS reply %d: type %#x, want %#x", i, r.typ, wantTypes[i])
		}
	}
	if _, _, _, err := runNegotiateMode(s, modeTLSRequired, fixed().opt(wire.OptExportName, []byte("vol")).b); err == nil {
		t.Error("forced TLS: NBD_OPT_EXPORT_NAME without TLS was served")
	}

	// Full: every option is refused with the reason, ABORT acknowledged.
	exp, out, _, err = runNegotiateMode(s, modeRefusal, fixed().opt(wire.OptGo, goVol).opt(wire.OptList, nil).opt(wire.OptAbort, nil).b)
	if !errors.Is(err, errAbort) || exp != nil {
		t.Fatalf("refusal: %v %v", exp, err)
	}
	replies, _ = parseServer(t, out)
	if len(replies) != 3 || replies[0].typ != wire.RepErrPolicy || string(replies[0].data) != "too many connections" ||
		replies[1].typ != wire.RepErrPolicy || replies[2].typ != wire.RepAck {
		t.Fatalf("refusal replies: %+v", replies)
	}
}

// FuzzNegotiateModes feeds arbitrary client bytes to the handshake in each
// mode: plain, TLS offered, TLS required, and refusing (server full). On
// top of FuzzNegotiate's checks: with TLS required nothing about the
// exports leaks and none is chosen before STARTTLS was acknowledged; a
// refusing server answers only NBD_REP_ERR_POLICY (and ACK to ABORT) and
// never enters transmission.
func FuzzNegotiateModes(f *testing.F) {
	fixed := func() *clientScript {
		return (&clientScript{}).flags(wire.ClientFlagFixedNewstyle | wire.ClientFlagNoZeroes)
	}
	goVol := wire.AppendInfoRequest(nil, wire.InfoRequest{Name: "vol", Infos: []uint16{1, 2, 3}})
	for mode := range uint8(modeCount) {
		f.Add(mode, fixed().opt(wire.OptStartTLS, nil).opt(wire.OptGo, goVol).b)
		f.Add(mode, fixed().opt(wire.OptList, nil).opt(wire.OptStartTLS, nil).opt(wire.OptStartTLS, nil).opt(wire.OptInfo, goVol).opt(wire.OptAbort, nil).b)
		f.Add(mode, fixed().opt(wire.OptStructuredReply, nil).opt(wire.OptStartTLS, []byte{1}).opt(wire.OptExportName, []byte("vol")).b)
		f.Add(mode, fixed().opt(wire.OptGo, goVol).b)
		f.Add(mode, fixed().opt(0x63, []byte("junk")).opt(wire.OptGo, []byte{0, 0, 0, 1}).b)
		f.Add(mode, []byte("GET / HTTP/1.1\r\n\r\n"))
	}
	f.Fuzz(func(t *testing.T, mode uint8, in []byte) {
		m := int(mode % modeCount)
		s := handshakeServer()
		exp, out, tlsUp, err := runNegotiateMode(s, m, in)
		if (err == nil) != (exp != nil) {
			t.Fatalf("export %v with error %v", exp, err)
		}
		if exp != nil && s.lookup(exp.Name) != exp {
			t.Fatalf("chose an export we do not serve: %q", exp.Name)
		}
		if exp != nil && m == modeTLSRequired && !tlsUp {
			t.Fatal("entered transmission without TLS on a server that requires it")
		}
		if exp != nil && m == modeRefusal {
			t.Fatal("a refusing server entered transmission")
		}
		replies, rest := parseServer(t, out)
		tlsAcked := false
		for _, r := range replies {
			if r.typ == wire.RepInfo && len(r.data) < 2 {
				t.Fatalf("short NBD_REP_INFO %x", r.data)
			}
			switch m {
			case modeTLSRequired:
				if !tlsAcked && (r.typ == wire.RepInfo || r.typ == wire.RepServer) {
					t.Fatalf("export details sent before TLS: reply %#x to option %d", r.typ, r.opt)
				}
			case modeRefusal:
				if r.typ != wire.RepErrPolicy && !(r.typ == wire.RepAck && r.opt == wire.OptAbort) {
					t.Fatalf("a refusing server replied %#x to option %d", r.typ, r.opt)
				}
			}
			if r.opt == wire.OptStartTLS && r.typ == wire.RepAck {
				if m == modePlain || m == modeRefusal || tlsAcked {
					t.Fatalf("STARTTLS acknowledged in mode %d (already up: %v)", m, tlsAcked)
				}
				tlsAcked = true
			}
		}
		if len(rest) != 0 && len(rest) != 10 && len(rest) != 10+wire.ExportNameZeroPad {
			t.Fatalf("%d stray bytes after option replies: %x", len(rest), rest)
		}
		if len(rest) != 0 && (m == modeRefusal || (m == modeTLSRequired && !tlsUp)) {
			t.Fatalf("NBD_OPT_EXPORT_NAME answered in mode %d without TLS", m)
		}
	})
}
