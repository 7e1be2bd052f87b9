package replication

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func TestPayloadGolden(t *testing.T) {
	ids := GenIDs{Current: 0x1111, Bitmap: 0x2222, History: [2]GenID{0x3333, 4}}
	for _, c := range []struct {
		name string
		f    Frame
		hex  string
	}{
		{"hello", Frame{Kind: FrameHello, Hello: &Hello{Side: Side{Node: "db1", GenIDs: ids, Disk: UpToDate, Role: Primary,
			CrashedPrimary: true, DirtyBytes: 65536, PrimaryEpoch: 7}, Size: 1 << 20, Mode: Async, DiscardNode: "db2"}},
			"02" + "03646231" + "0000000000001111" + "0000000000002222" + "0000000000003333" + "0000000000000004" +
				"03" + "01" + "01" + "0000000000010000" + "0000000000000007" + "0000000000100000" + "01" + "03646232"},
		{"data", Frame{Kind: FrameData, Off: 4096, FUA: true, Data: []byte{0xde, 0xad}},
			"0000000000001000" + "01" + "dead"},
		{"data-ack with error", Frame{Kind: FrameDataAck, Ack: 9, Err: "EIO"},
			"0000000000000009" + "0003" + "45494f"},
		{"flush", Frame{Kind: FrameFlush}, ""},
		{"bitmap", Frame{Kind: FrameBitmap, SyncID: 0xabc, Full: true, More: true, BitsFrom: 2, Bits: []uint64{5, 1 << 63}},
			"0000000000000abc" + "03" + "00000002" + "00000002" + "0000000000000005" + "8000000000000000"},
		{"resync-data", Frame{Kind: FrameResyncData, Region: 3, Data: []byte{1}}, "00000003" + "01"},
		{"verify-digest", Frame{Kind: FrameVerifyDigest, Region: 4, Digests: []Digest{{1}, {31: 2}}},
			"00000004" + "00000002" + "01" + strings.Repeat("00", 31) + strings.Repeat("00", 31) + "02"},
		{"verify-result", Frame{Kind: FrameVerifyResult, Region: 8, Regions: 10, Differ: []int{9, 17}},
			"00000008" + "0000000a" + "0000" + "02" + "02"},
		{"verify-result with error", Frame{Kind: FrameVerifyResult, Region: 1, Regions: 1, Err: "x"},
			"00000001" + "00000001" + "0001" + "78" + "00"},
		{"resync-done", Frame{Kind: FrameResyncDone, GenIDs: ids, Disk: Outdated},
			"0000000000001111" + "0000000000002222" + "0000000000003333" + "0000000000000004" + "02"},
		{"stale", Frame{Kind: FrameStale, Ack: 77}, "000000000000004d"},
		{"refuse", Frame{Kind: FrameRefuse, Err: "no"}, "0002" + "6e6f"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := AppendPayload(nil, &c.f)
			if err != nil {
				t.Fatal(err)
			}
			if h := hex.EncodeToString(got); h != c.hex {
				t.Fatalf("encoded\n%s\nwant\n%s", h, c.hex)
			}
			back, err := DecodePayload(c.f.Kind, got)
			if err != nil {
				t.Fatal(err)
			}
			if !framesEqual(back, c.f) {
				t.Fatalf("decoded %+v, want %+v", back, c.f)
			}
		})
	}
}

func framesEqual(a, b Frame) bool {
	if len(a.Data) == 0 && len(b.Data) == 0 {
		a.Data, b.Data = nil, nil
	}
	if len(a.Bits) == 0 && len(b.Bits) == 0 {
		a.Bits, b.Bits = nil, nil
	}
	if len(a.Differ) == 0 && len(b.Differ) == 0 {
		a.Differ, b.Differ = nil, nil
	}
	return reflect.DeepEqual(a, b)
}

