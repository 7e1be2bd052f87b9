package nbd

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"tandem/internal/nbd/wire"
)

// Errno is an error value returned by an NBD server in a reply.
type Errno uint32

func (e Errno) Error() string {
	names := map[Errno]string{1: "EPERM", 5: "EIO", 12: "ENOMEM", 22: "EINVAL", 28: "ENOSPC",
		75: "EOVERFLOW", 95: "ENOTSUP", 108: "ESHUTDOWN"}
	if n, ok := names[e]; ok {
		return "nbd: server replied " + n
	}
	return fmt.Sprintf("nbd: server replied error %d", uint32(e))
}

// OptError is an error reply to an option during the handshake.
type OptError struct {
	Option, Type uint32
	Message      string
}

func (e *OptError) Error() string {
	return fmt.Sprintf("nbd: option %s refused with %#x: %s", wire.OptName(e.Option), e.Type, e.Message)
}

// Client is a minimal NBD client: fixed newstyle, OPT_GO, simple replies,
// requests pipelined from any number of goroutines. It is a blockdev.Device,
// so other packages' tests can put a volume behind an NBD hop in-process.
type Client struct {
	nc   net.Conn
	info wire.Info

	wmu  sync.Mutex // one request on the wire at a time
	wbuf []byte

	mu      sync.Mutex
	pending map[uint64]*call
	next    uint64
	err     error // sticky: the connection is unusable
}

type call struct {
	read []byte // destination of a READ reply's data
	done chan error
}

// Dial connects to addr ("unix" or "tcp" network) and opens export.
func Dial(ctx context.Context, network, addr, export string) (*Client, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("nbd: dial %s: %w", addr, err)
	}
	c, err := NewClient(nc, export)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// NewClient runs the handshake on nc and enters transmission on export.
func NewClient(nc net.Conn, export string) (*Client, error) {
	return NewClientTLS(nc, export, nil)
}

// NewClientTLS is NewClient with TLS: it sends NBD_OPT_STARTTLS first and
// runs the rest of the handshake and transmission inside TLS with config
// (nil: no TLS).
func NewClientTLS(nc net.Conn, export string, config *tls.Config) (*Client, error) {
	br := bufio.NewReader(nc)
	noZeroes, err := clientGreeting(nc, br)
	if err != nil {
		return nil, err
	}
	if config != nil {
		if nc, br, err = clientStartTLS(nc, br, config); err != nil {
			return nil, err
		}
	}
	info, err := clientInfo(nc, br, wire.OptGo, export)
	var oe *OptError
	if errors.As(err, &oe) && oe.Type == wire.RepErrUnsup {
		// An old server: fall back to NBD_OPT_EXPORT_NAME.
		info, err = clientExportName(nc, br, export, noZeroes)
	}
	if err != nil {
		return nil, err
	}
	c := &Client{nc: nc, info: info, pending: map[uint64]*call{}}
	go c.readLoop(br)
	return c, nil
}

// clientGreeting reads the server greeting and sends our flags.
func clientGreeting(nc net.Conn, br *bufio.Reader) (noZeroes bool, err error) {
	var g [wire.GreetingSize]byte
	if _, err := io.ReadFull(br, g[:]); err != nil {
		return false, fmt.Errorf("nbd: read greeting: %w", err)
	}
	if binary.BigEndian.Uint64(g[:]) != wire.MagicInit || binary.BigEndian.Uint64(g[8:]) != wire.MagicOpt {
		return false, fmt.Errorf("%w: not a newstyle NBD server", wire.ErrBadMagic)
	}
	hf := binary.BigEndian.Uint16(g[16:])
	if hf&wire.FlagFixedNewstyle == 0 {
		return false, errors.New("nbd: server does not speak fixed newstyle")
	}
	cf := wire.ClientFlagFixedNewstyle
	if hf&wire.FlagNoZeroes != 0 {
		cf |= wire.ClientFlagNoZeroes
	}
	if _, err := nc.Write(binary.BigEndian.AppendUint32(nil, cf)); err != nil {
		return false, fmt.Errorf("nbd: send client flags: %w", err)
	}
	return cf&wire.ClientFlagNoZeroes != 0, nil
}

// clientStartTLS asks for TLS and runs the client side of its handshake.
func clientStartTLS(nc net.Conn, br *bufio.Reader, config *tls.Config) (net.Conn, *bufio.Reader, error) {
	if err := sendOption(nc, wire.OptStartTLS, nil); err != nil {
		return nil, nil, err
	}
	rep, _, err := readOptReply(br, wire.OptStartTLS)
	if err != nil {
		return nil, nil, err
	}
	if rep.Type != wire.RepAck || br.Buffered() > 0 {
		return nil, nil, fmt.Errorf("%w: reply type %#x to NBD_OPT_STARTTLS", wire.ErrInvalid, rep.Type)
	}
	tc := tls.Client(nc, config)
	if err := tc.Handshake(); err != nil {
		return nil, nil, fmt.Errorf("nbd: TLS handshake: %w", err)
	}
	return tc, bufio.NewReader(tc), nil
}

