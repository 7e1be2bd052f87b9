package testbed

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"tandem/internal/probe"
)

// ProbeInterval is how often the checker probes a service.
const ProbeInterval = 10 * time.Millisecond

// Checker is the client host's view of one service: the tandem prober,
// run in the client namespace, sends an HTTP request to VIP:port every
// ProbeInterval (a new TCP connection each time) and asks who has the VIP
// every 20 ms, recording which MACs answer.
type Checker struct {
	Name string
	URL  string
	VIP  netip.Addr

	bed  *Bed
	cmd  *exec.Cmd
	done chan struct{}

	mu sync.Mutex
	tl probe.Timeline
}

// StartChecker starts probing vip:port (name labels it, e.g. the group).
func (b *Bed) StartChecker(name string, vip netip.Addr, port int) (*Checker, error) {
	c := &Checker{Name: name, VIP: vip, URL: fmt.Sprintf("http://%s:%d/", vip, port), bed: b, done: make(chan struct{})}
	c.cmd = b.Command("client", b.Binary, "probe", "--url", c.URL,
		"--interval", ProbeInterval.String(), "--timeout", "200ms",
		"--arp-iface", Iface(0), "--arp-vip", vip.String())
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	errLog, err := os.Create(filepath.Join(b.Dir, "probe-"+name+".err"))
	if err != nil {
		return nil, err
	}
	c.cmd.Stderr = errLog
	tee, err := os.Create(filepath.Join(b.Dir, "probe-"+name+".jsonl"))
	if err != nil {
		return nil, err
	}
	if err := b.start(c.cmd); err != nil {
		return nil, fmt.Errorf("testbed: start the prober: %w", err)
	}
	b.mu.Lock()
	b.checkers = append(b.checkers, c)
	b.mu.Unlock()
	go func() {
		defer close(c.done)
		defer tee.Close()
		defer errLog.Close()
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			tee.Write(append(sc.Bytes(), '\n'))
			var rec probe.Record
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				continue
			}
			c.mu.Lock()
			if rec.HTTP != nil {
				c.tl.Samples = append(c.tl.Samples, *rec.HTTP)
			}
			if rec.ARP != nil {
				c.tl.ARPs = append(c.tl.ARPs, *rec.ARP)
			}
			c.mu.Unlock()
		}
	}()
	return c, nil
}

// Timeline returns a copy of what the checker saw so far.
func (c *Checker) Timeline() probe.Timeline {
	c.mu.Lock()
	defer c.mu.Unlock()
	return probe.Timeline{Samples: append([]probe.Sample(nil), c.tl.Samples...), ARPs: append([]probe.ARPSample(nil), c.tl.ARPs...)}
}

// Stop ends the prober (its in-flight probes finish) and waits for its
// last records.
func (c *Checker) Stop() {
	if c.cmd.Process != nil {
		c.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-c.done:
	case <-time.After(3 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
}

// WaitAnswer waits for an answer from node (any node when "") to a probe
// sent after since, and returns it.
func (c *Checker) WaitAnswer(ctx context.Context, node string, since time.Time, timeout time.Duration) (probe.Sample, error) {
	var got probe.Sample
	seen := 0
	err := waitFor(ctx, timeout, 5*time.Millisecond, func() (bool, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, s := range c.tl.Samples[seen:] {
			if s.OK() && s.Sent.After(since) && (node == "" || s.Node == node) {
				got = s
				return true, nil
			}
		}
		seen = len(c.tl.Samples)
		return false, nil
	}, "%s to answer the client at %s", orAny(node), c.URL)
	return got, err
}

// WaitSteady waits until the client has been answered by one node for the
// last d: the newest probe is fresh, and at least four in five of the
// probes sent in the last d came back, all answered by that node (a probe
// still hanging on a frozen node has not come back).
func (c *Checker) WaitSteady(ctx context.Context, d, timeout time.Duration) (string, error) {
	var who string
	err := waitFor(ctx, timeout, 10*time.Millisecond, func() (bool, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		now := time.Now()
		var newest time.Time
		node, n := "", 0
		for i := len(c.tl.Samples) - 1; i >= 0; i-- {
			s := c.tl.Samples[i]
			if s.Sent.After(newest) {
				newest = s.Sent
			}
			if s.Sent.Before(now.Add(-d)) {
				if s.Done.Before(now.Add(-d)) {
					break // samples arrive roughly in order
				}
				continue
			}
			if !s.OK() || (node != "" && s.Node != node) {
				return false, nil
			}
			node = s.Node
			n++
		}
		if now.Sub(newest) > 3*ProbeInterval+20*time.Millisecond || n < int(4*d/(5*ProbeInterval)) {
			return false, nil
		}
		who = node
		return true, nil
	}, "one node to answer every probe for %v at %s", d, c.URL)
	return who, err
}

func orAny(node string) string {
	if node == "" {
		return "any node"
	}
	return node
}
