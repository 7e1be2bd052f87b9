package link

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"

	"tandem/internal/replication"
)

var testVolume = replication.VolumeID{0: 0x01, 1: 0x23, 15: 0xef}

// The wire format, byte for byte: a change here breaks every deployed
// peer and must come with a new version.
func TestFrameGolden(t *testing.T) {
	f := Frame{Kind: 7, Flags: 0x0102, Volume: testVolume, Epoch: 0x0a0b, Seq: 0x1122334455667788, Payload: []byte("abc")}
	got, err := AppendFrame(nil, &f)
	if err != nil {
		t.Fatal(err)
	}
	want := "544c" + "01" + "07" + "0102" + "0000" +
		"0123000000000000" + "00000000000000ef" +
		"0000000000000a0b" +
		"1122334455667788" +
		"00000003" +
		"616263"
	if hex.EncodeToString(got) != want {
		t.Fatalf("encoding\n got %x\nwant %s", got, want)
	}
	back, n, err := DecodeFrame(got)
	if err != nil || n != len(got) {
		t.Fatalf("decode: n=%d err=%v", n, err)
	}
	if back.Kind != f.Kind || back.Flags != f.Flags || back.Volume != f.Volume || back.Epoch != f.Epoch || back.Seq != f.Seq || string(back.Payload) != "abc" {
		t.Fatalf("decoded %+v, want %+v", back, f)
	}
}

func TestDecodeFrameRefuses(t *testing.T) {
	good, _ := AppendFrame(nil, &Frame{Kind: 1, Volume: testVolume, Payload: []byte{1, 2}})
	mutate := func(i int, v byte) []byte {
		b := bytes.Clone(good)
		b[i] = v
		return b
	}
	long := bytes.Clone(good)
	copy(long[40:], []byte{0x00, 0x10, 0x10, 0x01}) // MaxPayload + 1
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"magic", mutate(0, 'X'), "magic"},
		{"version", mutate(2, 9), "version 9"},
		{"kind zero", mutate(3, 0), "unknown"},
		{"unknown link kind", mutate(3, 0xfe), "unknown"},
		{"reserved", mutate(7, 1), "reserved"},
		{"too long", long, "at most"},
		{"short garbage", []byte("GET / HTTP/1.1"), "magic"},
	} {
		_, _, err := DecodeFrame(c.b)
		if !IsBadFrame(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want a bad frame error saying %q", c.name, err, c.want)
		}
	}
	for i := 0; i < len(good); i++ {
		if _, _, err := DecodeFrame(good[:i]); err != io.ErrUnexpectedEOF {
			t.Fatalf("a valid frame cut at %d: %v, want io.ErrUnexpectedEOF", i, err)
		}
	}
}

func TestAppendFrameRefusesOversizedPayload(t *testing.T) {
	if _, err := AppendFrame(nil, &Frame{Kind: 1, Payload: make([]byte, MaxPayload+1)}); err == nil {
		t.Fatal("encoded a payload over MaxPayload")
	}
}

