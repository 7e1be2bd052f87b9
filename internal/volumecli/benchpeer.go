package volumecli

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"

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
const (
	peerSink    = 's'
	peerTLSSink = 't'
	peerEcho    = 'e'
)

// benchTLSDomain names the bench's TLS identities: its own, so a bench
// connection can never be taken for a link's.
const benchTLSDomain = "tandem/volume-bench/v1 node"

func benchPeerCmd(g *globals) *cobra.Command {
	var listen, keyPath string
	cmd := &cobra.Command{
		Use:    "bench-peer --listen ADDR --key FILE",
		Short:  "The receiving end of `tandem volume bench`'s network baselines (started by the bench)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := keyfile.Load(keyPath)
			if err != nil {
				return err
			}
			ids, err := peerid.New(key, benchTLSDomain, "b", []string{"a", "b"})
			if err != nil {
				return err
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
				go servePeer(c, ids)
			}
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "address to listen on")
	cmd.Flags().StringVar(&keyPath, "key", "", "the cluster key (for the TLS sink)")
	return cmd
}

func servePeer(c net.Conn, ids *peerid.Set) {
	defer c.Close()
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
