package config

import (
	"net/netip"
	"testing"
)

func iface(name string, addrs ...string) HostInterface {
	i := HostInterface{Name: name}
	for _, a := range addrs {
		i.Addrs = append(i.Addrs, netip.MustParseAddr(a))
	}
	return i
}

// `tandem config validate --local` said ok for a VIP on eth9 and for a
// machine that is none of the nodes: CheckHost checks the member this
// machine is, its link addresses and its VIP interfaces.
func TestCheckHost(t *testing.T) {
	lo := iface("lo", "127.0.0.1", "::1")
	tests := []struct {
		name     string
		host     StaticHost
		flag     string
		ocf      string
		wantSelf string
		want     []string
	}{
		{"found by link address", StaticHost{"whatever", []HostInterface{lo, iface("eth0", "10.0.0.1")}}, "", "", "db1", nil},
		{"found by host name without its link address", StaticHost{"db2", []HostInterface{lo, iface("eth0", "10.9.0.2")}}, "", "", "db2", []string{
			`t.yaml:5: nodes[1].links[0]: 10.0.0.2 is not an address of this machine (db2): bind: cannot assign requested address`}},
		{"--node names the machine", StaticHost{"db1", []HostInterface{lo, iface("eth0", "10.0.0.1", "10.0.0.2")}}, "db2", "", "db2", nil},
		{"no interface for the VIP", StaticHost{"db1", []HostInterface{lo, iface("eth9", "10.0.0.1")}}, "", "", "db1", []string{
			`t.yaml:13: groups[0].resources[0].vip.interface: this machine (db1) has no interface eth0 (it has lo, eth9)`}},
		{"--node is no member", StaticHost{"db1", []HostInterface{lo, iface("eth0", "10.0.0.1")}}, "db3", "", "", []string{
			`t.yaml:3: nodes: "db3" (--node) is not a member of cluster shop (members: db1, db2, arbiter)`}},
		{"none of the members", StaticHost{"laptop", []HostInterface{lo, iface("wlan0", "192.168.1.5")}}, "", "", "", []string{
			`t.yaml:3: nodes: this machine is none of the members (db1, db2, arbiter): none of their link addresses is on an interface here, and the host name "laptop" is none of their names; pass --node NAME`}},
		{"data node checks resources too", StaticHost{"db1", []HostInterface{lo, iface("eth0", "10.0.0.1")}}, "", "      - ocf: {agent: heartbeat/pgsql, root: DIR/ocf}", "db1", []string{
			`t.yaml:15: groups[0].resources[2].ocf.agent: heartbeat/pgsql is not installed here (no DIR/ocf/resource.d/heartbeat/pgsql)`}},
		{"the witness needs neither VIP interfaces nor resources", StaticHost{"w", []HostInterface{lo, iface("ens3", "10.0.0.3")}}, "", "      - ocf: {agent: heartbeat/pgsql, root: DIR/ocf}", "arbiter", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ocf := tt.ocf
			if ocf == "" {
				ocf = "      - ocf: {agent: heartbeat/Dummy, root: DIR/ocf}"
			}
			c, dir := localFixture(t, ocf, "      - exec: {command: [/bin/sh]}")
			self, err := c.CheckHost(tt.host, tt.flag)
			if self != tt.wantSelf {
				t.Errorf("self %q, want %q", self, tt.wantSelf)
			}
			wantProblems(t, "CheckHost", err, tt.want, dir)
		})
	}
}

// A group that may not run on this node does not need its VIP's interface
// here.
func TestCheckHostOnlyTheNodesGroups(t *testing.T) {
	c, _ := localFixture(t, "      - ocf: {agent: heartbeat/Dummy, root: DIR/ocf}", "      - exec: {command: [/bin/sh]}")
	c.Groups[0].Nodes = StringList{"db2"}
	h := StaticHost{"db1", []HostInterface{iface("eth1", "10.0.0.1")}}
	if _, err := c.CheckHost(h, ""); err != nil {
		t.Errorf("db1 checked for a group only db2 runs: %v", err)
	}
	if _, err := c.CheckHost(StaticHost{"db2", []HostInterface{iface("eth1", "10.0.0.2")}}, ""); err == nil {
		t.Errorf("db2 runs the group but has no eth0")
	}
}

// ThisHost binds what the kernel takes as local (all of 127.0.0.0/8 on
// Linux, not only 127.0.0.1) and refuses an address of another machine.
func TestThisHostCanBind(t *testing.T) {
	if err := (ThisHost{}).CanBind(netip.MustParseAddr("127.0.0.1")); err != nil {
		t.Errorf("127.0.0.1: %v", err)
	}
	if err := (ThisHost{}).CanBind(netip.MustParseAddr("198.51.100.77")); err == nil {
		t.Errorf("198.51.100.77 (TEST-NET-2) bound")
	}
}
