package replica

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"tandem/internal/blockdev"
	"tandem/internal/nbd"
	"tandem/internal/replication"
	"tandem/internal/resource"
	"tandem/internal/volume"
)

type fakeEngine struct {
	st       volume.Status
	errs     []error // Promote's answers, in turn; then nil
	promoted []uint64
	forced   []bool
	demotes  int
	dev      *blockdev.Mem
	held     blockdev.Device // instead of dev when set

	disconnects, connects int
}

func (f *fakeEngine) Name() string { return "pg" }
func (f *fakeEngine) Promote(epoch uint64, force bool) error {
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		return err
	}
	f.promoted, f.forced = append(f.promoted, epoch), append(f.forced, force)
	f.st.Role = "Primary"
	return nil
}
func (f *fakeEngine) Demote() error         { f.demotes++; f.st.Role = "Secondary"; return nil }
func (f *fakeEngine) Disconnect() error     { f.disconnects++; return nil }
func (f *fakeEngine) Connect() error        { f.connects++; return nil }
func (f *fakeEngine) Status() volume.Status { return f.st }
func (f *fakeEngine) Device() blockdev.Device {
	if f.held != nil {
		return f.held
	}
	return f.dev
}

type fakeCluster struct {
	disks    map[string]string
	forced   map[string]bool
	reported int
}

func (c *fakeCluster) Disk(_, node string) (string, bool) { d, ok := c.disks[node]; return d, ok }
func (c *fakeCluster) Reported(string)                    { c.reported++ }
func (c *fakeCluster) Forced(_, node string) bool         { return c.forced[node] }

func at(t *testing.T, epoch uint64) context.Context {
	ctx, cancel := context.WithTimeout(resource.WithEpoch(context.Background(), epoch), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestVolumeStart(t *testing.T) {
	cases := []struct {
		name      string
		st        volume.Status
		disks     map[string]string
		errs      []error
		epoch     uint64
		severity  resource.Severity // of the error; -1: none
		wantForce bool
	}{
		{"up to date", volume.Status{Role: "Secondary", Disk: "UpToDate", PeerDisk: "UpToDate"}, map[string]string{"a": "UpToDate", "b": "UpToDate"}, nil, 5, -1, false},
		{"busy, then promoted", volume.Status{Disk: "UpToDate"}, nil, []error{replication.ErrBusy, replication.ErrPeerPrimary}, 5, -1, false},
		{"a new volume", volume.Status{Disk: "Inconsistent", PeerDisk: "Inconsistent"}, nil, nil, 1, -1, true},
		{"a new volume whose peer has the data", volume.Status{Disk: "Inconsistent", PeerDisk: "UpToDate"}, nil, []error{replication.ErrNotUpToDate}, 1, resource.Hard, false},
		{"outdated in the cluster", volume.Status{Disk: "UpToDate"}, map[string]string{"a": "Outdated", "b": "UpToDate"}, nil, 5, resource.Hard, false},
		{"not up to date", volume.Status{Disk: "Outdated"}, map[string]string{"b": "UpToDate"}, []error{replication.ErrNotUpToDate}, 5, resource.Hard, false},
		{"a resync target until its resync ends", volume.Status{Disk: "UpToDate"}, map[string]string{"a": "UpToDate", "b": "UpToDate"}, []error{replication.ErrResyncTarget, replication.ErrResyncTarget}, 5, -1, false},
		{"a resync target whose link fails", volume.Status{Disk: "UpToDate"}, map[string]string{"a": "UpToDate", "b": "UpToDate"}, []error{replication.ErrResyncTarget, replication.ErrNotUpToDate}, 5, resource.Hard, false},
		{"no epoch", volume.Status{Disk: "UpToDate"}, nil, nil, 0, resource.Fatal, false},
		{"forced by an admin", volume.Status{Disk: "Outdated"}, map[string]string{"a": "UpToDate", "b": "UpToDate"}, nil, 7, -1, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eng := &fakeEngine{st: tc.st, errs: tc.errs}
			cl := &fakeCluster{disks: tc.disks, forced: map[string]bool{"a": tc.name == "forced by an admin"}}
			v := NewVolume(eng, cl, "a", "b", nil)
			v.retry = time.Millisecond
			err := v.Start(at(t, tc.epoch))
			if tc.severity < 0 {
				if err != nil {
					t.Fatal(err)
				}
				if len(eng.promoted) != 1 || eng.promoted[0] != tc.epoch || eng.forced[0] != tc.wantForce || cl.reported != 1 {
					t.Fatalf("promoted %v forced %v reported %d", eng.promoted, eng.forced, cl.reported)
				}
				// A peer still primary on the link is dropped, then the
				// link comes back.
				peerPrimary := slices.Contains(tc.errs, replication.ErrPeerPrimary)
				if peerPrimary != (eng.disconnects == 1) || eng.disconnects != eng.connects {
					t.Fatalf("%d disconnects, %d connects", eng.disconnects, eng.connects)
				}
				return
			}
			var re *resource.Error
			if !errors.As(err, &re) || re.Severity != tc.severity {
				t.Fatalf("err %v, want a %v failure", err, tc.severity)
			}
			if len(eng.promoted) != 0 {
				t.Fatalf("promoted at %v", eng.promoted)
			}
		})
	}
}

func TestVolumeMonitorAndStop(t *testing.T) {
	eng := &fakeEngine{st: volume.Status{Role: "Secondary", Disk: "UpToDate"}}
	v := NewVolume(eng, &fakeCluster{}, "a", "b", nil)
	if err := v.Monitor(context.Background()); !resource.IsNotRunning(err) {
		t.Fatalf("a secondary: %v", err)
	}
	eng.st = volume.Status{Role: "Primary", Disk: "Diskless", Connection: "Connected"}
	if err := v.Monitor(context.Background()); err != nil {
		t.Fatalf("a diskless primary served by its peer: %v", err)
	}
	eng.st.Connection = "StandAlone"
	if err := v.Monitor(context.Background()); resource.SeverityOf(err) != resource.Hard {
		t.Fatalf("a primary without data: %v", err)
	}
	if err := v.Stop(context.Background()); err != nil || eng.demotes != 1 {
		t.Fatalf("stop: %v, %d demotes", err, eng.demotes)
	}
}

// The export serves the primary's device over NBD to a real client, only
// while started, and reports a replica that is no longer primary.
func TestExport(t *testing.T) {
	dev := blockdev.NewMem(1 << 20)
	want := bytes.Repeat([]byte{7}, 4096)
	dev.WriteAt(want, 8192)
	eng := &fakeEngine{st: volume.Status{Role: "Secondary"}, dev: dev}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(l.Addr().String())
	l.Close()
	e := NewExport(eng, addr, nil)
	ctx := context.Background()
	if err := e.Start(ctx); err == nil {
		t.Fatal("an export of a secondary started")
	}
	if err := e.Monitor(ctx); !resource.IsNotRunning(err) {
		t.Fatalf("monitor before start: %v", err)
	}
	eng.st.Role = "Primary"
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Stop(ctx)
	c, err := nbd.Dial(ctx, "tcp", addr.String(), "pg")
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4096)
	if _, err := c.ReadAt(got, 8192); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read through the export: %v", err)
	}
	c.Close()
	if err := e.Monitor(ctx); err != nil {
		t.Fatal(err)
	}
	eng.st.Role = "Secondary"
	if err := e.Monitor(ctx); resource.SeverityOf(err) != resource.Hard {
		t.Fatalf("monitor of a deposed primary's export: %v", err)
	}
	if err := e.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := nbd.Dial(ctx, "tcp", addr.String(), "pg"); err == nil {
		t.Fatal("the export still answers after stop")
	}
}

