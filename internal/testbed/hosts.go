package testbed

import (
	"net/netip"
	"strconv"
)

// Iface is the name of a host's interface on link i.
func Iface(link int) string { return "eth" + strconv.Itoa(link) }

// The bed's addressing: link i is 10.88.i.0/24; hosts have fixed numbers.
var hostNumber = map[string]int{"node1": 1, "node2": 2, "witness": 3, "client": 10, "bmc-node1": 21, "bmc-node2": 22}

// hostLinks is how many links each host has: the data nodes have two
// heartbeat paths; the witness, the client and the BMCs (AddBMC) sit on
// link 0 only.
var hostLinks = map[string]int{"node1": 2, "node2": 2, "witness": 1, "client": 1, "bmc-node1": 1, "bmc-node2": 1}

// DataNodes are the bed's data nodes.
var DataNodes = []string{"node1", "node2"}

func linkAddr(link, host int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 88, byte(link), byte(host)})
}

// VIPAddr is the i-th floating address (10.88.0.100+i) on link 0.
func VIPAddr(i int) netip.Addr { return linkAddr(0, 100+i) }
