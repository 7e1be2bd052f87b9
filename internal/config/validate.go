package config

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
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
	k.groups(c)
	return k.probs.sorted().errOrNil()
}

// checker collects problems, each placed at the line of its field, or of the
// nearest enclosing field the file has.
type checker struct {
	src   *source
	probs Problems
}

func (k *checker) addf(path, format string, args ...any) {
	p := Problem{Path: path, Msg: fmt.Sprintf(format, args...)}
	if k.src != nil {
		p.File = k.src.file
		for q := path; q != ""; q = parentPath(q) {
			if line, ok := k.src.lines[q]; ok {
				p.Line = line
				break
			}
		}
	}
	k.probs = append(k.probs, p)
}

// listPath names item i of the list at path. A StringList written as one
// string has no items in the file, so its only item is the list itself.
func (k *checker) listPath(path string, i, n int) string {
	item := fmt.Sprintf("%s[%d]", path, i)
	if k.src != nil {
		if _, ok := k.src.lines[item]; ok {
			return item
		}
	}
	if n == 1 {
		return path
	}
	return item
}

func (k *checker) name(path, name string) {
	switch {
	case name == "":
		k.addf(path, "required")
	case !nameRE.MatchString(name):
		k.addf(path, "%q is not a valid name (%s)", name, nameRule)
	}
}

// absPath checks an optional path field.
func (k *checker) absPath(path, p string) {
	if p != "" && !filepath.IsAbs(p) {
		k.addf(path, "%q must be an absolute path", p)
	}
}

func (k *checker) requiredAbsPath(path, p string) {
	if p == "" {
		k.addf(path, "required")
	}
	k.absPath(path, p)
}

func (k *checker) atLeast(path string, d Duration, min time.Duration) {
	if d.D() < min {
		k.addf(path, "must be at least %s, got %s", Duration(min), d)
	}
}

func (k *checker) positive(path string, d Duration) {
	if d <= 0 {
		k.addf(path, "must be more than 0, got %s", d)
	}
}

func (k *checker) notNegative(path string, v int64, show string) {
	if v < 0 {
		k.addf(path, "must not be negative, got %s", show)
	}
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
}

