package meta

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"tandem/internal/blockdev"
	"tandem/internal/replication"
)

const testSize = 2 << 20

// small is a geometry that makes every structure span several pages or
// slots on a small device: 4 KiB regions, 64 KiB extents, 4 hot extents.
func small() CreateOptions {
	return CreateOptions{Node: "db1", Peer: "db2", RegionSize: 4096, ExtentSize: 64 << 10, ALExtents: 4}
}

func mustCreate(t testing.TB, dev blockdev.Device, o CreateOptions) *Meta {
	t.Helper()
	m, err := Create(dev, o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustOpen(t testing.TB, dev blockdev.Device, o OpenOptions) *Meta {
	t.Helper()
	m, err := Open(dev, o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCreateOpenRoundTrip(t *testing.T) {
	dev := blockdev.NewMem(testSize)
	m := mustCreate(t, dev, CreateOptions{Node: "db1", Peer: "db2"})
	if !m.Internal() || m.DataSize()+m.MetaBytes() > testSize || m.DataSize()%pageSize != 0 {
		t.Fatalf("internal %v data %d meta %d", m.Internal(), m.DataSize(), m.MetaBytes())
	}
	st := m.State()
	if st.Node != "db1" || st.Peer != "db2" || st.Disk != replication.Inconsistent || st.Gen.Current != replication.JustCreated || st.Flags != 0 {
		t.Fatalf("fresh state %+v", st)
	}
	if m.Bitmap().RegionSize() != 64<<10 || m.AL().ExtentSize() != 4<<20 || m.AL().Capacity() != 1024 {
		t.Fatalf("defaults: region %d extent %d capacity %d", m.Bitmap().RegionSize(), m.AL().ExtentSize(), m.AL().Capacity())
	}
	gen := replication.GenIDs{Current: 0x1111, Bitmap: 0x2222, History: [2]replication.GenID{0x3333, 0x4444}}
	if err := m.Update(func(s *State) {
		s.Gen, s.Disk, s.Flags, s.Epoch = gen, replication.UpToDate, Consistent|Primary, 7
	}); err != nil {
		t.Fatal(err)
	}
	if err := m.SetPeer("db3"); err != nil {
		t.Fatal(err)
	}
	if err := m.SetEpoch(5); err != nil || m.State().Epoch != 7 {
		t.Fatalf("epoch went back: %v %d", err, m.State().Epoch)
	}
	if err := m.SetFlags(PeerOutdated, Primary); err != nil {
		t.Fatal(err)
	}
	m.Bitmap().Set(100<<10, 1)
	m.Bitmap().Set(m.DataSize()-1, 1)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	again := mustOpen(t, dev.Crash(), OpenOptions{})
	st = again.State()
	want := State{Node: "db1", Peer: "db3", Gen: gen, Disk: replication.UpToDate, Flags: Consistent | PeerOutdated, Epoch: 7}
	if st != want || again.ID() != m.ID() || again.DataSize() != m.DataSize() || again.Unclean() {
		t.Fatalf("reopened %+v id %s unclean %v, want %+v id %s", st, again.ID(), again.Unclean(), want, m.ID())
	}
	var got [][2]int64
	for off, n := range again.Bitmap().Ranges() {
		got = append(got, [2]int64{off, n})
	}
	r := int64(64 << 10)
	last := (m.DataSize() - 1) / r * r
	if want := [][2]int64{{r, r}, {last, m.DataSize() - last}}; !slices.Equal(got, want) {
		t.Fatalf("dirty ranges %v, want %v", got, want)
	}
	if n := again.Bitmap().DirtyBytes(); n != r+m.DataSize()-last {
		t.Fatalf("dirty bytes %d", n)
	}
}

func TestExternalMetaDevice(t *testing.T) {
	dev := blockdev.NewMem(testSize)
	o := small()
	mdev := blockdev.NewMem(MetaSize(testSize, o) + 3*pageSize) // larger than needed: the end anchors it
	o.Meta = mdev
	m := mustCreate(t, dev, o)
	if m.Internal() || m.DataSize() != testSize {
		t.Fatalf("internal %v data %d", m.Internal(), m.DataSize())
	}
	if _, err := Open(dev, OpenOptions{}); !IsNoMetadata(err) {
		t.Fatalf("open of the backing device alone: %v", err)
	}
	if _, err := Open(mdev, OpenOptions{}); err == nil {
		t.Fatal("meta device opened as internal metadata")
	}
	again := mustOpen(t, dev, OpenOptions{Meta: mdev})
	if again.ID() != m.ID() {
		t.Fatal("other volume")
	}
	if _, err := Create(dev, CreateOptions{Meta: blockdev.NewMem(MetaSize(testSize, small()) - pageSize), RegionSize: 4096, ExtentSize: 64 << 10, ALExtents: 4}); err == nil {
		t.Fatal("meta device too small accepted")
	}
}

func TestCreateRefusesUsedDevices(t *testing.T) {
	dev := blockdev.NewMem(testSize)
	first := mustCreate(t, dev, small())
	if _, err := Create(dev, small()); !IsInUse(err) {
		t.Fatalf("second create: %v", err)
	}
	o := small()
	o.Force = true
	second := mustCreate(t, dev, o)
	if second.ID() == first.ID() {
		t.Fatal("forced create kept the old volume")
	}

	fs := blockdev.NewMem(testSize)
	fs.WriteAt([]byte("ext4 data to the end"), testSize-100)
	if _, err := Create(fs, small()); !IsInUse(err) || !bytes.Contains([]byte(err.Error()), []byte("hold data")) {
		t.Fatalf("create over data: %v", err)
	}
}

func TestDataViewBounds(t *testing.T) {
	dev := blockdev.NewMem(testSize)
	m := mustCreate(t, dev, small())
	d := m.Data()
	if d.Size() != m.DataSize() {
		t.Fatal("size")
	}
	if _, err := d.WriteAt(make([]byte, 2), m.DataSize()-1); !errors.Is(err, blockdev.ErrOutOfRange) {
		t.Fatalf("write past the data: %v", err)
	}
	if _, err := d.ReadAt(make([]byte, 1), -1); !errors.Is(err, blockdev.ErrOutOfRange) {
		t.Fatalf("read before the data: %v", err)
	}
	if err := d.WriteZeroes(m.DataSize()-4096, 8192); !errors.Is(err, blockdev.ErrOutOfRange) {
		t.Fatalf("zeroes past the data: %v", err)
	}
	want := bytes.Repeat([]byte{7}, 4096)
	if _, err := d.WriteAt(want, m.DataSize()-4096); err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dev.Crash(), OpenOptions{}); err != nil {
		t.Fatalf("data write reached the metadata: %v", err)
	}
}

func TestFileBackedDevice(t *testing.T) {
	p := filepath.Join(t.TempDir(), "backing")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, testSize+12345); err != nil { // not a whole number of pages
		t.Fatal(err)
	}
	f, err := blockdev.OpenFile(p, false)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := mustCreate(t, f, CreateOptions{})
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(f, CreateOptions{}); !IsInUse(err) || !bytes.Contains([]byte(err.Error()), []byte(p)) {
		t.Fatalf("create again: %v (want the path named)", err)
	}
	again := mustOpen(t, f, OpenOptions{})
	if again.ID() != m.ID() {
		t.Fatal("reopen")
	}
}
