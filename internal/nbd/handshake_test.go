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