// randomFrame fills the fields kind k carries.
func randomFrame(rng *rand.Rand, k FrameKind) Frame {
	f := Frame{Kind: k}
	ids := GenIDs{GenID(rng.Uint64()), GenID(rng.Uint64()), [2]GenID{GenID(rng.Uint64()), GenID(rng.Uint64())}}
	data := make([]byte, rng.IntN(64))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	errText := []string{"", "disk detached", "x"}[rng.IntN(3)]
	switch k {
	case FrameHello:
		f.Hello = &Hello{Side: Side{Node: "n" + errText, GenIDs: ids, Disk: DiskState(rng.IntN(4)), Role: Role(rng.IntN(2)),
			CrashedPrimary: rng.IntN(2) == 0, DirtyBytes: rng.Int64N(1 << 40), PrimaryEpoch: Epoch(rng.Uint64())},
			Size: rng.Int64N(1 << 50), Mode: Mode(rng.IntN(2)), DiscardNode: errText}
	case FrameState:
		f.Role, f.Disk, f.GenIDs = Role(rng.IntN(2)), DiskState(rng.IntN(4)), ids
	case FrameData:
		f.Off, f.FUA, f.Data = rng.Int64N(1<<50), rng.IntN(2) == 0, data
	case FrameDataAck, FrameFlushAck:
		f.Ack, f.Err = rng.Uint64(), errText
	case FrameBitmap, FrameBitmapAck:
		f.SyncID, f.Full, f.More, f.BitsFrom = GenID(rng.Uint64()), rng.IntN(2) == 0, rng.IntN(2) == 0, rng.IntN(1000)
		for n := rng.IntN(5); n > 0; n-- {
			f.Bits = append(f.Bits, rng.Uint64())
		}
	case FrameResyncData:
		f.Region, f.Data = rng.IntN(1<<31), data
	case FrameResyncDone:
		f.GenIDs, f.Disk = ids, DiskState(rng.IntN(4))
	case FrameVerifyStart:
		f.Repair = rng.IntN(2) == 0
	case FrameVerifyDigest:
		f.Region = rng.IntN(1 << 31)
		for n := 1 + rng.IntN(4); n > 0; n-- {
			f.Digests = append(f.Digests, RegionDigest(data[:rng.IntN(len(data)+1)]))
		}
	case FrameVerifyResult:
		f.Region, f.Regions, f.Err = rng.IntN(1<<30), 1+rng.IntN(40), errText
		for r := f.Region; r < f.Region+f.Regions; r++ {
			if rng.IntN(3) == 0 {
				f.Differ = append(f.Differ, r)
			}
		}
	case FrameStale:
		f.Ack = rng.Uint64()
	case FrameReadReq:
		f.Off, f.Len = rng.Int64N(1<<50), rng.Int64N(1<<20)
	case FrameReadReply:
		f.Ack, f.Err, f.Data = rng.Uint64(), errText, data
	case FrameDetached, FrameRefuse:
		f.Err = errText
	}
	return f
}

// TestPayloadRoundTrip: every kind decodes to what was encoded, and every
// truncation of it is refused (or, for kinds ending in data, shorter data).
func TestPayloadRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for k := FrameHello; k <= FrameRefuse; k++ {
		if k.retired() {
			if _, err := DecodePayload(k, []byte{0, 0, 0, 1, 0, 0}); !errors.Is(err, ErrBadFrame) {
				t.Fatalf("retired %v decoded: %v", k, err)
			}
			continue
		}
		for i := 0; i < 200; i++ {
			f := randomFrame(rng, k)
			p, err := AppendPayload(nil, &f)
			if err != nil {
				t.Fatalf("%v: %v", k, err)
			}
			back, err := DecodePayload(k, p)
			if err != nil || !framesEqual(back, f) {
				t.Fatalf("%v: %+v -> %x -> %+v, %v", k, f, p, back, err)
			}
			if len(p) > 0 {
				cut := rng.IntN(len(p))
				if _, err := DecodePayload(k, p[:cut]); err == nil && k != FrameData && k != FrameResyncData && k != FrameReadReply {
					t.Fatalf("%v: truncated to %d of %d bytes accepted", k, cut, len(p))
				}
			}
			if _, err := DecodePayload(k, append(p, 0)); err == nil && k != FrameData && k != FrameResyncData && k != FrameReadReply {
				t.Fatalf("%v: a trailing byte accepted", k)
			}
		}
	}
	if _, err := DecodePayload(FrameKind(0xee), nil); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("unknown kind: %v", err)
	}
}

func FuzzDecodePayload(f *testing.F) {
	rng := rand.New(rand.NewPCG(5, 6))
	for k := FrameHello; k <= FrameRefuse; k++ {
		fr := randomFrame(rng, k)
		p, _ := AppendPayload(nil, &fr)
		f.Add(uint8(k), p)
	}
	f.Fuzz(func(t *testing.T, k uint8, p []byte) {
		fr, err := DecodePayload(FrameKind(k), p)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("error not ErrBadFrame: %v", err)
			}
			return
		}
		again, err := AppendPayload(nil, &fr)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", fr, err)
		}
		if !bytes.Equal(again, p) {
			t.Fatalf("%v: %x re-encodes as %x", fr.Kind, p, again)
		}
	})
}
