package vip

import (
	"bytes"
	"encoding/hex"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

var (
	testMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x20, 0x30}
	testIP4 = netip.MustParseAddr("10.0.0.50")
	testIP6 = netip.MustParseAddr("fd00::50")
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGARPFramesGolden(t *testing.T) {
	frames, err := garpFrames(testMAC, testIP4)
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("00", 18) // 28-byte ARP body padded to Ethernet's 46-byte minimum
	want := []string{
		// dst broadcast, src MAC, type ARP
		"ffffffffffff 02005e102030 0806" +
			// htype 1, ptype IPv4, hlen 6, plen 4, op 1 (request)
			" 0001 0800 06 04 0001" +
			// sender MAC, sender IP, target MAC zero, target IP = sender IP
			" 02005e102030 0a000032 000000000000 0a000032" + pad,
		"ffffffffffff 02005e102030 0806" +
			// op 2 (reply); target MAC = sender MAC, target IP = sender IP
			" 0001 0800 06 04 0002" +
			" 02005e102030 0a000032 02005e102030 0a000032" + pad,
	}
	if len(frames) != len(want) {
		t.Fatalf("%d frames, want %d", len(frames), len(want))
	}
	for i := range want {
		if w := unhex(t, want[i]); !bytes.Equal(frames[i], w) {
			t.Errorf("frame %d:\n got %x\nwant %x", i, frames[i], w)
		}
	}
	if _, err := garpFrames(testMAC, testIP6); err == nil {
		t.Error("gratuitous ARP accepted an IPv6 address")
	}
}

func TestUnsolicitedNAGolden(t *testing.T) {
	b, err := ndp.MarshalMessage(unsolicitedNA(testMAC, testIP6))
	if err != nil {
		t.Fatal(err)
	}
	want := unhex(t,
		// type 136, code 0, checksum (the kernel fills it in)
		"88 00 0000"+
			// flags: R=0 S=0 O=1, reserved
			" 20000000"+
			// target address fd00::50
			" fd000000000000000000000000000050"+
			// option 2 (target link-layer address), length 1 (8 bytes), MAC
			" 02 01 02005e102030")
	if !bytes.Equal(b, want) {
		t.Errorf("NA:\n got %x\nwant %x", b, want)
	}
}

// FuzzGARPFrames checks that whatever MAC and IPv4 address the frames are
// built from, they parse back as two gratuitous ARPs Linux accepts as such.
func FuzzGARPFrames(f *testing.F) {
	f.Add([]byte(testMAC), testIP4.AsSlice())
	f.Add([]byte{0, 0, 0, 0, 0, 0}, []byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, mac, ip []byte) {
		if len(mac) != 6 || len(ip) != 4 {
			return
		}
		addr := netip.AddrFrom4([4]byte(ip))
		frames, err := garpFrames(mac, addr)
		if err != nil {
			t.Fatal(err)
		}
		for i, fr := range frames {
			if len(fr) != 60 {
				t.Fatalf("frame %d: %d bytes", i, len(fr))
			}
			var eth ethernet.Frame
			if err := eth.UnmarshalBinary(fr); err != nil {
				t.Fatal(err)
			}
			var p arp.Packet
			if err := p.UnmarshalBinary(eth.Payload); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(eth.Destination, ethernet.Broadcast) || !bytes.Equal(eth.Source, mac) ||
				!bytes.Equal(p.SenderHardwareAddr, mac) || p.SenderIP != addr || p.TargetIP != addr {
				t.Fatalf("frame %d: %+v %+v", i, eth, p)
			}
			if p.Operation == arp.OperationReply && !bytes.Equal(p.TargetHardwareAddr, mac) {
				t.Fatalf("reply's target MAC %v is not the sender's", p.TargetHardwareAddr)
			}
		}
	})
}
