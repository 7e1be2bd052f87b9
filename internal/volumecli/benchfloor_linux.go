package volumecli

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"tandem/internal/nbd/wire"
	"tandem/internal/peerid"
)

// The floor of the 4 KiB write + flush target: what a sync-mode WRITE and
// FLUSH must do at the least, done by two small programs with no engine,
// on the same hosts as the volume.
//
//	WRITE: the client's request over loopback TCP to the floor primary
//	       (as the NBD client reaches the primary's export); the primary
//	       sends a data frame over TLS 1.3 to the floor secondary (as the
//	       link), pwrites the 4 KiB to its own file meanwhile, waits for
//	       the secondary's answer (sent once its pwrite is done) and
//	       replies to the client.
//	FLUSH: the same hops with an empty frame; both sides fdatasync their
//	       own file at once, on the same disk as the replicas'.
//
// Each side does it on the goroutine that read the request: no hand-off
// between goroutines, no queue, no allocation per sample. Frame sizes are
// the link's (a 44-byte header, the replication payload); the client's
// request and reply are NBD's (28 + 4096 bytes, 16 bytes). The client is
// synchronous, where the bench's NBD client reads replies on a goroutine
// of its own: that hop is in the volume's figure, not in the floor.

const (
	floorHeader   = 44          // the link's frame header
	floorData     = 9 + 4096    // the data frame's payload: offset, flags, data
	floorAck      = 10          // data-ack and flush-ack: ack, empty error
	nbdRequest    = 28          // NBD request header
	nbdReply      = 16          // NBD simple reply
	floorKindData = 1           // first byte of a floor frame
	floorKindSync = 2           // the flush frame
	floorArea     = 4096 * 4096 // the 16 MiB the samples write (syncWriteOffset)
)

// floorSecondary answers floor frames on c: a data frame is written to f
// at its offset, a flush frame made durable with fdatasync, and each is
// answered once done.
func floorSecondary(c io.ReadWriter, f *os.File) error {
	in := make([]byte, floorHeader+floorData)
	ack := make([]byte, floorHeader+floorAck)
	for {
		if _, err := io.ReadFull(c, in[:floorHeader]); err != nil {
			return err
		}
		switch in[0] {
		case floorKindData:
			p := in[floorHeader:]
			if _, err := io.ReadFull(c, p); err != nil {
				return err
			}
			off := int64(binary.BigEndian.Uint64(p)) % floorArea
			if _, err := f.WriteAt(p[9:], off); err != nil {
				return err
			}
		case floorKindSync:
			if err := unix.Fdatasync(int(f.Fd())); err != nil {
				return err
			}
		default:
			return fmt.Errorf("floor: frame kind %d", in[0])
		}
		if _, err := c.Write(ack); err != nil {
			return err
		}
	}
}

// floorPrimary serves one client on c: each NBD-sized request is carried
// to the floor secondary at peer over TLS while the primary does the same
// to its own file f, and answered once both are done.
func floorPrimary(c net.Conn, f *os.File, ids *peerid.Set, peer string) error {
	pc, err := net.DialTimeout("tcp", peer, 3*time.Second)
	if err != nil {
		return err
	}
	defer pc.Close()
	if _, err := pc.Write([]byte{peerFloorSecondary}); err != nil {
		return err
	}
	cfg := ids.Client("b")
	cfg.DynamicRecordSizingDisabled = true // as the link
	link := tls.Client(pc, cfg)
	if err := link.Handshake(); err != nil {
		return err
	}
	req := make([]byte, nbdRequest+4096)
	out := make([]byte, floorHeader+floorData)
	ack := make([]byte, floorHeader+floorAck)
	reply := make([]byte, nbdReply)
	for {
		if _, err := io.ReadFull(c, req[:nbdRequest]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		off := int64(binary.BigEndian.Uint64(req[16:])) % floorArea
		var local func() error
		frame := out[:floorHeader]
		switch binary.BigEndian.Uint16(req[6:]) {
		case wire.CmdWrite:
			data := req[nbdRequest:]
			if _, err := io.ReadFull(c, data); err != nil {
				return err
			}
			frame = out
			frame[0] = floorKindData
			binary.BigEndian.PutUint64(frame[floorHeader:], uint64(off))
			copy(frame[floorHeader+9:], data)
			local = func() error { _, err := f.WriteAt(data, off); return err }
		case wire.CmdFlush:
			frame[0] = floorKindSync
			local = func() error { return unix.Fdatasync(int(f.Fd())) }
		default:
			return fmt.Errorf("floor: NBD command %d", binary.BigEndian.Uint16(req[6:]))
		}
		if _, err := link.Write(frame); err != nil {
			return err
		}
		if err := local(); err != nil {
			return err
		}
		if _, err := io.ReadFull(link, ack); err != nil {
			return err
		}
		copy(reply[8:], req[8:16]) // the handle
		binary.BigEndian.PutUint32(reply, wire.MagicSimpleReply)
		if _, err := c.Write(reply); err != nil {
			return err
		}
	}
}

// floorSamples times n WRITE + FLUSH pairs through the floor primary at
// addr (from host a); it also returns the writes' own times.
func floorSamples(dial func() (net.Conn, error), n, from int, buf []byte) (pairs, writes []time.Duration, err error) {
	c, err := dial()
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	if _, err := c.Write([]byte{peerFloorPrimary}); err != nil {
		return nil, nil, err
	}
	w := make([]byte, nbdRequest+4096)
	fl := make([]byte, nbdRequest)
	rep := make([]byte, nbdReply)
	for _, r := range [][]byte{w, fl} {
		binary.BigEndian.PutUint32(r, wire.MagicRequest)
	}
	binary.BigEndian.PutUint16(w[6:], wire.CmdWrite)
	binary.BigEndian.PutUint32(w[24:], 4096)
	binary.BigEndian.PutUint16(fl[6:], wire.CmdFlush)
	copy(w[nbdRequest:], buf[:4096])
	for i := from; i < from+n; i++ {
		binary.BigEndian.PutUint64(w[16:], uint64(syncWriteOffset(i)))
		start := time.Now()
		if _, err := c.Write(w); err != nil {
			return nil, nil, err
		}
		if _, err := io.ReadFull(c, rep); err != nil {
			return nil, nil, err
		}
		wrote := time.Since(start)
		if _, err := c.Write(fl); err != nil {
			return nil, nil, err
		}
		if _, err := io.ReadFull(c, rep); err != nil {
			return nil, nil, err
		}
		pairs, writes = append(pairs, time.Since(start)), append(writes, wrote)
	}
	return pairs, writes, nil
}
