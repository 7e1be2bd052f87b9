package link

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"reflect"
	"testing"

	"tandem/internal/replication"
)

// The message format, byte for byte, for a write and a hello.
func TestMessageGolden(t *testing.T) {
	for _, c := range []struct {
		name string
		m    replication.Frame
		want string
	}{
		{"data", replication.Frame{Kind: replication.FrameData, Epoch: 3, Seq: 7, Off: 4096, FUA: true, Data: []byte("xyz")},
			"80000005" + "0000000000001000" + "78797a"},
		{"ack with error", replication.Frame{Kind: replication.FrameDataAck, Ack: 7, Err: "EIO"},
			"00000028" + "0000000000000007" + "0003" + "45494f"},
		{"hello", replication.Frame{Kind: replication.FrameHello, Hello: &replication.Hello{
			Side: replication.Side{Node: "db1", GenIDs: replication.GenIDs{Current: 4}, Disk: replication.UpToDate, Role: replication.Primary,
				CrashedPrimary: true, DirtyBytes: 65536, PrimaryEpoch: 2},
			Size: 1 << 30, Mode: replication.Async, DiscardNode: "db2"}},
			"00008000" + "03" + "646231" + "0000000000000004" + "0000000000000000" + "0000000000000000" + "0000000000000000" +
				"03" + "01" + "01" + "0000000000010000" + "0000000000000002" + "0000000040000000" + "01" + "03" + "646232"},
	} {
		f, err := EncodeMessage(&c.m, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got := hex.EncodeToString(append(append([]byte(nil), f.Payload...), f.Tail...))
		if got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
		if f.Kind != Kind(c.m.Kind) || f.Epoch != c.m.Epoch || f.Seq != c.m.Seq {
			t.Errorf("%s: header fields %v %d %d", c.name, f.Kind, f.Epoch, f.Seq)
		}
	}
}

func randomMessage(r *rand.Rand) replication.Frame {
	pick := func() bool { return r.IntN(3) == 0 }
	m := replication.Frame{Kind: replication.FrameKind(1 + r.IntN(int(FirstLinkKind)-1)), Epoch: replication.Epoch(r.Uint64()), Seq: r.Uint64()}
	if pick() {
		m.Off = int64(r.Uint64())
	}
	if pick() {
		m.Len = r.Int64()
	}
	m.FUA, m.Full, m.Match, m.Repair = pick(), pick(), pick(), pick()
	if pick() {
		m.Ack = r.Uint64()
	}
	if pick() {
		m.Region = r.IntN(1 << 30)
	}
	if pick() {
		m.Err = "disk: I/O error"
	}
	if pick() {
		for i := r.IntN(5) + 1; i > 0; i-- {
			m.Bits = append(m.Bits, r.Uint64())
		}
		m.BitsFrom = r.IntN(1 << 20)
		m.More = pick()
	}
	if pick() {
		m.SyncID = replication.GenID(r.Uint64() | 1)
	}
	if pick() {
		m.GenIDs = replication.GenIDs{Current: replication.GenID(r.Uint64() | 1), History: [2]replication.GenID{9, 0}}
	}
	if pick() {
		m.Disk = replication.DiskState(1 + r.IntN(3))
	}
	if pick() {
		m.Role = replication.Primary
	}
	if pick() {
		m.Digest = replication.RegionDigest([]byte{byte(r.IntN(256))})
	}
	if pick() {
		m.Hello = &replication.Hello{Side: replication.Side{Node: "n1", Disk: replication.Outdated, Discard: true, PrimaryEpoch: 3}, Size: 1 << 20, DiscardNode: "n2"}
	}
	if pick() {
		m.Data = make([]byte, r.IntN(100000)+1)
		for i := range m.Data {
			m.Data[i] = byte(r.IntN(256))
		}
	}
	return m
}

// Every message comes back as it was sent, and encodes to the same bytes
// again.
func TestMessageRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		m := randomMessage(r)
		f, err := EncodeMessage(&m, nil)
		if err != nil {
			t.Fatal(err)
		}
		wire := append(append([]byte(nil), f.Payload...), f.Tail...)
		back, err := DecodeMessage(Frame{Kind: f.Kind, Volume: testVolume, Epoch: f.Epoch, Seq: f.Seq, Payload: wire})
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		m.Volume = testVolume
		if !reflect.DeepEqual(back, m) {
			t.Fatalf("sent %+v\n got %+v", m, back)
		}
	}
}

