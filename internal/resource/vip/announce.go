package vip

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

// garpFrames returns the two Ethernet frames that announce ip at mac, both
// broadcast, as keepalived sends them:
//
//   - an ARP request with sender and target IP both ip and a zero target
//     hardware address (RFC 5227's "ARP announcement");
//   - an ARP reply with sender and target both ip/mac: Linux treats a reply
//     as gratuitous (and lets it override a fresh neighbour entry inside
//     its locktime) only when the target hardware address equals the
//     sender's (arp_is_garp), and some hosts and switches heed only replies.
func garpFrames(mac net.HardwareAddr, ip netip.Addr) ([][]byte, error) {
	if !ip.Is4() {
		return nil, fmt.Errorf("vip: gratuitous ARP needs an IPv4 address, not %s", ip)
	}
	var frames [][]byte
	for _, form := range []struct {
		op     arp.Operation
		target net.HardwareAddr
	}{
		{arp.OperationRequest, make(net.HardwareAddr, len(mac))},
		{arp.OperationReply, mac},
	} {
		p, err := arp.NewPacket(form.op, mac, ip, form.target, ip)
		if err != nil {
			return nil, fmt.Errorf("vip: gratuitous ARP for %s: %w", ip, err)
		}
		body, err := p.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("vip: gratuitous ARP for %s: %w", ip, err)
		}
		f := &ethernet.Frame{Destination: ethernet.Broadcast, Source: mac, EtherType: ethernet.EtherTypeARP, Payload: body}
		b, err := f.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("vip: gratuitous ARP for %s: %w", ip, err)
		}
		frames = append(frames, b)
	}
	return frames, nil
}

// allNodes is where unsolicited neighbour advertisements go (RFC 4861 7.2.6).
var allNodes = netip.MustParseAddr("ff02::1")

// unsolicitedNA is the neighbour advertisement that announces ip at mac:
// not solicited, override set so receivers replace the old link-layer
// address at once, and the target link-layer address option.
func unsolicitedNA(mac net.HardwareAddr, ip netip.Addr) *ndp.NeighborAdvertisement {
	return &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: ip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}},
	}
}
