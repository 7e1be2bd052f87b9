package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"time"
)

// Limits of the cluster's shape.
const (
	MinDataNodes = 2 // a hot-standby pair
	MaxDataNodes = 9
	MinVoters    = 3 // a majority survives the loss of any one voter
	MaxVoters    = 9 // raft traffic grows with the square of voters
	MaxLinks     = 8
	// The shortest heartbeat interval: below it the agent spends more time
	// on heartbeats than the failover target allows.
	MinHeartbeatInterval = time.Millisecond
	MaxClockDriftLimit   = 0.1 // a clock 10 % off is broken, not drifting
)

// StopSignals are the signals an exec resource may be stopped with.
var StopSignals = []string{"TERM", "INT", "QUIT", "HUP", "KILL", "USR1", "USR2"}

var (
	nameRE      = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)
	agentRE     = regexp.MustCompile(`^[A-Za-z0-9_+-][A-Za-z0-9_.+-]*/[A-Za-z0-9_+-][A-Za-z0-9_.+-]*$`)
	envNameRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	ifaceNameRE = regexp.MustCompile(`^[^/\s:]{1,15}$`)
)

const nameRule = "1 to 63 of a-z, 0-9 and -"

// Validate checks every rule on a Config whose defaults are applied, and
// returns Problems listing every violation (nil if there is none). It looks
// at nothing but the Config: whether files and agents exist on this machine
// is CheckLocal's job, because the file is validated on machines that do not
// run its resources.
func (c *Config) Validate() error {
	k := &checker{src: c.src}
	k.cluster(c)
	k.members(c)
	k.timing(c.Timing)
	k.api(c)
	k.events(c)
	k.notify(c)
	k.groups(c)
	k.volumes(c)
	k.fence(c)
	k.watchdog(c)
	k.twoNode(c)
	return k.probs.sorted().errOrNil()
}

func (k *checker) cluster(c *Config) {
	if c.Cluster == "" {
		k.addf("cluster", "required: the cluster's name")
	} else {
		k.name("cluster", c.Cluster)
	}
	switch {
	case !c.Insecure && c.KeyFile == "":
		k.addf("key_file", `required (create one with "tandem keygen"), unless insecure: true`)
	case c.Insecure && c.KeyFile != "":
		k.addf("insecure", "insecure: true turns encryption off, but key_file is set; remove one of them")
	}
	k.absPath("key_file", c.KeyFile)
	k.requiredAbsPath("state_dir", c.StateDir)
	if c.Port < 1 || c.Port > 65535 {
		k.addf("port", "%d is not a port (1-65535)", c.Port)
	}
	if c.ConfigMismatch != MismatchBlock && c.ConfigMismatch != MismatchWarn {
		k.addf("config_mismatch", "%q: write block or warn", c.ConfigMismatch)
	}
}

// members checks the data nodes and the witness: counts, names, links.
func (k *checker) members(c *Config) {
	n := len(c.Nodes)
	switch {
	case n < MinDataNodes || n > MaxDataNodes:
		k.addf("nodes", "need %d to %d data nodes, got %d", MinDataNodes, MaxDataNodes, n)
	case c.IsTwoNode():
		// two-node mode: fencing breaks the tie (twoNode checks it)
	case len(c.Voters()) > MaxVoters:
		k.addf("witness", "%d data nodes and a witness make %d voters; at most %d are allowed", n, n+1, MaxVoters)
	case len(c.Voters()) < MinVoters: // unreachable with the rules above; kept as the invariant
		k.addf("nodes", "need at least %d voters (data nodes and witness), got %d", MinVoters, len(c.Voters()))
	}
	names := map[string]string{} // name -> path of the node that has it
	addrs := map[netip.AddrPort]string{}
	for i, node := range c.Nodes {
		k.member(fmt.Sprintf("nodes[%d]", i), node, c.Port, names, addrs)
	}
	if c.Witness != nil {
		k.member("witness", *c.Witness, c.Port, names, addrs)
	}
}

func (k *checker) member(path string, n Node, port int, names map[string]string, addrs map[netip.AddrPort]string) {
	k.uniqueName(path+".name", n.Name, names)
	if len(n.Links) < 1 || len(n.Links) > MaxLinks {
		k.addf(path+".links", "need 1 to %d links, got %d", MaxLinks, len(n.Links))
	}
	for i, s := range n.Links {
		lpath := fmt.Sprintf("%s.links[%d]", path, i)
		ap, err := ParseLink(s, port)
		if err != nil {
			k.addf(lpath, "%v", err)
			continue
		}
		if first, dup := addrs[ap]; dup {
			k.addf(lpath, "%s is already used by %s", ap, first)
			continue
		}
		addrs[ap] = lpath
	}
}