func TestFrameReader(t *testing.T) {
	var stream []byte
	for i := 0; i < 3; i++ {
		stream, _ = AppendFrame(stream, &Frame{Kind: 1, Seq: uint64(i + 1), Payload: bytes.Repeat([]byte{byte(i)}, 100*i)})
	}
	fr := NewFrameReader(bytes.NewReader(stream), 0)
	for i := 0; i < 3; i++ {
		f, err := fr.Read()
		if err != nil || f.Seq != uint64(i+1) || len(f.Payload) != 100*i {
			t.Fatalf("frame %d: %+v, %v", i, f, err)
		}
	}
	if _, err := fr.Read(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
	cut := NewFrameReader(bytes.NewReader(stream[:2*HeaderSize+50]), 0)
	cut.Read()
	if _, err := cut.Read(); err != io.ErrUnexpectedEOF {
		t.Fatalf("a stream ending inside a frame: %v, want io.ErrUnexpectedEOF", err)
	}
	if _, err := NewFrameReader(bytes.NewReader(stream), 50).Read(); err != nil {
		t.Fatalf("an empty frame within a 50-byte limit: %v", err)
	}
	fr = NewFrameReader(bytes.NewReader(stream), 50)
	fr.Read()
	if _, err := fr.Read(); !IsBadFrame(err) {
		t.Fatalf("a 100-byte payload under a 50-byte limit: %v", err)
	}
}

// A header that claims the largest payload and then stops costs at most
// MaxPayload, however the bytes after it are cut.
func TestFrameReaderAllocationIsBounded(t *testing.T) {
	var hdr [HeaderSize]byte
	PutHeader(hdr[:], Header{Kind: 1, Length: MaxPayload})
	allocs := testing.AllocsPerRun(1, func() {
		fr := NewFrameReader(bytes.NewReader(hdr[:]), 0)
		if _, err := fr.Read(); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatal(err)
		}
		if cap(fr.buf) > MaxPayload {
			t.Fatalf("buffer of %d bytes", cap(fr.buf))
		}
	})
	if allocs > 4 {
		t.Fatalf("%v allocations", allocs)
	}
}

// FuzzDecodeFrame: no input panics or decodes to something that encodes
// differently; the streaming reader agrees with the buffer decoder.
func FuzzDecodeFrame(f *testing.F) {
	for _, fr := range []Frame{
		{Kind: 1, Volume: testVolume, Epoch: 3, Seq: 1, Payload: []byte("write")},
		{Kind: kindPing, Payload: make([]byte, 8)},
		{Kind: KindStale, Epoch: 9, Payload: make([]byte, 17)},
		{Kind: kindHello, Volume: testVolume},
		(&Hello{Node: "db1", Volume: testVolume, Size: 1 << 30, Epoch: 4, Switch: true}).frame(),
		(&RefusedError{Code: RefuseSize, Msg: "size differs"}).frame(testVolume),
		(&StaleError{Newest: 5, Epoch: 3, Seq: 9, Kind: 1}).frame(testVolume),
	} {
		b, _ := AppendFrame(nil, &fr)
		f.Add(b)
	}
	f.Add([]byte("TL\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, n, err := DecodeFrame(b)
		sr := NewFrameReader(bytes.NewReader(b), 0)
		sf, serr := sr.Read()
		if err != nil {
			if err != io.ErrUnexpectedEOF && !IsBadFrame(err) {
				t.Fatalf("unclassified error %v", err)
			}
			if serr == nil {
				t.Fatalf("the stream reader took what DecodeFrame refused (%v)", err)
			}
			return
		}
		again, aerr := AppendFrame(nil, &fr)
		if aerr != nil || !bytes.Equal(again, b[:n]) {
			t.Fatalf("decoded %+v re-encodes as %x, input %x", fr, again, b[:n])
		}
		if serr != nil || sf.Seq != fr.Seq || !bytes.Equal(sf.Payload, fr.Payload) {
			t.Fatalf("stream reader: %+v, %v; buffer decoder %+v", sf, serr, fr)
		}
		// the link's own payloads: parsed without panicking, and what
		// parses encodes back to the same bytes
		switch fr.Kind {
		case kindHello:
			if h, err := parseHello(fr); err == nil {
				if back := h.frame(); !bytes.Equal(back.Payload, fr.Payload) {
					t.Fatalf("hello %+v re-encodes as %x, input %x", h, back.Payload, fr.Payload)
				}
			}
		case kindRefuse:
			if r, err := parseRefusal(fr); err == nil {
				if back := r.frame(fr.Volume); !bytes.Equal(back.Payload, fr.Payload) {
					t.Fatalf("refusal %+v re-encodes as %x, input %x", r, back.Payload, fr.Payload)
				}
			}
		case KindStale:
			if st, err := DecodeStale(fr); err == nil {
				if back := st.frame(fr.Volume); !bytes.Equal(back.Payload, fr.Payload) || back.Epoch != fr.Epoch {
					t.Fatalf("stale %+v re-encodes as %x", st, back.Payload)
				}
			}
		}
	})
}
