package config

import (
	"fmt"
	"net/netip"
)

// Ranges a floating address may not come from, beyond what netip's Is…
// methods name.
var (
	thisNetwork4 = netip.MustParsePrefix("0.0.0.0/8")   // RFC 1122: "this network", never a destination
	reserved4    = netip.MustParsePrefix("240.0.0.0/4") // RFC 1112: reserved; Linux does not route it
	broadcast4   = netip.MustParseAddr("255.255.255.255")
)

// notUnicast says why the address of a floating prefix p cannot be given
// to one host and reached by clients, or "" when it can. A VIP must be a
// unicast address that clients on the prefix (and beyond, through a
// router) send to: not a whole subnet's network or broadcast address, not
// a group (multicast), not one that never leaves the host (loopback) or
// the link (link-local).
func notUnicast(p netip.Prefix) string {
	a := p.Addr()
	switch {
	case a.Is4In6():
		return "an IPv4-mapped IPv6 address; write it as IPv4"
	case a.IsUnspecified():
		return "the unspecified address"
	case a.IsLoopback():
		return "a loopback address: it never leaves the host"
	case a.IsMulticast():
		return "a multicast address"
	case a.IsLinkLocalUnicast():
		return "a link-local address (169.254.0.0/16, fe80::/10): routers do not forward it, and hosts give it out on their own"
	case a == broadcast4:
		return "the limited broadcast address"
	case thisNetwork4.Contains(a):
		return "in 0.0.0.0/8, which no host may use as its address"
	case reserved4.Contains(a):
		return "in the reserved 240.0.0.0/4"
	}
	hostBits := a.BitLen() - p.Bits()
	if hostBits < 2 {
		// A /31 or /32 (/127, /128) has no network or broadcast address
		// (RFC 3021, RFC 6164).
		return ""
	}
	subnet := p.Masked()
	switch {
	case a == subnet.Addr() && a.Is4():
		return fmt.Sprintf("the network address of %s", subnet)
	case a == subnet.Addr():
		return fmt.Sprintf("the subnet-router anycast address of %s (RFC 4291)", subnet)
	case a.Is4() && a == lastAddr(subnet):
		return fmt.Sprintf("the broadcast address of %s", subnet)
	}
	return ""
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
