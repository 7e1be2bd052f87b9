package volumecli

import (
	"bytes"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"

	"tandem/internal/keyfile"
	"tandem/internal/peerid"
)

// The floor's two ends, on loopback in this process: every WRITE lands at
// its offset in both files and every request is answered.
func TestFloorWritesBothFiles(t *testing.T) {
	key, err := keyfile.Generate()
	if err != nil {
		t.Fatal(err)
	}
	idA, err := peerid.New(key, benchTLSDomain, "a", []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	idB, err := peerid.New(key, benchTLSDomain, "b", []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string]*os.File{}
	for _, h := range []string{"a", "b"} {
		f, err := os.OpenFile(filepath.Join(dir, h), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := f.Truncate(floorArea); err != nil {
			t.Fatal(err)
		}
		files[h] = f
	}
	lnB := listen(t, func(c net.Conn) {
		var mode [1]byte
		if _, err := c.Read(mode[:]); err != nil || mode[0] != peerFloorSecondary {
			t.Errorf("secondary: mode %q, %v", mode[0], err)
			return
		}
		floorSecondary(tls.Server(c, idB.Server()), files["b"])
	})
	lnA := listen(t, func(c net.Conn) {
		var mode [1]byte
		if _, err := c.Read(mode[:]); err != nil || mode[0] != peerFloorPrimary {
			t.Errorf("primary: mode %q, %v", mode[0], err)
			return
		}
		if err := floorPrimary(c, files["a"], idA, lnB); err != nil {
			t.Errorf("primary: %v", err)
		}
	})
	buf := randomBuffer(4096, 9)
	pairs, writes, err := floorSamples(func() (net.Conn, error) { return net.Dial("tcp", lnA) }, 5, 4094, buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(pairs) != 5 || len(writes) != 5 {
		t.Fatalf("%d pairs, %d writes", len(pairs), len(writes))
	}
	for i := 4094; i < 4099; i++ {
		for h, f := range files {
			got := make([]byte, 4096)
			if _, err := f.ReadAt(got, syncWriteOffset(i)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, buf) {
				t.Errorf("%s: sample %d not at offset %d", h, i, syncWriteOffset(i))
			}
		}
	}
}

// listen serves each connection to a loopback listener with serve.
func listen(t *testing.T, serve func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); serve(c) }()
		}
	}()
	return ln.Addr().String()
}
