package link

import (
	"bufio"
	"net"
	"sync"
)

// bufConn sits under TLS so that a frame's records go to the socket in a
// few large writes and come from it in a few large reads: without it,
// every 16 KiB record is a system call each way, which on a fast link
// costs more than the encryption.
//
// Writes go straight through unless a batch is open, so the TLS handshake
// and anything TLS writes on its own are never held back.
type bufConn struct {
	net.Conn
	r     *bufio.Reader
	mu    sync.Mutex
	w     *bufio.Writer
	batch bool
}

const sockBuffer = 256 << 10

func newBufConn(c net.Conn) *bufConn {
	return &bufConn{Conn: c, r: bufio.NewReaderSize(c, sockBuffer), w: bufio.NewWriterSize(c, sockBuffer)}
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *bufConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.batch {
		return c.w.Write(p)
	}
	if c.w.Buffered() > 0 {
		if err := c.w.Flush(); err != nil {
			return 0, err
		}
	}
	return c.Conn.Write(p)
}

// begin holds writes back until end, which writes them out.
func (c *bufConn) begin() {
	c.mu.Lock()
	c.batch = true
	c.mu.Unlock()
}

func (c *bufConn) end() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batch = false
	return c.w.Flush()
}
