// Package vip owns the floating-IP resource agent: it puts the VIP on its
// interface (netlink; IPv6 without duplicate address detection so it is
// usable at once), announces it — gratuitous ARP in both request and reply
// form, or unsolicited neighbour advertisements with the override flag —
// garp_count times, garp_interval apart, and removes it on stop.
//
// The agent refuses to start a VIP that the lease guard (vipguard) does not
// allow, and revokes the allowance first on stop, so the VIP is never
// announced or reachable without a lease. Announcements leave through packet
// and ICMPv6 sockets; only the ICMPv6 ones pass the guard's nftables rules,
// which is why the agent checks the guard itself before announcing.
//
// It implements resource.Agent; the manager constructs it from config.VIP
// and is its only importer. It imports clock, config, resource, vipguard and
// netutil.
package vip
