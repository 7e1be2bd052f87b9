package node

import (
	"context"
	"sort"
	"sync"
	"time"

	"tandem/internal/config"
	"tandem/internal/fence"
)

// FenceDeviceStatus is one fence device as this agent last checked it
// (`tandem status`): every device of the configuration is monitored
// (its monitor action, then its status of a plug it has) from every data
// node, so a device that stopped answering shows before a takeover needs
// it.
type FenceDeviceStatus struct {
	Name  string   `json:"name"`
	Kind  string   `json:"kind"`
	Agent string   `json:"agent,omitempty"`
	Nodes []string `json:"nodes"`
	// Checked is when the last monitor ended (zero: not yet).
	Checked time.Time `json:"checked,omitempty"`
	OK      bool      `json:"ok"`
	Error   string    `json:"error,omitempty"`
	Ms      int64     `json:"ms,omitempty"`
}

// fenceMonitorInterval is how often each device is monitored: a fence
// agent is a Python start and a session with the device, so not often;
// Pacemaker monitors stonith resources every 60 s by default too.
const fenceMonitorInterval = 60 * time.Second

// fenceMonitor runs the devices' monitors one at a time, never two of one
// device at once, each bounded by the device's timeout.
type fenceMonitor struct {
	f        *fence.Fencer
	cfg      []config.FenceDevice
	interval time.Duration
	log      func(msg string, args ...any)

	mu   sync.Mutex
	last map[string]FenceDeviceStatus
}

func newFenceMonitor(n *Node) *fenceMonitor {
	if n.fencer == nil || len(n.cfg.FenceDevices) == 0 {
		return nil
	}
	return &fenceMonitor{f: n.fencer, cfg: n.cfg.FenceDevices, interval: fenceMonitorInterval, log: n.log.Warn,
		last: map[string]FenceDeviceStatus{}}
}

// run monitors every device at start and then every interval.
func (m *fenceMonitor) run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, d := range m.cfg {
			m.check(ctx, d)
		}
		t.Reset(m.interval)
	}
}

func (m *fenceMonitor) check(ctx context.Context, d config.FenceDevice) {
	if _, ok := m.f.Devices[d.Name]; !ok {
		return // in no level: nothing fences with it
	}
	timeout := d.Timeout.D()
	if timeout <= 0 {
		timeout = fence.DefaultTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, 2*timeout+time.Second) // monitor, then status
	rep, err := m.f.Monitor(cctx, d.Name)
	cancel()
	if ctx.Err() != nil {
		return
	}
	s := FenceDeviceStatus{Name: d.Name, Kind: d.Kind, Agent: d.Agent, Nodes: append([]string(nil), d.Nodes...),
		Checked: time.Now(), OK: err == nil, Ms: rep.Duration.Milliseconds()}
	if err != nil {
		s.Error = err.Error()
	}
	m.mu.Lock()
	prev, seen := m.last[d.Name]
	m.last[d.Name] = s
	m.mu.Unlock()
	if !s.OK && (!seen || prev.OK) {
		m.log("fence device does not answer its monitor", "device", d.Name, "err", s.Error)
	}
}

// status returns every configured device, checked or not yet.
func (m *fenceMonitor) status() []FenceDeviceStatus {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []FenceDeviceStatus
	for _, d := range m.cfg {
		s, ok := m.last[d.Name]
		if !ok {
			s = FenceDeviceStatus{Name: d.Name, Kind: d.Kind, Agent: d.Agent, Nodes: append([]string(nil), d.Nodes...)}
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
