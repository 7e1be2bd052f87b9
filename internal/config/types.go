// Package config owns the cluster configuration: the YAML schema (one file,
// the same on every node), its defaults (each with a reason), loading with
// line numbers, and Validate, which reports every problem at once as
// `FILE:LINE: field.path: what is wrong`. It imports only leaf packages;
// every other package may import it.
package config

import "time"

// Config is the whole cluster configuration.
type Config struct {
	Cluster  string  `yaml:"cluster"`
	KeyFile  string  `yaml:"key_file"`
	Insecure bool    `yaml:"insecure"`
	StateDir string  `yaml:"state_dir"`
	Port     int     `yaml:"port"`
	Nodes    []Node  `yaml:"nodes"`
	Witness  *Node   `yaml:"witness"`
	Timing   Timing  `yaml:"timing"`
	API      API     `yaml:"api"`
	Events   Events  `yaml:"events"`
	Notify   Notify  `yaml:"notify"`
	Groups   []Group `yaml:"groups"`
	// Volumes are block devices replicated between two data nodes; a
	// group uses one through volume, filesystem and nbd_export resources.
	Volumes []Volume `yaml:"volumes"`
	// FenceDevices power nodes off (docs/fencing.md); FenceLevels order
	// them per node.
	FenceDevices []FenceDevice `yaml:"fence_devices"`
	FenceLevels  []FenceLevel  `yaml:"fence_levels"`
	// Watchdog, when set, makes every data node feed a watchdog while it
	// holds a lease (docs/fencing.md "Watchdog").
	Watchdog *Watchdog `yaml:"watchdog"`
	// TwoNode tunes two-node mode (two data nodes, no witness): the fence
	// race's delay and preferred node (docs/two-node.md).
	TwoNode *TwoNode `yaml:"two_node"`
	// ConfigMismatch is what a member running another configuration
	// than the cluster's means: "block" (no group moves to it) or "warn".
	ConfigMismatch string `yaml:"config_mismatch"`

	src *source // where Parse found each field; nil when built in code
}

// Node is a cluster member (a data node, or the witness).
type Node struct {
	Name string `yaml:"name"`
	// Links are heartbeat paths in preference order: "IP" or "IP:PORT"
	// (PORT defaults to Config.Port). Raft uses the first reachable link.
	Links []string `yaml:"links"`
}

// Timing is the failure-detection and lease profile.
type Timing struct {
	HeartbeatInterval Duration `yaml:"heartbeat_interval"`
	NodeTimeout       Duration `yaml:"node_timeout"`
	Lease             Duration `yaml:"lease"`
	MaxClockDrift     float64  `yaml:"max_clock_drift"`
	RaftTimeout       Duration `yaml:"raft_timeout"`
}

// API is the control API: always a unix socket, optionally TCP with a token.
type API struct {
	Socket    string `yaml:"socket"`
	TCPPort   int    `yaml:"tcp_port"`
	BindAll   bool   `yaml:"bind_all"`
	TokenFile string `yaml:"token_file"`
}

// Events is the audit log.
type Events struct {
	File      string   `yaml:"file"`
	Retention Duration `yaml:"retention"`
}

// Group is an ordered list of resources that run together on one node.
type Group struct {
	Name           string     `yaml:"name"`
	Prefer         StringList `yaml:"prefer"`
	Nodes          StringList `yaml:"nodes"`
	Failback       Failback   `yaml:"failback"`
	FailbackHold   Duration   `yaml:"failback_hold"`
	Stickiness     int        `yaml:"stickiness"`
	MaxRestarts    int        `yaml:"max_restarts"`
	FailureTimeout Duration   `yaml:"failure_timeout"`
	Resources      []Resource `yaml:"resources"`
	// Fence: always, when-needed or never: whether a takeover from an
	// unreachable holder fences it first (witness mode; docs/fencing.md).
	Fence string `yaml:"fence"`
}

// Resource is one resource of a group: exactly one of the kind fields is set.
type Resource struct {
	Name string `yaml:"name"`
	VIP  *VIP   `yaml:"vip"`
	Exec *Exec  `yaml:"exec"`
	OCF  *OCF   `yaml:"ocf"`
	// Volume promotes this node's replica of a volume while the group
	// runs here (at the group's epoch) and demotes it on stop.
	Volume *VolumeRef `yaml:"volume"`
	// Filesystem mounts a volume of the group (after its volume resource).
	Filesystem *Filesystem `yaml:"filesystem"`
	// NBDExport serves a volume of the group over NBD (after its volume
	// resource), on the group's VIP.
	NBDExport       *NBDExport `yaml:"nbd_export"`
	MonitorInterval Duration   `yaml:"monitor_interval"`
	StartTimeout    Duration   `yaml:"start_timeout"`
	StopTimeout     Duration   `yaml:"stop_timeout"`
	MonitorTimeout  Duration   `yaml:"monitor_timeout"`
}

// VIP is a floating IPv4 or IPv6 address.
type VIP struct {
	Address      string   `yaml:"address"` // CIDR, e.g. 10.0.0.50/24 or fd00::50/64
	Interface    string   `yaml:"interface"`
	GARPCount    int      `yaml:"garp_count"`
	GARPInterval Duration `yaml:"garp_interval"`
}

// Exec is a supervised long-running process.
type Exec struct {
	Command    []string          `yaml:"command"`
	Env        map[string]string `yaml:"env"`
	Dir        string            `yaml:"dir"`
	StopSignal string            `yaml:"stop_signal"`
	Check      *Check            `yaml:"check"`
}