func sendOption(nc net.Conn, opt uint32, data []byte) error {
	b := wire.AppendOptHeader(nil, wire.OptHeader{Option: opt, Length: uint32(len(data))})
	if _, err := nc.Write(append(b, data...)); err != nil {
		return fmt.Errorf("nbd: send option %s: %w", wire.OptName(opt), err)
	}
	return nil
}

// readOptReply reads one option reply and its data.
func readOptReply(br *bufio.Reader, opt uint32) (wire.OptReply, []byte, error) {
	var h [wire.OptReplyHdrSize]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return wire.OptReply{}, nil, fmt.Errorf("nbd: read reply to %s: %w", wire.OptName(opt), err)
	}
	rep, err := wire.DecodeOptReply(h[:])
	if err != nil {
		return rep, nil, err
	}
	if rep.Option != opt || rep.Length > 1<<20 {
		return rep, nil, fmt.Errorf("%w: reply for option %d (%d bytes) to %s", wire.ErrInvalid, rep.Option, rep.Length, wire.OptName(opt))
	}
	data := make([]byte, rep.Length)
	if _, err := io.ReadFull(br, data); err != nil {
		return rep, nil, fmt.Errorf("nbd: read reply to %s: %w", wire.OptName(opt), err)
	}
	if rep.Type&wire.RepFlagError != 0 {
		return rep, data, &OptError{Option: opt, Type: rep.Type, Message: string(data)}
	}
	return rep, data, nil
}

// clientInfo sends NBD_OPT_INFO or NBD_OPT_GO and collects the replies.
func clientInfo(nc net.Conn, br *bufio.Reader, opt uint32, export string) (wire.Info, error) {
	req := wire.InfoRequest{Name: export, Infos: []uint16{wire.InfoName, wire.InfoDescription, wire.InfoBlockSize}}
	if err := sendOption(nc, opt, wire.AppendInfoRequest(nil, req)); err != nil {
		return wire.Info{}, err
	}
	var info wire.Info
	for {
		rep, data, err := readOptReply(br, opt)
		if err != nil {
			return info, err
		}
		switch rep.Type {
		case wire.RepInfo:
			if err := wire.DecodeInfo(&info, data); err != nil {
				return info, err
			}
		case wire.RepAck:
			if !info.HasExport {
				return info, fmt.Errorf("%w: no NBD_INFO_EXPORT before ACK", wire.ErrInvalid)
			}
			return info, nil
		default:
			return info, fmt.Errorf("%w: reply type %#x to %s", wire.ErrInvalid, rep.Type, wire.OptName(opt))
		}
	}
}

func clientExportName(nc net.Conn, br *bufio.Reader, export string, noZeroes bool) (wire.Info, error) {
	if err := sendOption(nc, wire.OptExportName, []byte(export)); err != nil {
		return wire.Info{}, err
	}
	n := 10
	if !noZeroes {
		n += wire.ExportNameZeroPad
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		return wire.Info{}, fmt.Errorf("nbd: export %q refused: %w", export, err)
	}
	return wire.Info{Size: binary.BigEndian.Uint64(b), Flags: binary.BigEndian.Uint16(b[8:]), Name: export, HasExport: true}, nil
}

// ExportInfo describes one export as listed or probed by a client.
type ExportInfo = wire.Info

