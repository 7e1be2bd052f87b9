package config

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"tandem/internal/keyfile"
)

// FenceDevice is a device that can power off (fence) nodes (issue 13,
// docs/fencing.md).
type FenceDevice struct {
	Name string `yaml:"name"`
	// Kind: agent (a fence agent of Debian's fence-agents), ipmi
	// (fence_ipmilan), exec (a program of one's own speaking the same
	// stdin protocol) or webhook (an HTTP call).
	Kind string `yaml:"kind"`
	// Nodes are the data nodes this device can fence.
	Nodes StringList `yaml:"nodes"`
	// Agent: for kind agent the fence agent's name (fence_apc_snmp…),
	// looked up in /usr/sbin and PATH; for exec an absolute path.
	Agent string `yaml:"agent"`
	// Params go to the agent's stdin as key=value (ipaddr, login, …).
	Params map[string]string `yaml:"params"`
	// Plugs name each node's plug (port) on the device, by node.
	Plugs map[string]string `yaml:"plugs"`
	// SecretFiles map a parameter (passwd) to a file holding its value.
	SecretFiles map[string]string `yaml:"secret_files"`
	// Method: off (then status must say off) or reboot.
	Method  string   `yaml:"method"`
	Timeout Duration `yaml:"timeout"`
	Retries int      `yaml:"retries"`
	// URL and TokenFile: kind webhook.
	URL       string `yaml:"url"`
	TokenFile string `yaml:"token_file"`
}

// FenceLevel is one level of a node's fencing topology: the level
// confirms only when every one of its devices does. A node's levels are
// tried in the order of the file.
type FenceLevel struct {
	Node    string     `yaml:"node"`
	Devices StringList `yaml:"devices"`
}

// Fence device kinds and methods, and the group fence policies.
const (
	FenceKindAgent   = "agent"
	FenceKindIPMI    = "ipmi"
	FenceKindExec    = "exec"
	FenceKindWebhook = "webhook"
	// FenceKindWatchdog counts a node as reset by its own watchdog once
	// Config.WatchdogFenceWait has passed (docs/fencing.md "Watchdog").
	FenceKindWatchdog = "watchdog"

	FenceMethodOff    = "off"
	FenceMethodReboot = "reboot"

	FenceAlways     = "always"
	FenceWhenNeeded = "when-needed"
	FenceNever      = "never"
)

// IPMIAgent is the fence agent behind kind ipmi.
const IPMIAgent = "fence_ipmilan"

// DefaultFenceDevice returns a fence device's defaults.
func DefaultFenceDevice() FenceDevice {
	return FenceDevice{
		// off then status off is the only answer that proves the node is
		// down now; reboot trusts the agent's own check.
		Method: FenceMethodOff,
		// fence_ipmilan's login, its power_wait and a BMC that is slow to
		// answer fit; a hung agent is killed well before an operator would
		// give up on the takeover.
		Timeout: Duration(30 * time.Second),
		// A BMC drops the odd UDP packet; three tries ride that out
		// without hiding a device that is really broken.
		Retries: 2,
	}
}

var (
	fenceAgentRE = regexp.MustCompile(`^fence_[a-z0-9_]+$`)
	fenceParamRE = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)
)

// FenceLevelsOf returns node's levels, each a list of device names: the
// fence_levels entries for it in file order, or, when it has none, each
// device that fences it as a level of its own, in file order.
func (c *Config) FenceLevelsOf(node string) [][]string {
	var levels [][]string
	for _, l := range c.FenceLevels {
		if l.Node == node {
			levels = append(levels, []string(l.Devices))
		}
	}
	if levels != nil {
		return levels
	}
	for _, d := range c.FenceDevices {
		if slices.Contains(d.Nodes, node) {
			levels = append(levels, []string{d.Name})
		}
	}
	return levels
}

