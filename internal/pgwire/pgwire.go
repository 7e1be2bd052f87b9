// Package pgwire is a small PostgreSQL client: the frontend/backend
// protocol 3.0's startup (trust authentication) and simple query, nothing
// else. The test bed's database client uses it to commit transactions
// through a VIP with a deadline on every step: a full driver's pool,
// retries and cancel requests (a second connection to a server that may
// be dead) would hide what the client saw. It imports nothing of ours;
// the test bed and cmd/tandem import it.
package pgwire

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"
)

// protocolVersion is 3.0, major in the high 16 bits.
const protocolVersion = 3 << 16

// maxMessage bounds one backend message: a client of small queries never
// needs more, and a corrupt length must not allocate gigabytes.
const maxMessage = 1 << 24

// Error is an ErrorResponse from the server; the connection stays usable.
type Error struct {
	Severity string // ERROR, FATAL, PANIC
	Code     string // SQLSTATE, e.g. 57P03 (cannot connect now)
	Message  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("pgwire: %s %s: %s", e.Severity, e.Code, e.Message)
}

// IsServerError reports whether err is the server's answer (the query or
// connection was refused), not a failure to reach it.
func IsServerError(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// ErrBroken: an earlier call on the connection failed midway (a timeout,
// a reset), so its state is unknown; close it and dial again.
var ErrBroken = errors.New("pgwire: connection broken by an earlier error")

// Conn is one session. It is not safe for concurrent use.
type Conn struct {
	c      net.Conn
	r      *bufio.Reader
	broken bool
	// Params are the server's ParameterStatus values (server_version …).
	Params map[string]string
}

// Result is what a simple query returned: the last statement's columns
// and rows (NULL reads as ""), and its command tag ("INSERT 0 1").
type Result struct {
	Columns []string
	Rows    [][]string
	Tag     string
}

// Dial connects to addr (host:port) as user to database, authenticated by
// trust, and waits until the server is ready for a query. ctx bounds the
// whole startup.
func Dial(ctx context.Context, addr, user, database string) (*Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pgwire: %w", err)
	}
	c := &Conn{c: nc, r: bufio.NewReader(nc), Params: map[string]string{}}
	if err := c.startup(ctx, user, database); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func (c *Conn) startup(ctx context.Context, user, database string) error {
	defer c.deadline(ctx)()
	if _, err := c.c.Write(startupMessage(user, database)); err != nil {
		return fmt.Errorf("pgwire: startup: %w", err)
	}
	for {
		typ, body, err := readMessage(c.r)
		if err != nil {
			return fmt.Errorf("pgwire: startup: %w", err)
		}
		switch typ {
		case 'R':
			if len(body) < 4 {
				return errors.New("pgwire: startup: short authentication message")
			}
			if m := binary.BigEndian.Uint32(body); m != 0 {
				return fmt.Errorf("pgwire: the server asks for authentication method %d; only trust is supported", m)
			}
		case 'S':
			if k, v, ok := parseParameterStatus(body); ok {
				c.Params[k] = v
			}
		case 'E':
			return parseError(body)
		case 'Z':
			return nil
		}
	}
}

// deadline applies ctx's deadline and cancellation to the socket until
// the returned function is called.
func (c *Conn) deadline(ctx context.Context) func() {
	if d, ok := ctx.Deadline(); ok {
		c.c.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { c.c.SetDeadline(time.Unix(1, 0)) })
	return func() {
		stop()
		c.c.SetDeadline(time.Time{})
	}
}

// Query runs sql (one or more statements; several run as one implicit
// transaction) and returns the last statement's rows. An error from the
// server is an *Error and leaves the connection usable; any other error
// breaks it (ErrBroken from then on).
func (c *Conn) Query(ctx context.Context, sql string) (Result, error) {
	if c.broken {
		return Result{}, ErrBroken
	}
	defer c.deadline(ctx)()
	res, err := c.query(sql)
	if err != nil && !IsServerError(err) {
		c.broken = true
	}
	return res, err
}

func (c *Conn) query(sql string) (Result, error) {
	if _, err := c.c.Write(queryMessage(sql)); err != nil {
		return Result{}, fmt.Errorf("pgwire: query: %w", err)
	}
	var res Result
	var failed error
	for {
		typ, body, err := readMessage(c.r)
		if err != nil {
			return Result{}, fmt.Errorf("pgwire: query: %w", err)
		}
		switch typ {
		case 'T':
			cols, err := parseRowDescription(body)
			if err != nil {
				return Result{}, err
			}
			res = Result{Columns: cols}
		case 'D':
			row, err := parseDataRow(body)
			if err != nil {
				return Result{}, err
			}
			res.Rows = append(res.Rows, row)
		case 'C':
			res.Tag = cstring(body)
		case 'E':
			failed = parseError(body)
		case 'Z':
			return res, failed
		}
	}
}

// Close says goodbye (Terminate) and closes the socket.
func (c *Conn) Close() error {
	if !c.broken {
		c.c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		c.c.Write([]byte{'X', 0, 0, 0, 4})
	}
	return c.c.Close()
}

// startupMessage: length, protocol version, name/value pairs, a final NUL.
func startupMessage(user, database string) []byte {
	b := make([]byte, 8, 64)
	binary.BigEndian.PutUint32(b[4:], protocolVersion)
	for _, kv := range [][2]string{{"user", user}, {"database", database}} {
		b = append(append(append(append(b, kv[0]...), 0), kv[1]...), 0)
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return b
}

// queryMessage: 'Q', length, the SQL text NUL-terminated.
func queryMessage(sql string) []byte {
	b := make([]byte, 5, 6+len(sql))
	b[0] = 'Q'
	b = append(append(b, sql...), 0)
	binary.BigEndian.PutUint32(b[1:], uint32(len(b)-1))
	return b
}

// readMessage reads one backend message: type byte, length (itself
// included), body.
func readMessage(r *bufio.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := readFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n < 4 || n-4 > maxMessage {
		return 0, nil, fmt.Errorf("message %q of bad length %d", hdr[0], n)
	}
	body := make([]byte, n-4)
	if _, err := readFull(r, body); err != nil {
		return 0, nil, err
	}
	return hdr[0], body, nil
}

func readFull(r *bufio.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// cstring is body up to its first NUL.
func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

// splitCString returns the NUL-terminated string at the front of b and the
// rest.
func splitCString(b []byte) (string, []byte, bool) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), b[i+1:], true
		}
	}
	return "", nil, false
}