// heldDevice holds every write until release is closed, then fails it:
// a volume whose I/O is suspended until it is demoted.
type heldDevice struct {
	*blockdev.Mem
	in      chan struct{}
	release chan struct{}
}

func (d *heldDevice) WriteAt(p []byte, off int64) (int, error) {
	d.in <- struct{}{}
	<-d.release
	return 0, errors.New("demoted")
}

// Storage seed 20182: a deposed primary's export waited for a write its
// suspended volume held, so the group stopped only at the fencer's next
// retry, 1 s past the lease. Stop returns without waiting for requests
// the suspended volume holds; the demotion that follows fails them.
func TestExportStopDoesNotWaitForASuspendedVolume(t *testing.T) {
	dev := &heldDevice{Mem: blockdev.NewMem(1 << 20), in: make(chan struct{}, 1), release: make(chan struct{})}
	eng := &fakeEngine{st: volume.Status{Role: "Primary", Suspended: "waiting for the peer to be outdated"}, held: dev}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(l.Addr().String())
	l.Close()
	e := NewExport(eng, addr, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := nbd.Dial(ctx, "tcp", addr.String(), "pg")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wrote := make(chan error, 1)
	go func() {
		_, err := c.WriteAt(make([]byte, 4096), 0)
		wrote <- err
	}()
	<-dev.in // the write is held by the suspended volume
	stopped := make(chan error, 1)
	go func() { stopped <- e.Stop(ctx) }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("Stop waited for a write the suspended volume held")
	}
	close(dev.release) // the demotion fails it
	if err := <-wrote; err == nil {
		t.Fatal("a write failed by the demotion was acknowledged")
	}
}
