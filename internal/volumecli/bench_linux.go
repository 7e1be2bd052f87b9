package volumecli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"tandem/internal/keyfile"
	"tandem/internal/nbd"
	"tandem/internal/netutil"
	"tandem/internal/peerid"
	"tandem/internal/volume"
)

// benchRun is one run of the bench: the hosts, the volume on them, the
// baseline files and what has been measured so far.
type benchRun struct {
	o      benchOptions
	hb     *benchHosts
	res    BenchResult
	ctlA   *controlClient
	client *nbd.Client
	net    *benchNet
	raw    [2]*os.File // baseline files, size bytes each
	buf    []byte      // 1 MiB of random bytes, for every write
}

const benchVolume = "data"

func runBench(ctx context.Context, g *globals, o benchOptions) (BenchResult, error) {
	if os.Geteuid() != 0 {
		return BenchResult{}, errors.New("volume: bench needs root (network namespaces, dropping the page cache)")
	}
	begin := time.Now()
	bin, err := os.Executable()
	if err != nil {
		return BenchResult{}, err
	}
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "tandem-volume-bench-"); err != nil {
			return BenchResult{}, err
		}
		if !o.keep {
			defer os.RemoveAll(dir)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return BenchResult{}, err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return BenchResult{}, err
	}
	hb, err := newBenchHosts(dir, bin)
	if err != nil {
		return BenchResult{}, err
	}
	defer hb.close()
	// Ctrl-C tears the hosts down, which fails whatever runs, and the
	// deferred cleanups run on the way out.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); hb.close() }()

	b := &benchRun{o: o, hb: hb, buf: randomBuffer(benchBlock, 1)}
	b.res = BenchResult{Filesystem: filesystemOf(dir), Dir: dir, SizeBytes: o.size, Rounds: o.rounds, QueueDepth: o.qd, Mode: "sync"}
	defer b.closeFiles()
	for _, step := range []struct {
		what string
		fn   func() error
	}{
		{"setting up", b.setup},
		{"sequential writes", b.sequential},
		{"4 KiB write + flush", b.latency},
		{"resync", b.resync},
		{"verify", b.verify},
	} {
		if slices.Contains(o.skip, step.what) {
			o.logf("volume bench: %s skipped", step.what)
			continue
		}
		o.logf("volume bench: %s", step.what)
		if err := step.fn(); err != nil {
			if ctx.Err() != nil {
				return b.res, ctx.Err()
			}
			return b.res, fmt.Errorf("volume: bench: %s: %w (logs in %s)", step.what, err, dir)
		}
	}
	if b.client != nil {
		b.client.Close()
		b.client = nil
	}
	b.finish()
	b.res.Seconds = time.Since(begin).Seconds()
	return b.res, nil
}

func (b *benchRun) path(name string) string { return filepath.Join(b.hb.dir, name) }

func (b *benchRun) closeFiles() {
	if b.client != nil {
		b.client.Close()
	}
	for _, f := range b.raw {
		if f != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}
}

