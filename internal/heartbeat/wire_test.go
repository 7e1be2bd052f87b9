package heartbeat

import (
	"encoding/hex"
	"reflect"
	"testing"
)

func TestWireGolden(t *testing.T) {
	m := &Message{
		Kind: KindHeartbeat, ConfigHash: 0xA1B2C3D4, Round: 7, Echo: 5, EchoDelay: 300,
		Seen: 0b101, Applied: 42,
		Requests: []LeaseRequest{{Group: "web", Epoch: 3}},
		Acks:     []LeaseAck{{Group: "db", Epoch: 9, Round: 6}},
		Releases: []LeaseRelease{{Group: "x", Epoch: 1}},
	}
	b, err := m.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := "01" + "a1b2c3d4" + "0000000000000007" + "0000000000000005" + "0000012c" + "0005" +
		"000000000000002a" + "010101" +
		"03776562" + "0000000000000003" +
		"026462" + "0000000000000009" + "0000000000000006" +
		"0178" + "0000000000000001"
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("encoding\n got %s\nwant %s", got, want)
	}
	back, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, m) {
		t.Fatalf("round trip: %+v", back)
	}
}

func TestDecodeRejects(t *testing.T) {
	good, _ := (&Message{Kind: KindHeartbeat, Requests: []LeaseRequest{{Group: "g", Epoch: 1}}}).Append(nil)
	cases := map[string][]byte{
		"empty":         nil,
		"short":         good[:10],
		"truncated":     good[:len(good)-1],
		"trailing":      append(append([]byte(nil), good...), 0),
		"bad kind":      append([]byte{9}, good[1:]...),
		"many entries":  func() []byte { b := append([]byte(nil), good...); b[35] = 200; return b }(),
		"zero name len": func() []byte { b := append([]byte(nil), good...); b[fixedSize] = 0; return b }(),
	}
	for name, b := range cases {
		if _, err := Decode(b); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
	if _, err := (&Message{Kind: KindHeartbeat, Requests: []LeaseRequest{{Group: ""}}}).Append(nil); err == nil {
		t.Error("empty group name encoded")
	}
}

func FuzzDecode(f *testing.F) {
	good, _ := (&Message{Kind: KindLeaseAck, Acks: []LeaseAck{{Group: "g", Epoch: 1, Round: 2}}}).Append(nil)
	f.Add(good)
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		again, err := m.Append(nil)
		if err != nil {
			t.Fatalf("decoded message does not encode: %v", err)
		}
		if string(again) != string(b) {
			t.Fatalf("re-encoding differs")
		}
	})
}
