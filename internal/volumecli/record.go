package volumecli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"tandem/internal/durable"
	"tandem/internal/replication"
	"tandem/internal/replication/link"
)

// record is what the state dir remembers of one volume's replica on this
// node: everything `up` needs.
type record struct {
	Name    string `json:"name"`
	UUID    string `json:"uuid"`
	Node    string `json:"node"`
	Peer    string `json:"peer"`
	Size    int64  `json:"size_bytes"`     // the data size, the same on both nodes
	Backing string `json:"backing"`        // a file, a block device, or raid:NAME
	Meta    string `json:"meta,omitempty"` // separate metadata file or device
	// Paths are "LOCAL,PEER" address pairs, in preference order.
	Paths      []string  `json:"paths"`
	KeyFile    string    `json:"key_file"`
	Mode       string    `json:"mode"`
	MaxLag     int64     `json:"max_lag_bytes,omitempty"`
	MaxLagTime string    `json:"max_lag_time,omitempty"`
	OnLag      string    `json:"on_lag,omitempty"`
	SplitBrain string    `json:"split_brain"`
	Rate       int64     `json:"resync_rate_bytes_per_second,omitempty"`
	NBD        string    `json:"nbd"` // HOST:PORT or unix:PATH, served while primary
	Created    time.Time `json:"created"`
}

func volumeDir(stateDir string) string { return filepath.Join(stateDir, "volumes") }

func recordPath(stateDir, name string) string {
	return filepath.Join(volumeDir(stateDir), name+".json")
}

func socketPath(stateDir, name string) string {
	return filepath.Join(volumeDir(stateDir), name+".sock")
}

func fencePath(stateDir, name string) string {
	return filepath.Join(volumeDir(stateDir), name+".fence.json")
}

func validName(name string) error {
	if name == "" || strings.ContainsAny(name, "/\x00 ") || name == "." || name == ".." || len(name) > 32 {
		return fmt.Errorf("volume: invalid volume name %q (1-32 bytes, no '/' or space)", name)
	}
	return nil
}

func loadRecord(stateDir, name string) (*record, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(recordPath(stateDir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("volume: no volume %q recorded in %s (tandem volume create first)", name, volumeDir(stateDir))
	}
	if err != nil {
		return nil, fmt.Errorf("volume: %w", err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("volume: %s: %w", recordPath(stateDir, name), err)
	}
	if r.Name != name {
		return nil, fmt.Errorf("volume: %s records volume %q, not %q", recordPath(stateDir, name), r.Name, name)
	}
	return &r, nil
}

func listRecords(stateDir string) ([]string, error) {
	ents, err := os.ReadDir(volumeDir(stateDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("volume: %w", err)
	}
	var names []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok && !strings.HasSuffix(n, ".fence") {
			names = append(names, n)
		}
	}
	return names, nil
}

func saveJSON(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("volume: %w", err)
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	if err := durable.WriteFile(path, append(b, '\n'), 0o640); err != nil {
		return fmt.Errorf("volume: %w", err)
	}
	return nil
}

// parsePath reads "LOCAL,PEER": the address this node listens on and the
// peer's. A local address without a port takes the peer's.
func parsePath(s string) (link.Path, error) {
	local, peer, ok := strings.Cut(s, ",")
	if !ok {
		return link.Path{}, fmt.Errorf("volume: path %q: want LOCAL_ADDR[:PORT],PEER_ADDR:PORT", s)
	}
	pp, err := netip.ParseAddrPort(strings.TrimSpace(peer))
	if err != nil {
		return link.Path{}, fmt.Errorf("volume: path %q: peer: %v", s, err)
	}
	local = strings.TrimSpace(local)
	lp, err := netip.ParseAddrPort(local)
	if err != nil {
		a, aerr := netip.ParseAddr(local)
		if aerr != nil {
			return link.Path{}, fmt.Errorf("volume: path %q: local: %v", s, err)
		}
		lp = netip.AddrPortFrom(a, pp.Port())
	}
	if lp.Addr().IsUnspecified() {
		return link.Path{}, fmt.Errorf("volume: path %q: listen on a configured address, not %v (every interface)", s, lp.Addr())
	}
	return link.Path{Local: lp, Peer: pp}, nil
}

func (r *record) linkPaths() ([]link.Path, error) {
	var out []link.Path
	for _, s := range r.Paths {
		p, err := parsePath(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// replicationConfig is the record's replication settings.
func (r *record) replicationConfig() (replication.Config, error) {
	var c replication.Config
	var errs []error
	switch r.Mode {
	case "", "sync":
		c.Mode = replication.Sync
	case "async":
		c.Mode = replication.Async
	default:
		errs = append(errs, fmt.Errorf("mode %q: want sync or async", r.Mode))
	}
	c.MaxLagBytes = r.MaxLag
	if r.MaxLagTime != "" {
		d, err := time.ParseDuration(r.MaxLagTime)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("max lag time %q: want a duration such as 2s", r.MaxLagTime))
		}
		c.MaxLagTime = d
	}
	switch r.OnLag {
	case "", "throttle":
		c.OnLag = replication.Throttle
	case "ahead":
		c.OnLag = replication.GoAhead
	default:
		errs = append(errs, fmt.Errorf("on lag %q: want throttle or ahead", r.OnLag))
	}
	if r.SplitBrain != "" {
		p, err := replication.ParseSplitBrainPolicy(r.SplitBrain)
		if err != nil {
			errs = append(errs, err)
		}
		c.SplitBrain = p
	}
	c.ResyncRate = r.Rate
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("volume %s: %w", r.Name, err)
	}
	return c, nil
}