// setup writes the key, the baseline files, creates the volume on both
// hosts (--assume-clean: both replicas start UpToDate), brings it up,
// makes a primary and writes all of it once through NBD, so that every
// timed write overwrites allocated blocks on both replicas, as on the
// baseline files.
func (b *benchRun) setup() error {
	key, err := keyfile.Generate()
	if err != nil {
		return err
	}
	keyPath := b.path("cluster.key")
	if err := keyfile.Write(keyPath, key, true); err != nil {
		return err
	}
	for i := range b.raw {
		f, err := os.OpenFile(b.path(fmt.Sprintf("baseline-%d.img", i)), os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		b.raw[i] = f
		if _, err := fileSeqWrite(f, b.o.size, b.buf); err != nil {
			return err
		}
	}
	for _, h := range []string{"a", "b"} {
		f, err := os.OpenFile(b.path("floor-"+h+".img"), os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		_, err = fileSeqWrite(f, floorArea, b.buf)
		f.Close()
		if err != nil {
			return err
		}
	}
	if err := b.startPeer(keyPath, key); err != nil {
		return err
	}
	var id [16]byte
	rand.Read(id[:])
	uuid := hex.EncodeToString(id[:])
	hosts := []struct {
		name, peer  string
		self, other netip.Addr
	}{{"a", "b", benchAddrA, benchAddrB}, {"b", "a", benchAddrB, benchAddrA}}
	for _, h := range hosts {
		_, err := b.hb.run("volume", "--state-dir", b.path(h.name), "create", benchVolume, "--backing", b.path(h.name+".img"),
			"--size", strconv.FormatInt(b.o.size, 10), "--node", h.name, "--peer", h.peer,
			"--path", fmt.Sprintf("%s:7801,%s:7801", h.self, h.other), "--key", keyPath, "--uuid", uuid, "--assume-clean",
			"--nbd", netip.AddrPortFrom(h.self, 10809).String(), "--mode", "sync")
		if err != nil {
			return err
		}
	}
	for i, h := range []string{"a", "b"} {
		args := []string{"volume", "--state-dir", b.path(h), "--log-level", "warn", "up", benchVolume}
		if b.o.profileDir != "" {
			args = append(args, "--cpuprofile", filepath.Join(b.o.profileDir, h+".pprof"))
		}
		if _, err := b.hb.start([]*netutil.Host{b.hb.a, b.hb.b}[i], h+".log", args...); err != nil {
			return err
		}
	}
	if err := b.waitControl(); err != nil {
		return err
	}
	if _, err := b.waitStatus(30*time.Second, "connected, both UpToDate", func(s volume.Status) bool {
		return s.Connection == "Connected" && s.Disk == "UpToDate" && s.PeerDisk == "UpToDate"
	}); err != nil {
		return err
	}
	if err := b.ctlA.call("POST", "primary", controlRequest{}, nil); err != nil {
		return err
	}
	c, err := dialFrom(b.hb.a, netip.AddrPortFrom(benchAddrA, 10809).String())
	if err != nil {
		return err
	}
	if b.client, err = nbd.NewClient(c, benchVolume); err != nil {
		c.Close()
		return err
	}
	_, err = nbdWrites(b.client, sequentialOffsets(b.o.size), b.buf, b.o.qd)
	return err
}

// startPeer runs the bench peer on host b, the far end of the network
// baselines and the floor's secondary, and the floor's primary on host a.
func (b *benchRun) startPeer(keyPath string, key []byte) error {
	addr := netip.AddrPortFrom(benchAddrB, 7900).String()
	floor := netip.AddrPortFrom(benchAddrA, 7902).String()
	if _, err := b.hb.start(b.hb.b, "bench-peer.log", "volume", "bench-peer", "--listen", addr, "--key", keyPath,
		"--file", b.path("floor-b.img")); err != nil {
		return err
	}
	if _, err := b.hb.start(b.hb.a, "floor-primary.log", "volume", "bench-peer", "--listen", floor, "--key", keyPath,
		"--node", "a", "--file", b.path("floor-a.img"), "--floor-peer", addr); err != nil {
		return err
	}
	if err := waitDial(b.hb.a, addr, 10*time.Second); err != nil {
		return err
	}
	if err := waitDial(b.hb.a, floor, 10*time.Second); err != nil {
		return err
	}
	ids, err := peerid.New(key, benchTLSDomain, "a", []string{"a", "b"})
	if err != nil {
		return err
	}
	b.net = &benchNet{ids: ids, dial: func() (net.Conn, error) { return dialFrom(b.hb.a, addr) },
		dialFloor: func() (net.Conn, error) { return dialFrom(b.hb.a, floor) }}
	return nil
}

func (b *benchRun) waitControl() error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		b.ctlA = dialControl(b.path("a"), benchVolume)
		if b.ctlA != nil && dialControl(b.path("b"), benchVolume) != nil {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("the volume's control sockets did not come up within 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitStatus polls a's status until ok.
func (b *benchRun) waitStatus(within time.Duration, what string, ok func(volume.Status) bool) (volume.Status, error) {
	deadline := time.Now().Add(within)
	for {
		s, err := b.ctlA.status()
		if err == nil && ok(s) {
			return s, nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return s, err
			}
			return s, fmt.Errorf("not %s within %v: role %s, disk %s, peer disk %s, connection %s", what, within, s.Role, s.Disk, s.PeerDisk, s.Connection)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// eventAfter finds the newest event of kind at or after t.
func eventAfter(s volume.Status, kind string, t time.Time) (volume.Event, bool) {
	for i := len(s.Events) - 1; i >= 0; i-- {
		if e := s.Events[i]; e.Kind == kind && !e.Time.Before(t) {
			return e, true
		}
	}
	return volume.Event{}, false
}