// members checks the data nodes and the witness: counts, names, links.
func (k *checker) members(c *Config) {
	n := len(c.Nodes)
	switch {
	case n < MinDataNodes || n > MaxDataNodes:
		k.addf("nodes", "need %d to %d data nodes, got %d", MinDataNodes, MaxDataNodes, n)
	case n == 2 && c.Witness == nil:
		k.addf("witness", "required with 2 data nodes: it breaks the tie when they lose sight of each other "+
			"(fencing is not implemented yet, so two nodes cannot run alone)")
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

func (k *checker) groups(c *Config) {
	names := map[string]string{}
	vips := map[netip.Addr]string{}
	for i := range c.Groups {
		g := &c.Groups[i]
		path := fmt.Sprintf("groups[%d]", i)
		k.uniqueName(path+".name", g.Name, names)
		k.groupNodes(c, path, g)
		k.failback(path+".failback", g.Failback)
		k.notNegative(path+".stickiness", int64(g.Stickiness), strconv.Itoa(g.Stickiness))
		k.notNegative(path+".max_restarts", int64(g.MaxRestarts), strconv.Itoa(g.MaxRestarts))
		k.notNegative(path+".failure_timeout", int64(g.FailureTimeout), g.FailureTimeout.String())
		if len(g.Resources) == 0 {
			k.addf(path+".resources", "a group needs at least one resource")
		}
		rnames := map[string]string{}
		for ri := range g.Resources {
			rpath := fmt.Sprintf("%s.resources[%d]", path, ri)
			k.resource(c, rpath, &g.Resources[ri], rnames, vips)
		}
	}
}

// groupNodes checks that nodes and prefer name data nodes, and that every
// preferred node may run the group.
func (k *checker) groupNodes(c *Config, path string, g *Group) {
	if len(c.Nodes) == 0 {
		return // already a problem; every name would be one more
	}
	seen := map[string]bool{}
	for i, name := range g.Nodes {
		p := k.listPath(path+".nodes", i, len(g.Nodes))
		if k.dataNode(c, p, name) && seen[name] {
			k.addf(p, "%q is listed twice", name)
		}
		seen[name] = true
	}
	preferred := map[string]bool{}
	for i, name := range g.Prefer {
		p := k.listPath(path+".prefer", i, len(g.Prefer))
		switch {
		case !k.dataNode(c, p, name):
		case !seen[name]:
			k.addf(p, "%q is not one of this group's nodes (%s)", name, strings.Join(g.Nodes, ", "))
		case preferred[name]:
			k.addf(p, "%q is listed twice", name)
		}
		preferred[name] = true
	}
}

// dataNode reports whether name is a data node, adding a problem if not.
func (k *checker) dataNode(c *Config, path, name string) bool {
	if slices.Contains(c.dataNodeNames(), name) {
		return true
	}
	if c.IsWitness(name) {
		k.addf(path, "%q is the witness, which never runs resources", name)
		return false
	}
	k.addf(path, "%q is not a data node (nodes are %s)", name, strings.Join(c.dataNodeNames(), ", "))
	return false
}

func (k *checker) failback(path string, f Failback) {
	switch f.Mode {
	case FailbackAuto, FailbackManual:
	case FailbackDelay:
		if f.Delay <= 0 {
			k.addf(path, "delay must be more than 0, got %s", Duration(f.Delay))
		}
	default:
		k.addf(path, "%q is not auto, manual or delay <duration>", f.Mode)
	}
}

func (k *checker) resource(c *Config, path string, r *Resource, names map[string]string, vips map[netip.Addr]string) {
	kinds := k.exactlyOne(path, []string{"vip", "exec", "ocf"}, r.VIP != nil, r.Exec != nil, r.OCF != nil)
	if r.Name != "" || kinds == 1 { // else the name is missing for want of a kind
		k.uniqueName(path+".name", r.Name, names)
	}
	k.positive(path+".monitor_interval", r.MonitorInterval)
	k.positive(path+".start_timeout", r.StartTimeout)
	k.positive(path+".stop_timeout", r.StopTimeout)
	k.positive(path+".monitor_timeout", r.MonitorTimeout)
	if r.VIP != nil {
		k.vip(c, path+".vip", r.VIP, vips)
	}
	if r.Exec != nil {
		k.exec(path+".exec", r.Exec)
	}
	if r.OCF != nil {
		k.ocf(path+".ocf", r.OCF)
	}
}

func (k *checker) vip(c *Config, path string, v *VIP, vips map[netip.Addr]string) {
	switch p, err := netip.ParsePrefix(v.Address); {
	case v.Address == "":
		k.addf(path+".address", "required (e.g. 10.0.0.50/24)")
	case err != nil:
		k.addf(path+".address", "%q is not an IP prefix", v.Address)
	case p.Addr().IsUnspecified() || p.Addr().IsMulticast() || p.Addr().IsLoopback():
		k.addf(path+".address", "%q is not a unicast address", v.Address)
	default:
		a := p.Addr()
		if first, dup := vips[a]; dup {
			k.addf(path+".address", "%s is already used by %s", a, first)
		} else {
			vips[a] = path
		}
		if owner := linkOwner(c, a); owner != "" {
			k.addf(path+".address", "%s is a link address of node %s; a floating address must be one no node owns", a, owner)
		}
	}
	switch {
	case v.Interface == "":
		k.addf(path+".interface", "required (e.g. eth0)")
	case !ifaceNameRE.MatchString(v.Interface) || v.Interface == "." || v.Interface == "..":
		k.addf(path+".interface", "%q is not an interface name", v.Interface)
	}
	k.notNegative(path+".garp_count", int64(v.GARPCount), strconv.Itoa(v.GARPCount))
	if v.GARPCount > 1 {
		k.positive(path+".garp_interval", v.GARPInterval)
	}
}

// linkOwner returns the member that has a as a link address, or "".
func linkOwner(c *Config, a netip.Addr) string {
	for _, n := range c.Voters() {
		for _, l := range n.Links {
			if ap, err := ParseLink(l, c.Port); err == nil && ap.Addr().WithZone("") == a.WithZone("") {
				return n.Name
			}
		}
	}
	return ""
}

func (k *checker) exec(path string, e *Exec) {
	k.argv(path+".command", e.Command)
	k.absPath(path+".dir", e.Dir)
	k.envNames(path+".env", e.Env, "environment variable")
	if !knownSignal(e.StopSignal) {
		k.addf(path+".stop_signal", "%q is not a known signal (one of %s)", e.StopSignal, strings.Join(StopSignals, ", "))
	}
	if e.Check != nil {
		k.check(path+".check", e.Check)
	}
}

func (k *checker) argv(path string, argv []string) {
	switch {
	case len(argv) == 0:
		k.addf(path, "required: a list, the program and its arguments")
	case argv[0] == "":
		k.addf(path+"[0]", "the program must not be empty")
	}
}

// envNames checks that the keys of m can be environment variable names
// (OCF parameters become OCF_RESKEY_<name>).
func (k *checker) envNames(path string, m map[string]string, what string) {
	for _, name := range slices.Sorted(maps.Keys(m)) {
		if !envNameRE.MatchString(name) {
			k.addf(path+"."+name, "not a valid %s name (letters, digits and _, not first a digit)", what)
		}
	}
}

func knownSignal(s string) bool {
	for _, sig := range StopSignals {
		if s == sig {
			return true
		}
	}
	return false
}

func (k *checker) check(path string, ch *Check) {
	k.exactlyOne(path, []string{"tcp", "http", "command"}, ch.TCP != "", ch.HTTP != "", len(ch.Command) > 0)
	if ch.TCP != "" {
		host, port, err := net.SplitHostPort(ch.TCP)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			k.addf(path+".tcp", "%q is not HOST:PORT", ch.TCP)
		}
	}
	if ch.HTTP != "" {
		u, err := url.Parse(ch.HTTP)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			k.addf(path+".http", "%q is not an http:// or https:// URL", ch.HTTP)
		}
	}
	if len(ch.Command) > 0 {
		k.argv(path+".command", ch.Command)
	}
}

