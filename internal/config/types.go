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
	Groups   []Group `yaml:"groups"`
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
}

// Resource is one resource of a group: exactly one of the kind fields is set.
type Resource struct {
	Name            string   `yaml:"name"`
	VIP             *VIP     `yaml:"vip"`
	Exec            *Exec    `yaml:"exec"`
	OCF             *OCF     `yaml:"ocf"`
	MonitorInterval Duration `yaml:"monitor_interval"`
	StartTimeout    Duration `yaml:"start_timeout"`
	StopTimeout     Duration `yaml:"stop_timeout"`
	MonitorTimeout  Duration `yaml:"monitor_timeout"`
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

// Kind returns the resource kind name ("vip", "exec", "ocf") or "".
func (r *Resource) Kind() string {
	switch {
	case r.VIP != nil:
		return "vip"
	case r.Exec != nil:
		return "exec"
	case r.OCF != nil:
		return "ocf"
	}
	return ""
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

// Duration is a time.Duration written as "150ms", "2s", "10m", "180d".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// StringList accepts either a single string or a list of strings.
type StringList []string
