package pgwire

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"reflect"
	"testing"
	"time"
)

// Golden bytes, as PostgreSQL's protocol documentation lays them out
// (Message Formats: StartupMessage, Query).
func TestStartupMessageBytes(t *testing.T) {
	got := hex.EncodeToString(startupMessage("postgres", "db"))
	want := "00000023" + "00030000" +
		hex.EncodeToString([]byte("user\x00postgres\x00database\x00db\x00\x00"))
	if got != want {
		t.Fatalf("startup message\n got %s\nwant %s", got, want)
	}
}

func TestQueryMessageBytes(t *testing.T) {
	got := hex.EncodeToString(queryMessage("SELECT 1"))
	want := "51" + "0000000d" + hex.EncodeToString([]byte("SELECT 1\x00"))
	if got != want {
		t.Fatalf("query message\n got %s\nwant %s", got, want)
	}
}

// msg encodes one backend message.
func msg(typ byte, parts ...[]byte) []byte {
	body := bytes.Join(parts, nil)
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(4+len(body)))
	return append(b, body...)
}

func u16(v int) []byte   { return binary.BigEndian.AppendUint16(nil, uint16(v)) }
func u32(v int) []byte   { return binary.BigEndian.AppendUint32(nil, uint32(v)) }
func cs(s string) []byte { return append([]byte(s), 0) }

func rowDescription(cols ...string) []byte {
	parts := [][]byte{u16(len(cols))}
	for _, c := range cols {
		parts = append(parts, cs(c), make([]byte, 18))
	}
	return msg('T', parts...)
}

func dataRow(vals ...*string) []byte {
	parts := [][]byte{u16(len(vals))}
	for _, v := range vals {
		if v == nil {
			parts = append(parts, u32(-1))
			continue
		}
		parts = append(parts, u32(len(*v)), []byte(*v))
	}
	return msg('D', parts...)
}

func str(s string) *string { return &s }

var (
	authOK    = msg('R', u32(0))
	readyIdle = msg('Z', []byte{'I'})
)

// fakeServer answers one connection: after the startup message it writes
// hello, then for each query message the next answer.
func fakeServer(t *testing.T, hello []byte, answers ...[]byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		var n [4]byte
		if _, err := readFull(r, n[:]); err != nil {
			return
		}
		rest := make([]byte, binary.BigEndian.Uint32(n[:])-4)
		readFull(r, rest)
		c.Write(hello)
		for _, a := range answers {
			if _, _, err := readMessage(r); err != nil {
				return
			}
			c.Write(a)
		}
		readMessage(r) // Terminate, or the client's close
	}()
	return ln.Addr().String()
}

func TestDialAndQuery(t *testing.T) {
	hello := bytes.Join([][]byte{authOK, msg('S', cs("server_version"), cs("15.18")), msg('K', u32(7), u32(9)), readyIdle}, nil)
	answer := bytes.Join([][]byte{rowDescription("seq", "server"), dataRow(str("41"), nil), dataRow(str("42"), str("x")),
		msg('C', cs("INSERT 0 2")), readyIdle}, nil)
	failure := bytes.Join([][]byte{msg('E', []byte("SERROR\x00C23505\x00Mduplicate key\x00\x00")), readyIdle}, nil)
	addr := fakeServer(t, hello, answer, failure)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, "postgres", "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Params["server_version"] != "15.18" {
		t.Errorf("params %v", c.Params)
	}
	res, err := c.Query(ctx, "INSERT … RETURNING seq, server")
	if err != nil {
		t.Fatal(err)
	}
	want := Result{Columns: []string{"seq", "server"}, Rows: [][]string{{"41", ""}, {"42", "x"}}, Tag: "INSERT 0 2"}
	if !reflect.DeepEqual(res, want) {
		t.Fatalf("got %+v, want %+v", res, want)
	}
	_, err = c.Query(ctx, "INSERT again")
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != "23505" || pe.Message != "duplicate key" || !IsServerError(err) {
		t.Fatalf("server error: %v", err)
	}
	if c.broken {
		t.Fatal("a server error broke the connection")
	}
}

func TestAuthenticationOtherThanTrustIsRefused(t *testing.T) {
	addr := fakeServer(t, msg('R', u32(5), []byte{1, 2, 3, 4})) // MD5
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Dial(ctx, addr, "postgres", "postgres"); err == nil {
		t.Fatal("dialled a server that wants a password")
	}
}

func TestStartupErrorIsTheServers(t *testing.T) {
	addr := fakeServer(t, msg('E', []byte("SFATAL\x00C57P03\x00Mthe database system is starting up\x00\x00")))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := Dial(ctx, addr, "postgres", "postgres")
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != "57P03" {
		t.Fatalf("got %v, want the server's 57P03", err)
	}
}

// A query the server never answers ends at the context's deadline, and
// the connection is broken from then on.
func TestQueryDeadlineBreaksTheConnection(t *testing.T) {
	addr := fakeServer(t, bytes.Join([][]byte{authOK, readyIdle}, nil), nil) // the answer never comes
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, "postgres", "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	qctx, qcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer qcancel()
	if _, err := c.Query(qctx, "SELECT pg_sleep(10)"); err == nil || IsServerError(err) {
		t.Fatalf("got %v, want a timeout", err)
	}
	if _, err := c.Query(ctx, "SELECT 1"); !errors.Is(err, ErrBroken) {
		t.Fatalf("after the timeout: %v, want ErrBroken", err)
	}
}

// FuzzReadMessage: no input panics the reader or the parsers, and a length
// beyond maxMessage is refused before it is allocated.
func FuzzReadMessage(f *testing.F) {
	f.Add(rowDescription("a", "b"))
	f.Add(dataRow(str("1"), nil))
	f.Add(msg('E', []byte("SERROR\x00C1\x00Mm\x00\x00")))
	f.Add([]byte{'D', 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, body, err := readMessage(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			return
		}
		if len(body) > maxMessage {
			t.Fatalf("a body of %d bytes", len(body))
		}
		switch typ {
		case 'T':
			parseRowDescription(body)
		case 'D':
			parseDataRow(body)
		case 'E':
			parseError(body)
		case 'S':
			parseParameterStatus(body)
		}
	})
}
