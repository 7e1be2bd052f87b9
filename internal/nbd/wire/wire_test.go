package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// unhex decodes a hex string with spaces, so golden messages can be
// written field by field as the spec lists them.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Every golden value below is written from the text of doc/proto.md, not
// from our encoders.
func TestGoldenEncodings(t *testing.T) {
	zeroes124 := strings.Repeat("00", 124)
	cases := []struct {
		name string
		got  []byte
		want string
	}{
		{"greeting", AppendGreeting(nil, FlagFixedNewstyle|FlagNoZeroes),
			"4e42444d41474943 49484156454f5054 0003"},
		{"option header", AppendOptHeader(nil, OptHeader{Option: OptGo, Length: 16}),
			"49484156454f5054 00000007 00000010"},
		{"option reply ack", AppendOptReply(nil, OptList, RepAck, nil),
			"0003e889045565a9 00000003 00000001 00000000"},
		{"option reply error", AppendOptReply(nil, OptStructuredReply, RepErrUnsup, []byte("no")),
			"0003e889045565a9 00000008 80000001 00000002 6e6f"},
		{"server reply", AppendOptReply(nil, OptList, RepServer, ServerData("vol", "d")),
			"0003e889045565a9 00000003 00000002 00000008 00000003 766f6c 64"},
		{"export name reply", AppendExportNameReply(nil, 1<<20, 0x010d, false),
			"0000000000100000 010d " + zeroes124},
		{"export name reply no zeroes", AppendExportNameReply(nil, 1<<20, 0x010d, true),
			"0000000000100000 010d"},
		{"info export", InfoExportData(1<<30, FlagHasFlags|FlagReadOnly),
			"0000 0000000040000000 0003"},
		{"info name", InfoStringData(InfoName, "vol"), "0001 766f6c"},
		{"info description", InfoStringData(InfoDescription, "d"), "0002 64"},
		{"info block size", InfoBlockSizeData(BlockSize{Min: 1, Preferred: 4096, Max: 32 << 20}),
			"0003 00000001 00001000 02000000"},
		{"info request", AppendInfoRequest(nil, InfoRequest{Name: "vol", Infos: []uint16{InfoName, InfoBlockSize}}),
			"00000003 766f6c 0002 0001 0003"},
		{"request", AppendRequest(nil, Request{Flags: CmdFlagFUA, Type: CmdWrite, Handle: 0x0102030405060708, Offset: 4096, Length: 512}),
			"25609513 0001 0001 0102030405060708 0000000000001000 00000200"},
	}
	for _, c := range cases {
		if want := unhex(t, c.want); !bytes.Equal(c.got, want) {
			t.Errorf("%s:\n got %x\nwant %x", c.name, c.got, want)
		}
	}
	var reply [SimpleReplySize]byte
	PutSimpleReply(reply[:], EINVAL, 0x0102030405060708)
	if want := unhex(t, "67446698 00000016 0102030405060708"); !bytes.Equal(reply[:], want) {
		t.Errorf("simple reply: got %x want %x", reply, want)
	}
}

func TestSpecConstants(t *testing.T) {
	// Values as listed in the spec's "Values" section.
	for name, c := range map[string][2]uint64{
		"NBD_REP_ERR_UNSUP":    {uint64(RepErrUnsup), 1<<31 + 1},
		"NBD_REP_ERR_INVALID":  {uint64(RepErrInvalid), 1<<31 + 3},
		"NBD_REP_ERR_UNKNOWN":  {uint64(RepErrUnknown), 1<<31 + 6},
		"NBD_REP_ERR_SHUTDOWN": {uint64(RepErrShutdown), 1<<31 + 7},
		"NBD_FLAG_CAN_MULTI":   {uint64(FlagCanMultiConn), 1 << 8},
		"NBD_FLAG_SEND_WZ":     {uint64(FlagSendWriteZeroes), 1 << 6},
		"NBD_CMD_WRITE_ZEROES": {uint64(CmdWriteZeroes), 6},
		"NBD_CMD_FLAG_NO_HOLE": {uint64(CmdFlagNoHole), 2},
		"EPERM":                {uint64(EPERM), 1},
		"EIO":                  {uint64(EIO), 5},
		"EINVAL":               {uint64(EINVAL), 22},
		"ENOSPC":               {uint64(ENOSPC), 28},
		"ESHUTDOWN":            {uint64(ESHUTDOWN), 108},
	} {
		if c[0] != c[1] {
			t.Errorf("%s = %d, spec says %d", name, c[0], c[1])
		}
	}
}

func TestDecodeRequest(t *testing.T) {
	b := unhex(t, "25609513 0002 0006 00000000000000ff 0000000000010000 00100000")
	r, err := DecodeRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	want := Request{Flags: CmdFlagNoHole, Type: CmdWriteZeroes, Handle: 0xff, Offset: 65536, Length: 1 << 20}
	if r != want {
		t.Fatalf("got %+v want %+v", r, want)
	}
	b[0] = 0x26
	if _, err := DecodeRequest(b); !errors.Is(err, ErrBadMagic) {
		t.Fatalf("bad magic: %v", err)
	}
	if _, err := DecodeRequest(b[:27]); !errors.Is(err, ErrInvalid) {
		t.Fatalf("short: %v", err)
	}
}

