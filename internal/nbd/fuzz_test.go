package nbd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"tandem/internal/blockdev"
	"tandem/internal/nbd/wire"
)

func requests(reqs ...wire.Request) []byte {
	var b []byte
	for _, r := range reqs {
		b = wire.AppendRequest(b, r)
		if r.Type == wire.CmdWrite && r.Length <= 1<<16 {
			b = append(b, bytes.Repeat([]byte{0xa5}, int(r.Length))...)
		}
	}
	return b
}

// FuzzTransmission feeds arbitrary bytes to a connection in transmission
// on a 1 MiB export. Whatever arrives, the server must neither panic nor
// hang: it answers or hangs up, and the connection's goroutines end.
func FuzzTransmission(f *testing.F) {
	f.Add(requests(
		wire.Request{Type: wire.CmdWrite, Handle: 1, Offset: 4096, Length: 4096},
		wire.Request{Type: wire.CmdRead, Handle: 2, Offset: 0, Length: 8192},
		wire.Request{Type: wire.CmdFlush, Handle: 3},
		wire.Request{Type: wire.CmdTrim, Flags: wire.CmdFlagFUA, Handle: 4, Length: 4096},
		wire.Request{Type: wire.CmdWriteZeroes, Flags: wire.CmdFlagNoHole, Handle: 5, Offset: 8192, Length: 65536},
		wire.Request{Type: wire.CmdDisc}))
	f.Add(requests(
		wire.Request{Type: wire.CmdWrite, Flags: wire.CmdFlagFUA, Handle: 1, Offset: 1<<20 - 10, Length: 100},
		wire.Request{Type: wire.CmdRead, Flags: wire.CmdFlagDF, Handle: 2, Length: 512},
		wire.Request{Type: 42, Handle: 3},
		wire.Request{Type: wire.CmdRead, Handle: 4, Length: MaxPayload + 1}))
	f.Add(requests(wire.Request{Type: wire.CmdWrite, Handle: 1, Length: 4096})[:200]) // cut short
	f.Add(requests(wire.Request{Type: wire.CmdWrite, Length: MaxPayload + 1}))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"))
	f.Fuzz(runTransmission)
}

func runTransmission(t *testing.T, in []byte) {
	s := NewServer(nil, Export{Name: "vol", Device: blockdev.NewMem(1 << 20)})
	cli, srv := net.Pipe()
	defer cli.Close()
	sc := &serverConn{s: s, nc: srv, raw: srv}
	sc.ctx, sc.cancel = context.WithCancel(context.Background())
	if s.track(sc) != tracked {
		t.Fatal("server refused the connection")
	}
	done := make(chan struct{})
	go func() {
		sc.serve()
		close(done)
	}()
	br := bufio.NewReader(cli)
	if _, err := clientGreeting(cli, br); err != nil {
		t.Fatal(err)
	}
	if _, err := clientInfo(cli, br, wire.OptGo, "vol"); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, br)
	cli.Write(in) // fails once the server hangs up; that is fine
	cli.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("server connection did not end")
	}
}

// scriptConn is a net.Conn whose peer says exactly in and ignores what it
// is sent; reads end with io.EOF.
type scriptConn struct {
	net.Conn // nil: only the methods below are used
	r        *bytes.Reader
}

