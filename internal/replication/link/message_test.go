package link

import (
	"bytes"
	"testing"

	"tandem/internal/replication"
)

// A message sent as fields plus tail is byte for byte what the machine's
// codec makes of it, and comes back whole.
func TestMessageIsTheMachinesPayload(t *testing.T) {
	for _, m := range []replication.Frame{
		{Kind: replication.FrameData, Epoch: 3, Seq: 7, Off: 4096, FUA: true, Data: []byte("xyz")},
		{Kind: replication.FrameResyncData, Region: 5, Data: bytes.Repeat([]byte{1}, 70000)},
		{Kind: replication.FrameReadReply, Ack: 9, Data: []byte("read")},
		{Kind: replication.FrameDataAck, Ack: 7, Err: "EIO"},
		{Kind: replication.FrameHello, Hello: &replication.Hello{Side: replication.Side{Node: "db1", Disk: replication.UpToDate}, Size: 1 << 30, DiscardNode: "db2"}},
	} {
		f, err := EncodeMessage(&m, nil)
		if err != nil {
			t.Fatalf("%v: %v", m.Kind, err)
		}
		want, _ := replication.AppendPayload(nil, &m)
		wire := append(append([]byte(nil), f.Payload...), f.Tail...)
		if !bytes.Equal(wire, want) {
			t.Fatalf("%v: fields and tail %x, the codec %x", m.Kind, wire, want)
		}
		back, err := DecodeMessage(Frame{Kind: f.Kind, Volume: testVolume, Epoch: f.Epoch, Seq: f.Seq, Payload: wire})
		if err != nil {
			t.Fatalf("%v: %v", m.Kind, err)
		}
		if back.Kind != m.Kind || back.Epoch != m.Epoch || back.Seq != m.Seq || back.Volume != testVolume || !bytes.Equal(back.Data, m.Data) {
			t.Fatalf("%v came back as %+v", m.Kind, back)
		}
	}
	if _, err := DecodeMessage(Frame{Kind: Kind(replication.FrameData), Payload: []byte{1}}); !IsBadFrame(err) {
		t.Fatalf("a cut message: %v", err)
	}
	if _, err := EncodeMessage(&replication.Frame{Kind: replication.FrameKind(FirstLinkKind)}, nil); err == nil {
		t.Error("encoded a link kind")
	}
	if _, err := EncodeMessage(&replication.Frame{Kind: replication.FrameData, Data: make([]byte, MaxPayload)}, nil); err == nil {
		t.Error("encoded a message over MaxPayload")
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

func TestMessageFencedFollowsTheMachine(t *testing.T) {
	if !MessageFenced(Kind(replication.FrameData)) || MessageFenced(Kind(replication.FrameDataAck)) {
		t.Fatal("data must be fenced, its acknowledgement not")
	}
}