func TestDecodeOptHeaderAndReply(t *testing.T) {
	h, err := DecodeOptHeader(unhex(t, "49484156454f5054 00000003 00000000"))
	if err != nil || h != (OptHeader{Option: OptList}) {
		t.Fatalf("got %+v %v", h, err)
	}
	if _, err := DecodeOptHeader(unhex(t, "4e42444d41474943 00000003 00000000")); !errors.Is(err, ErrBadMagic) {
		t.Fatalf("bad magic: %v", err)
	}
	rep, err := DecodeOptReply(unhex(t, "0003e889045565a9 00000007 00000003 0000000c"))
	if err != nil || rep != (OptReply{Option: OptGo, Type: RepInfo, Length: 12}) {
		t.Fatalf("got %+v %v", rep, err)
	}
	sr, err := DecodeSimpleReply(unhex(t, "67446698 00000001 0000000000000007"))
	if err != nil || sr != (SimpleReply{Error: EPERM, Handle: 7}) {
		t.Fatalf("got %+v %v", sr, err)
	}
}

func TestDecodeInfoRequest(t *testing.T) {
	good := unhex(t, "00000003 766f6c 0002 0001 0003")
	r, err := DecodeInfoRequest(good)
	if err != nil || r.Name != "vol" || !r.Wants(InfoName) || !r.Wants(InfoBlockSize) || r.Wants(InfoDescription) {
		t.Fatalf("got %+v %v", r, err)
	}
	bad := map[string]string{
		"too short":         "00000000 00",
		"name past end":     "00000009 766f6c 0000",
		"count past end":    "00000003 766f6c 0002 0001",
		"trailing bytes":    "00000003 766f6c 0000 00",
		"huge name length":  "ffffffff 0000",
		"odd info bytes":    "00000000 0001 0001 00",
		"missing the count": "00000003 766f6c",
	}
	for name, h := range bad {
		if _, err := DecodeInfoRequest(unhex(t, h)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
	long := AppendInfoRequest(nil, InfoRequest{Name: strings.Repeat("x", MaxStringLen+1)})
	if _, err := DecodeInfoRequest(long); !errors.Is(err, ErrInvalid) {
		t.Errorf("name over 4096 bytes: %v", err)
	}
}

func TestDecodeInfoAndServerData(t *testing.T) {
	var in Info
	for _, d := range [][]byte{
		InfoExportData(4096, FlagHasFlags|FlagSendFlush),
		InfoStringData(InfoName, "vol"),
		InfoStringData(InfoDescription, "a disk"),
		InfoBlockSizeData(BlockSize{1, 4096, 1 << 25}),
		{0x00, 0x63, 1, 2, 3}, // unknown info type: ignored
	} {
		if err := DecodeInfo(&in, d); err != nil {
			t.Fatal(err)
		}
	}
	want := Info{Size: 4096, Flags: FlagHasFlags | FlagSendFlush, Name: "vol", Description: "a disk", BlockSize: BlockSize{1, 4096, 1 << 25}, HasExport: true}
	if in != want {
		t.Fatalf("got %+v want %+v", in, want)
	}
	if err := DecodeInfo(&in, []byte{0, 0, 1}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("short NBD_INFO_EXPORT: %v", err)
	}
	name, desc, err := DecodeServerData(ServerData("vol", "a disk"))
	if err != nil || name != "vol" || desc != "a disk" {
		t.Fatalf("server data: %q %q %v", name, desc, err)
	}
	if _, _, err := DecodeServerData(unhex(t, "00000005 6162")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad server data: %v", err)
	}
}

func TestCheckClientFlags(t *testing.T) {
	offered := FlagFixedNewstyle | FlagNoZeroes
	for _, ok := range []uint32{0, ClientFlagFixedNewstyle, ClientFlagFixedNewstyle | ClientFlagNoZeroes} {
		if err := CheckClientFlags(ok, offered); err != nil {
			t.Errorf("flags %#x: %v", ok, err)
		}
	}
	if err := CheckClientFlags(4, offered); err == nil {
		t.Error("unknown client flag accepted")
	}
	if err := CheckClientFlags(ClientFlagNoZeroes, FlagFixedNewstyle); err == nil {
		t.Error("NO_ZEROES accepted though not offered")
	}
}

// FuzzDecodeRequest: decoding never panics, and whatever decodes encodes
// back to the same 28 bytes.
func FuzzDecodeRequest(f *testing.F) {
	f.Add(AppendRequest(nil, Request{Type: CmdRead, Handle: 1, Length: 4096}))
	f.Add(AppendRequest(nil, Request{Flags: CmdFlagFUA, Type: CmdWrite, Offset: 1 << 40, Length: 1 << 25}))
	f.Add([]byte("garbage that is not a request at all"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err != nil {
			return
		}
		if got := AppendRequest(nil, r); !bytes.Equal(got, b[:RequestSize]) {
			t.Fatalf("round trip: %x != %x", got, b[:RequestSize])
		}
	})
}

// FuzzDecodeInfoRequest: the NBD_OPT_GO / NBD_OPT_INFO parser never
// panics, and what it accepts re-encodes to exactly its input.
func FuzzDecodeInfoRequest(f *testing.F) {
	f.Add(AppendInfoRequest(nil, InfoRequest{Name: "vol", Infos: []uint16{InfoName, InfoDescription, InfoBlockSize}}))
	f.Add(AppendInfoRequest(nil, InfoRequest{}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeInfoRequest(b)
		if err != nil {
			return
		}
		if got := AppendInfoRequest(nil, r); !bytes.Equal(got, b) {
			t.Fatalf("round trip: %x != %x", got, b)
		}
	})
}