func (k *checker) ocf(path string, o *OCF) {
	switch {
	case o.Agent == "":
		k.addf(path+".agent", "required: provider/type, e.g. heartbeat/Dummy")
	case !agentRE.MatchString(o.Agent):
		k.addf(path+".agent", "%q is not provider/type (e.g. heartbeat/Dummy)", o.Agent)
	}
	k.requiredAbsPath(path+".root", o.Root)
	k.envNames(path+".params", o.Params, "parameter")
}

// exactlyOne checks that exactly one of the named alternatives is set, and
// returns how many are.
func (k *checker) exactlyOne(path string, names []string, set ...bool) int {
	var given []string
	for i, ok := range set {
		if ok {
			given = append(given, names[i])
		}
	}
	switch all := strings.Join(names, ", "); len(given) {
	case 0:
		k.addf(path, "give one of %s", all)
	case 1:
	default:
		k.addf(path, "give exactly one of %s, not %s", all, strings.Join(given, " and "))
	}
	return len(given)
}

// uniqueName checks a name, and that no earlier item (in seen, name ->
// path) has it.
func (k *checker) uniqueName(path, name string, seen map[string]string) {
	k.name(path, name)
	if first, dup := seen[name]; dup && name != "" {
		k.addf(path, "%q is already the name of %s", name, first)
	} else if name != "" {
		seen[name] = parentPath(path)
	}
}

// parentPath strips the last field or index from a path.
func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// isUnder reports whether path lies inside parent.
func isUnder(path, parent string) bool {
	return strings.HasPrefix(path, parent+".") || strings.HasPrefix(path, parent+"[")
}