func parseParameterStatus(b []byte) (string, string, bool) {
	k, rest, ok := splitCString(b)
	if !ok {
		return "", "", false
	}
	v, _, ok := splitCString(rest)
	return k, v, ok
}

// parseRowDescription returns the column names.
func parseRowDescription(b []byte) ([]string, error) {
	if len(b) < 2 {
		return nil, errors.New("pgwire: short RowDescription")
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	cols := make([]string, 0, min(n, len(b)))
	for range n {
		name, rest, ok := splitCString(b)
		if !ok || len(rest) < 18 { // table oid, column, type oid, size, modifier, format
			return nil, errors.New("pgwire: short RowDescription field")
		}
		cols = append(cols, name)
		b = rest[18:]
	}
	return cols, nil
}

// parseDataRow returns the row's values as text (NULL as "").
func parseDataRow(b []byte) ([]string, error) {
	if len(b) < 2 {
		return nil, errors.New("pgwire: short DataRow")
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	row := make([]string, 0, min(n, len(b)))
	for range n {
		if len(b) < 4 {
			return nil, errors.New("pgwire: short DataRow value")
		}
		l := int32(binary.BigEndian.Uint32(b))
		b = b[4:]
		if l < 0 {
			row = append(row, "")
			continue
		}
		if int(l) > len(b) {
			return nil, errors.New("pgwire: DataRow value past the message")
		}
		row = append(row, string(b[:l]))
		b = b[l:]
	}
	return row, nil
}

// parseError reads an ErrorResponse's fields (a code byte and a string
// each, then a NUL).
func parseError(b []byte) *Error {
	e := &Error{}
	for len(b) > 0 && b[0] != 0 {
		code := b[0]
		v, rest, ok := splitCString(b[1:])
		if !ok {
			break
		}
		switch code {
		case 'S':
			e.Severity = v
		case 'C':
			e.Code = v
		case 'M':
			e.Message = v
		}
		b = rest
	}
	return e
}