func TestMessageRefuses(t *testing.T) {
	enc := func(m replication.Frame) []byte {
		f, _ := EncodeMessage(&m, nil)
		return append(append([]byte(nil), f.Payload...), f.Tail...)
	}
	data := enc(replication.Frame{Kind: replication.FrameData, Off: 1, Data: []byte("x")})
	for name, p := range map[string][]byte{
		"empty":          nil,
		"unknown field":  {0, 0x80, 0, 0},
		"zero offset":    append([]byte{0, 0, 0, 1}, make([]byte, 8)...),
		"cut short":      data[:8],
		"trailing bytes": append(enc(replication.Frame{Kind: replication.FrameDataAck, Ack: 1}), 0),
		"empty data":     {0x80, 0, 0, 0},
		"huge bit count": {0, 0, 0, 0x40, 0xff, 0xff, 0xff, 0xff},
	} {
		if _, err := DecodeMessage(Frame{Kind: 3, Payload: p}); !IsBadFrame(err) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := EncodeMessage(&replication.Frame{Kind: replication.FrameKind(FirstLinkKind)}, nil); err == nil {
		t.Error("encoded a link kind")
	}
	if _, err := EncodeMessage(&replication.Frame{Kind: replication.FrameData, Data: make([]byte, MaxPayload)}, nil); err == nil {
		t.Error("encoded a message over MaxPayload")
	}
}

// FuzzDecodeMessage: what decodes encodes back to the same bytes.
func FuzzDecodeMessage(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 8; i++ {
		m := randomMessage(r)
		m.Data = m.Data[:min(len(m.Data), 64)]
		if len(m.Data) == 0 {
			m.Data = nil
		}
		fr, _ := EncodeMessage(&m, nil)
		f.Add(uint8(m.Kind), append(append([]byte(nil), fr.Payload...), fr.Tail...))
	}
	f.Fuzz(func(t *testing.T, kind uint8, p []byte) {
		m, err := DecodeMessage(Frame{Kind: Kind(kind), Payload: p})
		if err != nil {
			if !IsBadFrame(err) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		fr, err := EncodeMessage(&m, nil)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", m, err)
		}
		if again := append(append([]byte(nil), fr.Payload...), fr.Tail...); !bytes.Equal(again, p) {
			t.Fatalf("decoded %+v re-encodes as %x, input %x", m, again, p)
		}
	})
}

// A field added to the replication frame (or its hello) without a place in
// the message format fails here instead of being dropped on the wire.
func TestMessageCoversEveryField(t *testing.T) {
	known := map[string][]string{
		"Frame": {"Kind", "Volume", "Epoch", "Seq", "Hello", "Off", "Len", "FUA", "Data", "Ack", "Region", "Err",
			"BitsFrom", "Bits", "More", "SyncID", "Full", "GenIDs", "Disk", "Role", "Digest", "Match", "Repair"},
		"Hello": {"Side", "Size", "Mode", "DiscardNode"},
		"Side":  {"Node", "GenIDs", "Disk", "Role", "CrashedPrimary", "DirtyBytes", "PrimaryEpoch", "Discard"},
	}
	for _, typ := range []reflect.Type{reflect.TypeOf(replication.Frame{}), reflect.TypeOf(replication.Hello{}), reflect.TypeOf(replication.Side{})} {
		var got []string
		for i := 0; i < typ.NumField(); i++ {
			got = append(got, typ.Field(i).Name)
		}
		if !reflect.DeepEqual(got, known[typ.Name()]) {
			t.Errorf("replication.%s has fields %v; the message format knows %v (message.go)", typ.Name(), got, known[typ.Name()])
		}
	}
}

func TestMessageFencedFollowsTheMachine(t *testing.T) {
	if !MessageFenced(Kind(replication.FrameData)) || MessageFenced(Kind(replication.FrameDataAck)) {
		t.Fatal("data must be fenced, its acknowledgement not")
	}
}

// The write path allocates nothing per message: fields go into a reused
// buffer, data is sent from and decoded in place.
func TestMessageDataPathDoesNotAllocate(t *testing.T) {
	m := replication.Frame{Kind: replication.FrameData, Epoch: 2, Seq: 9, Off: 1 << 20, FUA: true, Data: make([]byte, 1<<20)}
	buf := make([]byte, 0, 256)
	wire := make([]byte, 0, 2<<20)
	allocs := testing.AllocsPerRun(100, func() {
		f, err := EncodeMessage(&m, buf)
		if err != nil {
			t.Fatal(err)
		}
		wire = append(append(wire[:0], f.Payload...), f.Tail...)
		if _, err := DecodeMessage(Frame{Kind: f.Kind, Payload: wire}); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per write message", allocs)
	}
}