func (c *scriptConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// serverTranscript is what our server sends for a client script.
func serverTranscript(in []byte) []byte {
	_, out, _ := runNegotiate(handshakeServer(), in)
	return out
}

// FuzzOptionReplies feeds arbitrary server bytes to the client side of the
// handshake: the option replies of NBD_OPT_LIST, NBD_OPT_INFO, NBD_OPT_GO
// and NBD_OPT_STARTTLS, and NBD_OPT_EXPORT_NAME's reply, as List and
// NewClient decode them. Whatever a server sends, the client must not
// panic or hang, must end with an error or with a complete answer (an
// export it was told the size of), and must not allocate what a length
// field asks for beyond its 1 MiB cap.
func FuzzOptionReplies(f *testing.F) {
	fixed := (&clientScript{}).flags(wire.ClientFlagFixedNewstyle | wire.ClientFlagNoZeroes)
	info := func(name string) []byte {
		return wire.AppendInfoRequest(nil, wire.InfoRequest{Name: name, Infos: []uint16{wire.InfoName, wire.InfoDescription, wire.InfoBlockSize}})
	}
	f.Add(serverTranscript((&clientScript{b: append([]byte{}, fixed.b...)}).opt(wire.OptList, nil).opt(wire.OptInfo, info("vol")).opt(wire.OptInfo, info("ro")).opt(wire.OptAbort, nil).b))
	f.Add(serverTranscript((&clientScript{b: append([]byte{}, fixed.b...)}).opt(wire.OptGo, info("vol")).b))
	f.Add(serverTranscript((&clientScript{b: append([]byte{}, fixed.b...)}).opt(wire.OptGo, info("nope")).b))
	f.Add(serverTranscript((&clientScript{b: append([]byte{}, fixed.b...)}).opt(wire.OptStructuredReply, nil).opt(wire.OptExportName, []byte("vol")).b))
	greeting := wire.AppendGreeting(nil, handshakeFlags)
	f.Add(append(append([]byte{}, greeting...), wire.AppendOptReply(nil, wire.OptGo, wire.RepErrPolicy, []byte("too many connections"))...))
	f.Add(append(append([]byte{}, greeting...), wire.AppendOptReply(nil, wire.OptGo, wire.RepInfo, []byte{0, 0})...))
	f.Add(append(append([]byte{}, greeting...), wire.AppendOptReply(nil, wire.OptList, wire.RepServer, []byte{0, 0, 0xff, 0xff, 'x'})...))
	f.Add(append(append([]byte{}, greeting...), wire.AppendOptReply(nil, wire.OptStartTLS, wire.RepAck, nil)...))
	f.Add([]byte("NBDMAGIC\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		exports, err := List(&scriptConn{r: bytes.NewReader(in)})
		if err == nil {
			for _, e := range exports {
				if !e.HasExport {
					t.Fatalf("List returned %q without its size", e.Name)
				}
			}
		}
		c, err := NewClient(&scriptConn{r: bytes.NewReader(in)}, "vol")
		if err == nil {
			if !c.Info().HasExport {
				t.Fatal("NewClient entered transmission without the export's size")
			}
			c.Close()
		}
		// STARTTLS: a client must not go on unless the server acked.
		br := bufio.NewReader(bytes.NewReader(in))
		sc := &scriptConn{r: bytes.NewReader(nil)}
		if _, err := clientGreeting(sc, br); err == nil {
			clientStartTLS(sc, br, &tls.Config{InsecureSkipVerify: true}) // the handshake fails on EOF
		}
	})
}

// simpleReply is a server's reply header, followed by data.
func simpleReply(errno uint32, handle uint64, data ...byte) []byte {
	b := make([]byte, wire.SimpleReplySize, wire.SimpleReplySize+len(data))
	wire.PutSimpleReply(b, errno, handle)
	return append(b, data...)
}

// FuzzClientReplies feeds arbitrary server bytes to a client in
// transmission (after a well-formed handshake) while it reads 16 bytes,
// flushes and writes, one request after the other as the handles 1, 2
// and 3. Whatever the server sends, the client must not panic or hang,
// and a read that succeeds holds the data that followed its reply. (The
// option replies before transmission are FuzzOptionReplies'.)
func FuzzClientReplies(f *testing.F) {
	data := bytes.Repeat([]byte{0xa5}, 16)
	f.Add(slices.Concat(simpleReply(0, 1, data...), simpleReply(0, 2), simpleReply(0, 3)))
	f.Add(slices.Concat(simpleReply(5, 1), simpleReply(0, 2), simpleReply(28, 3)))
	f.Add(slices.Concat(simpleReply(0, 2), simpleReply(0, 1, data...)))
	f.Add(simpleReply(0, 1, data[:3]...))
	f.Add([]byte("\x67\x44\x66\x98\x00\x00"))
	handshake := serverTranscript((&clientScript{}).flags(wire.ClientFlagFixedNewstyle|wire.ClientFlagNoZeroes).
		opt(wire.OptGo, wire.AppendInfoRequest(nil, wire.InfoRequest{Name: "vol"})).b)
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := NewClient(&scriptConn{r: bytes.NewReader(slices.Concat(handshake, in))}, "vol")
		if err != nil {
			t.Fatalf("the handshake failed: %v", err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 16)
			// Only handle 1 is pending, so its reply must come first.
			if _, err := c.ReadAt(buf, 0); err == nil && !bytes.Equal(buf, in[wire.SimpleReplySize:wire.SimpleReplySize+16]) {
				t.Errorf("read %x, not the data after its reply", buf)
			}
			c.Flush()
			c.WriteAt(data, 0)
			c.Close()
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the client hung")
		}
	})
}
