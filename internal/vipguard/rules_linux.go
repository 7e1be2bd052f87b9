package vipguard

import (
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The ARP family numbers its hooks apart from inet (linux/netfilter_arp.h).
const (
	nfARPIn  nftables.ChainHook = 0
	nfARPOut nftables.ChainHook = 1
)

// earlyPriority runs the inet chains before conntrack, so a silenced VIP
// costs no conntrack entries and no later chain can accept its packets first.
var earlyPriority = nftables.ChainPriorityRef(-300)

// ruleset is everything Install creates, named from one table name.
type ruleset struct {
	inet, arp *nftables.Table

	vips4, vips6, allowed4, allowed6 *nftables.Set // inet
	arpVIPs, arpAllowed              *nftables.Set // arp (sets do not cross tables)

	inetIn, inetOut, arpIn, arpOut *nftables.Chain
}

func newRuleset(table string) *ruleset {
	inet := &nftables.Table{Name: table, Family: nftables.TableFamilyINet}
	arp := &nftables.Table{Name: table, Family: nftables.TableFamilyARP}
	set := func(t *nftables.Table, name string, key nftables.SetDatatype, timeout bool) *nftables.Set {
		return &nftables.Set{Table: t, Name: name, KeyType: key, HasTimeout: timeout}
	}
	chain := func(t *nftables.Table, name string, hook nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
		return &nftables.Chain{Table: t, Name: name, Hooknum: &hook, Priority: prio, Type: nftables.ChainTypeFilter}
	}
	return &ruleset{
		inet:       inet,
		arp:        arp,
		vips4:      set(inet, "vips4", nftables.TypeIPAddr, false),
		vips6:      set(inet, "vips6", nftables.TypeIP6Addr, false),
		allowed4:   set(inet, "allowed4", nftables.TypeIPAddr, true),
		allowed6:   set(inet, "allowed6", nftables.TypeIP6Addr, true),
		arpVIPs:    set(arp, "vips4", nftables.TypeIPAddr, false),
		arpAllowed: set(arp, "allowed4", nftables.TypeIPAddr, true),
		inetIn:     chain(inet, "input", *nftables.ChainHookInput, earlyPriority),
		inetOut:    chain(inet, "output", *nftables.ChainHookOutput, earlyPriority),
		arpIn:      chain(arp, "input", nfARPIn, nftables.ChainPriorityFilter),
		arpOut:     chain(arp, "output", nfARPOut, nftables.ChainPriorityFilter),
	}
}

// Offsets in the headers the rules read.
const (
	ip4Src, ip4Dst = 12, 16 // IPv4 header
	ip6Src, ip6Dst = 8, 24  // IPv6 header
	icmp6Target    = 8      // target address of a neighbour solicitation or advertisement
	arpOp          = 6      // ARP header (Ethernet/IPv4 layout, checked by arpIsEtherIPv4)
	arpSenderIP    = 14
	arpTargetIP    = 24

	icmp6NeighSolicit = 135
	icmp6NeighAdvert  = 136
	arpRequest        = 1
)

// rules returns each chain's rules: drop what involves a guarded VIP that is
// not allowed. Every rule counts what it drops.
func (r *ruleset) rules() map[*nftables.Chain][][]expr.Any {
	silenced4 := func(base expr.PayloadBase, off uint32, vips, allowed *nftables.Set) []expr.Any {
		return silenced(base, off, 4, vips, allowed)
	}
	silenced6 := func(base expr.PayloadBase, off uint32) []expr.Any {
		return silenced(base, off, 16, r.vips6, r.allowed6)
	}
	net := expr.PayloadBaseNetworkHeader
	l4 := expr.PayloadBaseTransportHeader
	return map[*nftables.Chain][][]expr.Any{
		r.inetIn: {
			// Traffic to a silenced VIP.
			join(nfproto(unix.NFPROTO_IPV4), silenced4(net, ip4Dst, r.vips4, r.allowed4)),
			join(nfproto(unix.NFPROTO_IPV6), silenced6(net, ip6Dst)),
			// Neighbour solicitations for it (sent to a multicast address,
			// so the rule above does not see them).
			join(nfproto(unix.NFPROTO_IPV6), icmp6Type(icmp6NeighSolicit), silenced6(l4, icmp6Target)),
		},
		r.inetOut: {
			// Anything sent from a silenced VIP (replies, kernel NAs).
			join(nfproto(unix.NFPROTO_IPV4), silenced4(net, ip4Src, r.vips4, r.allowed4)),
			join(nfproto(unix.NFPROTO_IPV6), silenced6(net, ip6Src)),
			// Neighbour advertisements for it, whatever their source address.
			join(nfproto(unix.NFPROTO_IPV6), icmp6Type(icmp6NeighAdvert), silenced6(l4, icmp6Target)),
		},
		r.arpIn: {
			// Requests asking who has a silenced VIP.
			join(arpIsEtherIPv4(), cmpPayload(net, arpOp, be16(arpRequest)), silenced4(net, arpTargetIP, r.arpVIPs, r.arpAllowed)),
		},
		r.arpOut: {
			// Replies, requests and gratuitous ARP the kernel sends for it.
			join(arpIsEtherIPv4(), silenced4(net, arpSenderIP, r.arpVIPs, r.arpAllowed)),
		},
	}
}

// dropCounter tags the rule that counts the packets to one VIP the guard
// drops on the way in (Dropped reads it).
func dropCounter(vip netip.Addr) []byte { return []byte("tandem-dropped " + vip.String()) }

// countRules count, per guarded VIP, the inbound packets to it that the
// rules after them drop (its own counter: the drop rules count all VIPs
// together). They only count; the verdict is the drop rule's.
func (r *ruleset) countRules(vips map[netip.Addr]bool) []*nftables.Rule {
	var out []*nftables.Rule
	for vip := range vips {
		var exprs []expr.Any
		if vip.Is4() {
			exprs = join(nfproto(unix.NFPROTO_IPV4), cmpPayload(expr.PayloadBaseNetworkHeader, ip4Dst, vip.AsSlice()),
				notIn(expr.PayloadBaseNetworkHeader, ip4Dst, 4, r.allowed4))
		} else {
			exprs = join(nfproto(unix.NFPROTO_IPV6), cmpPayload(expr.PayloadBaseNetworkHeader, ip6Dst, vip.AsSlice()),
				notIn(expr.PayloadBaseNetworkHeader, ip6Dst, 16, r.allowed6))
		}
		exprs = append(exprs, &expr.Counter{})
		out = append(out, &nftables.Rule{Table: r.inet, Chain: r.inetIn, Exprs: exprs, UserData: dropCounter(vip)})
	}
	return out
}

// notIn matches a packet whose field at base+off is not in set.
func notIn(base expr.PayloadBase, off, n uint32, set *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: base, Offset: off, Len: n},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID, Invert: true},
	}
}

// silenced matches a packet whose field at base+off is in vips and not in
// allowed, counts and drops it.
func silenced(base expr.PayloadBase, off, n uint32, vips, allowed *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: base, Offset: off, Len: n},
		&expr.Lookup{SourceRegister: 1, SetName: vips.Name, SetID: vips.ID},
		&expr.Lookup{SourceRegister: 1, SetName: allowed.Name, SetID: allowed.ID, Invert: true},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

func nfproto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

func icmp6Type(t byte) []expr.Any {
	return append([]expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMPV6}},
	}, cmpPayload(expr.PayloadBaseTransportHeader, 0, []byte{t})...)
}

// arpIsEtherIPv4 checks hardware type 1, protocol IPv4, lengths 6 and 4, so
// the fixed offsets above are right.
func arpIsEtherIPv4() []expr.Any {
	return cmpPayload(expr.PayloadBaseNetworkHeader, 0, []byte{0, 1, 0x08, 0x00, 6, 4})
}

func cmpPayload(base expr.PayloadBase, off uint32, want []byte) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: base, Offset: off, Len: uint32(len(want))},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: want},
	}
}

func be16(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }

func join(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