// List connects over nc, lists the exports with NBD_OPT_LIST, fetches each
// one's details with NBD_OPT_INFO, and ends with NBD_OPT_ABORT.
func List(nc net.Conn) ([]ExportInfo, error) {
	br := bufio.NewReader(nc)
	if _, err := clientGreeting(nc, br); err != nil {
		return nil, err
	}
	if err := sendOption(nc, wire.OptList, nil); err != nil {
		return nil, err
	}
	var names []string
	for {
		rep, data, err := readOptReply(br, wire.OptList)
		if err != nil {
			return nil, err
		}
		if rep.Type == wire.RepAck {
			break
		}
		name, _, err := wire.DecodeServerData(data)
		if err != nil {
			return nil, err
		}
		names = append(names, name)
	}
	var out []ExportInfo
	for _, name := range names {
		info, err := clientInfo(nc, br, wire.OptInfo, name)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	if err := sendOption(nc, wire.OptAbort, nil); err != nil {
		return nil, err
	}
	readOptReply(br, wire.OptAbort) // servers may hang up instead of acking
	return out, nil
}

// Info returns what the server said about the export.
func (c *Client) Info() ExportInfo { return c.info }

// Size returns the export size.
func (c *Client) Size() int64 { return int64(c.info.Size) }

// ReadAt reads len(p) bytes at off, in requests of at most MaxPayload.
func (c *Client) ReadAt(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		n := min(len(p)-done, MaxPayload)
		if err := c.Do(wire.CmdRead, 0, off+int64(done), uint32(n), p[done:done+n]); err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

// WriteAt writes p at off, in requests of at most MaxPayload.
func (c *Client) WriteAt(p []byte, off int64) (int, error) { return c.write(p, off, 0) }

// WriteAtFUA writes p at off with NBD_CMD_FLAG_FUA.
func (c *Client) WriteAtFUA(p []byte, off int64) (int, error) {
	return c.write(p, off, wire.CmdFlagFUA)
}

func (c *Client) write(p []byte, off int64, flags uint16) (int, error) {
	done := 0
	for done < len(p) {
		n := min(len(p)-done, MaxPayload)
		if err := c.Do(wire.CmdWrite, flags, off+int64(done), uint32(n), p[done:done+n]); err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

// Flush sends NBD_CMD_FLUSH.
func (c *Client) Flush() error { return c.Do(wire.CmdFlush, 0, 0, 0, nil) }

// Trim sends NBD_CMD_TRIM (length up to 4 GiB - 1).
func (c *Client) Trim(off, length int64) error {
	return c.Do(wire.CmdTrim, 0, off, uint32(length), nil)
}

// WriteZeroes sends NBD_CMD_WRITE_ZEROES (length up to 4 GiB - 1).
func (c *Client) WriteZeroes(off, length int64) error {
	return c.Do(wire.CmdWriteZeroes, 0, off, uint32(length), nil)
}

// Do sends one request and waits for its reply. For CmdRead, data receives
// the reply payload; for CmdWrite it is the payload sent. A server error
// comes back as an Errno.
func (c *Client) Do(cmd, flags uint16, off int64, length uint32, data []byte) error {
	cl := &call{done: make(chan error, 1)}
	if cmd == wire.CmdRead {
		cl.read = data[:length]
	}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return c.err
	}
	c.next++
	handle := c.next
	c.pending[handle] = cl
	c.mu.Unlock()

	c.wmu.Lock()
	c.wbuf = wire.AppendRequest(c.wbuf[:0], wire.Request{Flags: flags, Type: cmd, Handle: handle, Offset: uint64(off), Length: length})
	bufs := net.Buffers{c.wbuf}
	if cmd == wire.CmdWrite {
		bufs = append(bufs, data[:length])
	}
	_, err := bufs.WriteTo(c.nc)
	c.wmu.Unlock()
	if err != nil {
		c.fail(fmt.Errorf("nbd: send request: %w", err))
	}
	return <-cl.done
}

func (c *Client) readLoop(br *bufio.Reader) {
	var h [wire.SimpleReplySize]byte
	for {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			c.fail(fmt.Errorf("nbd: connection lost: %w", err))
			return
		}
		rep, err := wire.DecodeSimpleReply(h[:])
		if err != nil {
			c.fail(err)
			return
		}
		c.mu.Lock()
		cl := c.pending[rep.Handle]
		delete(c.pending, rep.Handle)
		c.mu.Unlock()
		if cl == nil {
			c.fail(fmt.Errorf("%w: reply for unknown handle %#x", wire.ErrInvalid, rep.Handle))
			return
		}
		if rep.Error != 0 {
			cl.done <- Errno(rep.Error)
			continue
		}
		if cl.read != nil {
			if _, err := io.ReadFull(br, cl.read); err != nil {
				cl.done <- err
				c.fail(fmt.Errorf("nbd: connection lost in read data: %w", err))
				return
			}
		}
		cl.done <- nil
	}
}

// fail makes every pending and future request return err.
func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
	for h, cl := range c.pending {
		cl.done <- c.err
		delete(c.pending, h)
	}
	c.nc.Close()
}

// Close sends NBD_CMD_DISC and closes the connection. Requests still in
// flight get an error.
func (c *Client) Close() error {
	c.wmu.Lock()
	_, err := c.nc.Write(wire.AppendRequest(nil, wire.Request{Type: wire.CmdDisc}))
	c.wmu.Unlock()
	c.fail(net.ErrClosed)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("nbd: send disconnect: %w", err)
	}
	return nil
}