// ParseLink reads a link address, "IP" or "IP:PORT" ("[IPv6]:PORT"), and
// gives it port when it has none.
func ParseLink(s string, port int) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		a, err2 := netip.ParseAddr(s)
		if err2 != nil {
			return netip.AddrPort{}, fmt.Errorf("%q is not an IP or IP:PORT", s)
		}
		ap = netip.AddrPortFrom(a, uint16(port))
	} else if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("%q has port 0", s)
	}
	if a := ap.Addr(); a.IsUnspecified() || a.IsMulticast() {
		return netip.AddrPort{}, fmt.Errorf("%q is not a unicast address", s)
	}
	return ap, nil
}

// timing checks that the profile is self-consistent. The rules, each for a
// reason a user would otherwise learn the hard way:
//   - heartbeat_interval ≥ 1ms;
//   - node_timeout ≥ 2 × heartbeat_interval, so one lost heartbeat never
//     declares a node dead;
//   - lease ≥ node_timeout, so a holder does not lose its lease on a blip the
//     failure detector tolerates;
//   - raft_timeout ≥ node_timeout, so raft does not change leader on such a
//     blip either;
//   - 0 ≤ max_clock_drift ≤ 0.1.
func (k *checker) timing(t Timing) {
	k.atLeast("timing.heartbeat_interval", t.HeartbeatInterval, MinHeartbeatInterval)
	k.positive("timing.node_timeout", t.NodeTimeout)
	if t.Lease != t.NodeTimeout { // else it is node_timeout's problem
		k.positive("timing.lease", t.Lease)
	}
	k.positive("timing.raft_timeout", t.RaftTimeout)
	if t.HeartbeatInterval > 0 && t.NodeTimeout > 0 && t.NodeTimeout < 2*t.HeartbeatInterval {
		k.addf("timing.node_timeout", "%s is less than twice heartbeat_interval (%s): one lost heartbeat would declare a node dead",
			t.NodeTimeout, t.HeartbeatInterval)
	}
	if t.NodeTimeout > 0 && t.Lease > 0 && t.Lease < t.NodeTimeout {
		k.addf("timing.lease", "%s is shorter than node_timeout (%s): groups would stop on blips the failure detector tolerates",
			t.Lease, t.NodeTimeout)
	}
	if t.NodeTimeout > 0 && t.RaftTimeout > 0 && t.RaftTimeout < t.NodeTimeout {
		k.addf("timing.raft_timeout", "%s is shorter than node_timeout (%s): raft would change leader on blips the failure detector tolerates",
			t.RaftTimeout, t.NodeTimeout)
	}
	if t.MaxClockDrift < 0 || t.MaxClockDrift > MaxClockDriftLimit {
		k.addf("timing.max_clock_drift", "%g is outside 0 to %g (a clock 10 %% off is broken, not drifting)",
			t.MaxClockDrift, MaxClockDriftLimit)
	}
}

func (k *checker) api(c *Config) {
	a := c.API
	k.requiredAbsPath("api.socket", a.Socket)
	switch {
	case a.TCPPort < 0 || a.TCPPort > 65535:
		k.addf("api.tcp_port", "%d is not a port (0 turns TCP off, or 1-65535)", a.TCPPort)
	case a.TCPPort != 0 && a.TCPPort == c.Port:
		k.addf("api.tcp_port", "%d is the cluster port, which raft uses on TCP", a.TCPPort)
	}
	if a.TCPPort != 0 && a.TokenFile == "" {
		k.addf("api.token_file", `required when tcp_port is set (create one with "tandem keygen --token FILE")`)
	}
	k.absPath("api.token_file", a.TokenFile)
}

func (k *checker) events(c *Config) {
	e := c.Events
	// A file derived from state_dir is as good as state_dir, which has its
	// own check.
	if derived := e.File == "" && c.StateDir == "" || e.File == filepath.Join(c.StateDir, "events.jsonl"); !derived {
		k.requiredAbsPath("events.file", e.File)
	}
	k.notNegative("events.retention", int64(e.Retention), e.Retention.String())
}