// FenceAgentPath is where a device's program is: fence_ipmilan for ipmi,
// the agent found in /usr/sbin or PATH for agent, the path for exec.
func (d FenceDevice) FenceAgentPath() (string, error) {
	switch d.Kind {
	case FenceKindExec:
		return d.Agent, nil
	case FenceKindIPMI, FenceKindAgent:
		name := d.Agent
		if d.Kind == FenceKindIPMI {
			name = IPMIAgent
		}
		if p := filepath.Join("/usr/sbin", name); isExecutable(p) {
			return p, nil
		}
		return exec.LookPath(name)
	}
	return "", fmt.Errorf("a %s device runs no program", d.Kind)
}

func (d FenceDevice) programName() string {
	if d.Kind == FenceKindIPMI {
		return IPMIAgent
	}
	return d.Agent
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

func (k *checker) fence(c *Config) {
	names := map[string]string{}
	fences := map[string][]string{} // device → nodes
	for i := range c.FenceDevices {
		d := &c.FenceDevices[i]
		path := fmt.Sprintf("fence_devices[%d]", i)
		k.uniqueName(path+".name", d.Name, names)
		fences[d.Name] = d.Nodes
		if len(d.Nodes) == 0 {
			k.addf(path+".nodes", "required: the data nodes this device can fence")
		}
		for ni, n := range d.Nodes {
			k.dataNode(c, k.listPath(path+".nodes", ni, len(d.Nodes)), n)
		}
		for n := range d.Plugs {
			if !slices.Contains(d.Nodes, n) {
				k.addf(path+".plugs", "%q has a plug but is not in this device's nodes", n)
			}
		}
		switch d.Kind {
		case FenceKindAgent:
			if !fenceAgentRE.MatchString(d.Agent) {
				k.addf(path+".agent", "%q is not a fence agent's name (fence_…, as in /usr/sbin; kind exec runs a program of your own)", d.Agent)
			}
		case FenceKindIPMI:
			if d.Agent != "" {
				k.addf(path+".agent", "kind ipmi always runs %s; leave agent out", IPMIAgent)
			}
			if d.Params["ipaddr"] == "" && d.Params["ip"] == "" {
				k.addf(path+".params", "kind ipmi needs params.ip (or ipaddr): the BMC's address")
			}
		case FenceKindExec:
			k.requiredAbsPath(path+".agent", d.Agent)
		case FenceKindWebhook:
			k.fenceWebhook(path, d)
		case FenceKindWatchdog:
			if d.Agent != "" || d.URL != "" || d.TokenFile != "" || len(d.Params) > 0 || len(d.SecretFiles) > 0 || len(d.Plugs) > 0 {
				k.addf(path+".kind", "a watchdog device runs nothing and calls nothing: give it only nodes (and timeout, retries)")
			}
		case "":
			k.addf(path+".kind", "required: agent, ipmi, exec, webhook or watchdog")
		default:
			k.addf(path+".kind", "%q is not agent, ipmi, exec, webhook or watchdog", d.Kind)
		}
		for _, key := range sortedKeys(d.Params) {
			v := d.Params[key]
			switch {
			case !fenceParamRE.MatchString(key):
				k.addf(path+".params."+key, "%q is not a parameter name", key)
			case key == "action" || key == "plug" || key == "port" || key == "nodename":
				k.addf(path+".params."+key, "set by tandem for each action and node; use plugs for the plug")
			case key == "passwd" || key == "password" || strings.HasSuffix(key, "_password"):
				k.addf(path+".params."+key, "a secret in the configuration would be in every copy of it; put it in a file and name it in secret_files")
			case strings.ContainsAny(v, "\n\r\x00"):
				k.addf(path+".params."+key, "a value may not hold a newline")
			}
		}
		for _, key := range sortedKeys(d.SecretFiles) {
			switch {
			case !fenceParamRE.MatchString(key):
				k.addf(path+".secret_files", "%q is not a parameter name", key)
			case d.Params[key] != "":
				k.addf(path+".secret_files", "%q is also in params", key)
			}
			k.requiredAbsPath(path+".secret_files."+key, d.SecretFiles[key])
		}
		if d.Method != FenceMethodOff && d.Method != FenceMethodReboot {
			k.addf(path+".method", "%q is not off or reboot", d.Method)
		}
		k.positive(path+".timeout", d.Timeout)
		if d.Retries < 0 || d.Retries > 10 {
			k.addf(path+".retries", "%d is outside 0 to 10", d.Retries)
		}
	}
	for i, l := range c.FenceLevels {
		path := fmt.Sprintf("fence_levels[%d]", i)
		if l.Node == "" {
			k.addf(path+".node", "required")
		} else {
			k.dataNode(c, path+".node", l.Node)
		}
		if len(l.Devices) == 0 {
			k.addf(path+".devices", "required: the devices that must all confirm")
		}
		for di, name := range l.Devices {
			p := k.listPath(path+".devices", di, len(l.Devices))
			nodes, ok := fences[name]
			switch {
			case !ok:
				k.addf(p, "%q is not a fence device", name)
			case l.Node != "" && !slices.Contains(nodes, l.Node):
				k.addf(p, "%q does not fence %s (its nodes: %s)", name, l.Node, strings.Join(nodes, ", "))
			}
		}
	}
	for i, g := range c.Groups {
		switch g.Fence {
		case FenceAlways:
			// A takeover that must fence and cannot would never start.
			for _, n := range c.Nodes {
				if len(c.FenceLevelsOf(n.Name)) == 0 {
					k.addf(fmt.Sprintf("groups[%d].fence", i), "always needs a fence device for every data node; none fences %s (fence_devices)", n.Name)
				}
			}
		case FenceWhenNeeded, FenceNever:
		default:
			k.addf(fmt.Sprintf("groups[%d].fence", i), "%q is not always, when-needed or never", g.Fence)
		}
	}
}

func (k *checker) fenceWebhook(path string, d *FenceDevice) {
	u, err := url.Parse(d.URL)
	switch {
	case d.URL == "":
		k.addf(path+".url", "required with kind webhook")
	case err != nil || u.Host == "":
		k.addf(path+".url", "%q is not a URL with a host", d.URL)
	case u.Scheme != "https":
		k.addf(path+".url", "%q: a fence request must travel over https", d.URL)
	case u.User != nil:
		k.addf(path+".url", "a URL must not carry a password (it would show in logs): use token_file")
	}
	k.absPath(path+".token_file", d.TokenFile)
	if d.Agent != "" {
		k.addf(path+".agent", "kind webhook runs no program")
	}
}

// localFence checks on this machine that each device's program runs and
// its secret files load.
func (k *checker) localFence(c *Config) {
	for i, d := range c.FenceDevices {
		path := fmt.Sprintf("fence_devices[%d]", i)
		if d.Kind == FenceKindAgent || d.Kind == FenceKindIPMI || d.Kind == FenceKindExec {
			if p, err := d.FenceAgentPath(); err != nil {
				k.addf(path+".agent", "%s not found here (Debian package fence-agents): %v", d.programName(), lookPathReason(err))
			} else if !isExecutable(p) {
				k.addf(path+".agent", "%s cannot be run here", p)
			}
		}
		for _, key := range sortedKeys(d.SecretFiles) {
			if _, err := keyfile.LoadSecret(d.SecretFiles[key]); err != nil {
				k.addf(path+".secret_files."+key, "%s", strings.TrimPrefix(err.Error(), "keyfile: "))
			}
		}
		if d.TokenFile != "" {
			if _, err := keyfile.LoadSecret(d.TokenFile); err != nil {
				k.addf(path+".token_file", "%s", strings.TrimPrefix(err.Error(), "keyfile: "))
			}
		}
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	return keys
}