// Check is a health probe of an exec resource: exactly one of TCP, HTTP,
// Command.
type Check struct {
	TCP     string   `yaml:"tcp"`     // host:port to connect to
	HTTP    string   `yaml:"http"`    // URL; 2xx/3xx is healthy
	Command []string `yaml:"command"` // exit 0 is healthy
}

// OCF is an OCF 1.1 resource agent, e.g. heartbeat/Dummy.
type OCF struct {
	Agent  string            `yaml:"agent"` // provider/type
	Root   string            `yaml:"root"`
	Params map[string]string `yaml:"params"`
}

// ResourceKinds are the resource kinds, as their yaml keys.
var ResourceKinds = []string{"vip", "exec", "ocf", "volume", "filesystem", "nbd_export"}

// kinds reports which kind fields are set, in ResourceKinds order.
func (r *Resource) kinds() []bool {
	return []bool{r.VIP != nil, r.Exec != nil, r.OCF != nil, r.Volume != nil, r.Filesystem != nil, r.NBDExport != nil}
}

// Kind returns the resource kind name (one of ResourceKinds), or "" when
// none or more than one is set.
func (r *Resource) Kind() string {
	kind := ""
	for i, set := range r.kinds() {
		if set {
			if kind != "" {
				return ""
			}
			kind = ResourceKinds[i]
		}
	}
	return kind
}

// UsesVolume returns the volume a volume, filesystem or nbd_export
// resource names, or "".
func (r *Resource) UsesVolume() string {
	switch {
	case r.Volume != nil:
		return r.Volume.Name
	case r.Filesystem != nil:
		return r.Filesystem.Volume
	case r.NBDExport != nil:
		return r.NBDExport.Volume
	}
	return ""
}

// VolumeRef names a volume.
type VolumeRef struct {
	Name string `yaml:"name"`
}

// Filesystem is a file system on a volume, mounted while the group runs.
type Filesystem struct {
	Volume  string `yaml:"volume"`
	Mount   string `yaml:"mount"`   // absolute path of the mount point
	FSType  string `yaml:"fstype"`  // ext4 or xfs
	Options string `yaml:"options"` // mount -o, comma-separated
	// Fsck runs the file system's check before mounting.
	Fsck bool `yaml:"fsck"`
	// Mkfs makes the file system when the volume has none (a new one).
	Mkfs bool `yaml:"mkfs"`
	// ForceUnmount is how long a stop waits for a busy mount before it
	// kills the processes that hold it (0: never kill; the stop fails).
	ForceUnmount Duration `yaml:"force_unmount"`
}

// NBDExport serves a volume over NBD to other machines.
type NBDExport struct {
	Volume string `yaml:"volume"`
	Port   int    `yaml:"port"` // on the group's VIP
}

// Volume is a block device replicated between two data nodes
// (docs/volumes.md): each has a replica on a backing file or device.
type Volume struct {
	Name string `yaml:"name"`
	Size Bytes  `yaml:"size"`
	// Mode: "sync" (a write is acknowledged once durable on both
	// replicas) or "async" (once durable here; the peer trails by at
	// most max_lag).
	Mode       string `yaml:"mode"`
	MaxLag     Bytes  `yaml:"max_lag"`     // async only
	OnLag      string `yaml:"on_lag"`      // async past max_lag: throttle or ahead
	SplitBrain string `yaml:"split_brain"` // disconnect, discard-zero-changes, discard-younger-primary or discard-older-primary
	ResyncRate Bytes  `yaml:"resync_rate"` // bytes per second; 0: no limit
	// Port is the replication link's TCP port on each replica node's
	// links (link i of one node pairs with link i of the other).
	Port     int       `yaml:"port"`
	Replicas []Replica `yaml:"replicas"`
}

// Replica is one data node's copy of a volume.
type Replica struct {
	Node string `yaml:"node"`
	// Backing is a file (created sparse at the volume's size when
	// missing), a block device, or raid:NAME (a tandem raid array).
	Backing string `yaml:"backing"`
}

// VolumeModes, OnLagModes and SplitBrainPolicies are the values the
// volume fields take.
var (
	VolumeModes        = []string{"sync", "async"}
	OnLagModes         = []string{"throttle", "ahead"}
	SplitBrainPolicies = []string{"disconnect", "discard-zero-changes", "discard-younger-primary", "discard-older-primary"}
	FSTypes            = []string{"ext4", "xfs"}
)

// VolumeByName returns the volume called name, or nil.
func (c *Config) VolumeByName(name string) *Volume {
	for i := range c.Volumes {
		if c.Volumes[i].Name == name {
			return &c.Volumes[i]
		}
	}
	return nil
}

// Replica returns node's replica of v, or nil.
func (v *Volume) Replica(node string) *Replica {
	for i := range v.Replicas {
		if v.Replicas[i].Node == node {
			return &v.Replicas[i]
		}
	}
	return nil
}

// FailbackMode is how a group returns to its preferred node.
type FailbackMode string

const (
	FailbackManual FailbackMode = "manual"
	FailbackAuto   FailbackMode = "auto"
	FailbackDelay  FailbackMode = "delay"
)

// Failback is "auto", "manual" or "delay <duration>".
type Failback struct {
	Mode  FailbackMode
	Delay time.Duration
}

// Bytes is a size written as "512MiB", "10GiB", "4096" (bytes) or with
// the units K/KiB, M/MiB, G/GiB, T/TiB (all powers of 1024).
type Bytes int64

// Duration is a time.Duration written as "150ms", "2s", "10m", "180d".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// StringList accepts either a single string or a list of strings.
type StringList []string
