package volumecli

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/spf13/cobra"

	"tandem/internal/keyfile"
	"tandem/internal/peerid"
)

// `tandem volume bench-peer` is the far end of the bench's network
// baselines: a plain Go TCP receiver run as its own process on the peer
// host, as the secondary's `up` is. The first byte of each connection
// says what it is:
//
//	's'  sink: read to EOF, answer the byte count (8 bytes, big-endian)
//	't'  the same inside TLS 1.3 keyed from the cluster key, as the link
//	'e'  echo 8-byte messages until EOF (the round-trip time)
//	'f'  the floor's secondary: TLS as 't', then floor frames, each
//	     applied to --file and answered (benchfloor_linux.go)
//	'F'  the floor's primary (a bench-peer with --floor-peer, on the
//	     primary's host): NBD-sized requests from the bench, each carried
//	     to the floor's secondary and applied to --file
const (
	peerSink           = 's'
	peerTLSSink        = 't'
	peerEcho           = 'e'
	peerFloorSecondary = 'f'
	peerFloorPrimary   = 'F'
)

// benchTLSDomain names the bench's TLS identities: its own, so a bench
// connection can never be taken for a link's.
const benchTLSDomain = "tandem/volume-bench/v1 node"

func benchPeerCmd(g *globals) *cobra.Command {
	var listen, keyPath, node, file, floorPeer string
	cmd := &cobra.Command{
		Use:    "bench-peer --listen ADDR --key FILE [--node a|b] [--file F] [--floor-peer ADDR]",
		Short:  "The receiving end of `tandem volume bench`'s network baselines (started by the bench)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := keyfile.Load(keyPath)
			if err != nil {
				return err
			}
			ids, err := peerid.New(key, benchTLSDomain, node, []string{"a", "b"})
			if err != nil {
				return err
			}
			p := &benchPeer{ids: ids, floorPeer: floorPeer}
			if file != "" {
				if p.file, err = os.OpenFile(file, os.O_RDWR, 0); err != nil {
					return err
				}
				defer p.file.Close()
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			defer ln.Close()
			fmt.Fprintln(g.out, "ready")
			for {
				c, err := ln.Accept()
				if err != nil {
					return err
				}
				go p.serve(c)
			}
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "address to listen on")
	cmd.Flags().StringVar(&keyPath, "key", "", "the cluster key (for the TLS sink)")
	cmd.Flags().StringVar(&node, "node", "b", "this host's name in the bench's TLS identities (a or b)")
	cmd.Flags().StringVar(&file, "file", "", "the file the floor's frames are applied to (pre-written, 16 MiB)")
	cmd.Flags().StringVar(&floorPeer, "floor-peer", "", "the floor's secondary (a bench-peer with --file), for 'F' connections")
	return cmd
}

// benchPeer is one bench-peer process.
type benchPeer struct {
	ids       *peerid.Set
	file      *os.File // the floor's file, if any
	floorPeer string   // the floor's secondary, for a floor primary
}

func (p *benchPeer) serve(c net.Conn) {
	defer c.Close()
	ids := p.ids
	var mode [1]byte
	if _, err := io.ReadFull(c, mode[:]); err != nil {
		return
	}
	switch mode[0] {
	case peerSink:
		sink(c, c)
	case peerTLSSink:
		cfg := ids.Server()
		cfg.DynamicRecordSizingDisabled = true // as the link
		tc := tls.Server(c, cfg)
		sink(tc, tc)
	case peerFloorSecondary, peerFloorPrimary:
		var err error
		switch {
		case p.file == nil:
			err = errors.New("no --file for the floor")
		case mode[0] == peerFloorPrimary && p.floorPeer == "":
			err = errors.New("no --floor-peer for the floor's primary")
		case mode[0] == peerFloorPrimary:
			err = floorPrimary(c, p.file, ids, p.floorPeer)
		default:
			cfg := ids.Server()
			cfg.DynamicRecordSizingDisabled = true // as the link
			err = floorSecondary(tls.Server(c, cfg), p.file)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			fmt.Fprintf(os.Stderr, "bench-peer: floor: %v\n", err)
		}
	case peerEcho:
		r := bufio.NewReader(c)
		var m [8]byte
		for {
			if _, err := io.ReadFull(r, m[:]); err != nil {
				return
			}
			if _, err := c.Write(m[:]); err != nil {
				return
			}
		}
	}
}

// sink reads r to EOF into one reused buffer and answers the count.
func sink(r io.Reader, w io.Writer) {
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := r.Read(buf)
		n += int64(k)
		if err != nil {
			break
		}
	}
	var ans [8]byte
	binary.BigEndian.PutUint64(ans[:], uint64(n))
	w.Write(ans[:])
}
