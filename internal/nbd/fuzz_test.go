package nbd

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
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
	sc := &serverConn{s: s, nc: srv}
	sc.ctx, sc.cancel = context.WithCancel(context.Background())
	if !s.track(sc) {
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
