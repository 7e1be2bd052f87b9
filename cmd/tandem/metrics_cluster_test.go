package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/api"
)

// metricsCluster is a real three-agent cluster (agents a and b, witness
// w, this test binary as the tandem command) on loopback addresses of its
// own, with everything /metrics reports on: a group with a replicated
// volume and a service, node b keeping its replica on a tandem RAID 1
// array (so it is there after a failover from a), a on a file, and the
// TCP API with a token. The group runs on a and its volume is in sync
// when it returns.
type metricsCluster struct {
	dir     string
	ips     map[string]string
	apiPort int
	token   string // the token's file
	procs   map[string]*exec.Cmd
}

func startMetricsCluster(t *testing.T) *metricsCluster {
	t.Helper()
	dir := t.TempDir()
	base := fmt.Sprintf("127.%d.%d.", 100+rand.IntN(100), rand.IntN(250))
	c := &metricsCluster{dir: dir, ips: map[string]string{"a": base + "1", "b": base + "2", "w": base + "3"}}
	all := []string{c.ips["a"], c.ips["b"], c.ips["w"]}
	port := freePort(t, all...)
	volPort := freePort(t, all...)
	c.apiPort = freePort(t, all...)
	key := filepath.Join(dir, "cluster.key")
	c.token = filepath.Join(dir, "api.token")
	if _, _, err := run("keygen", "--out", key); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run("keygen", "--token", c.token); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b", "w"} {
		os.MkdirAll(filepath.Join(dir, n), 0o700)
	}
	// Node b's replica lives on a RAID 1 array recorded in its state dir.
	m1, m2 := filepath.Join(dir, "b", "m1.img"), filepath.Join(dir, "b", "m2.img")
	if _, stderr, err := run("raid", "--state-dir", filepath.Join(dir, "b"), "create", "--level", "1", "--size", "16M", "r0", m1, m2); err != nil {
		t.Fatalf("raid create: %v\n%s", err, stderr)
	}
	cfg := filepath.Join(dir, "tandem.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`cluster: metrics
key_file: %s
port: %d
nodes:
  - {name: a, links: [%s]}
  - {name: b, links: [%s]}
witness: {name: w, links: [%s]}
timing: {heartbeat_interval: 100ms, node_timeout: 1s}
api: {tcp_port: %d, token_file: %s}
notify: {kinds: [takeover, handover], exec: {command: [/bin/true]}}
groups:
  - name: db
    prefer: a
    failback: manual
    resources:
      - volume: {name: data}
      - name: svc
        exec:
          command: [/bin/sleep, "1000"]
          check: {command: [/bin/true]}
        monitor_interval: 500ms
fence_devices:
  - {name: pdu, kind: agent, agent: fence_dummy, nodes: [a, b], plugs: {a: "1", b: "2"}}
volumes:
  - name: data
    size: 4MiB
    port: %d
    replicas:
      - {node: a, backing: %s}
      - {node: b, backing: "raid:r0"}
`, key, port, c.ips["a"], c.ips["b"], c.ips["w"], c.apiPort, c.token, volPort, filepath.Join(dir, "a", "data.img"))), 0o600)
	if _, stderr, err := run("config", "validate", cfg); err != nil {
		t.Fatalf("config: %v\n%s", err, stderr)
	}
	logs, procs := startAgents(t, dir, func(string) string { return cfg }, nil)
	c.procs = procs
	a := c.client("a")
	var last string
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := a.Status(ctx)
		cancel()
		if err == nil {
			last = fmt.Sprintf("quorum %v", st.Quorum)
			ok := st.Quorum
			for _, g := range st.Groups {
				last += fmt.Sprintf(", group %s on %q running %v (%s %s)", g.Name, g.Holder, g.Running, g.Phase, g.PhaseError)
				ok = ok && g.Holder == "a" && g.Running
			}
			for _, v := range st.Volumes {
				if v.Local == nil {
					ok = false
					continue
				}
				last += fmt.Sprintf(", volume %s %s %s/%s oos %d", v.Name, v.Local.Role, v.Local.Connection, v.Local.PeerDisk, v.Local.OutOfSync)
				ok = ok && v.Local.Role == "Primary" && v.Local.Connection == "Connected" && v.Local.PeerDisk == "UpToDate" && v.Local.OutOfSync == 0
			}
			if ok {
				return c
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster did not come up: %s\nagent a:\n%s", last, logs["a"])
		}
	}
}

func (c *metricsCluster) socket(node string) string { return filepath.Join(c.dir, node, "api.sock") }

func (c *metricsCluster) client(node string) *api.Client { return api.NewUnixClient(c.socket(node)) }

// scrape reads GET /metrics of node's agent on its unix socket.
func (c *metricsCluster) scrape(t *testing.T, node string) string {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", c.socket(node))
		}}}
	resp, err := hc.Get("http://tandem/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", node, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("scrape %s: %s %v", node, resp.Status, err)
	}
	return string(b)
}

// family is one metric family of a scrape: its type and every label name
// its samples carry (le and quantile aside).
type family struct {
	typ    string
	labels map[string]bool
}

// parseExposition reads the Prometheus text format into families.
func parseExposition(text string) (map[string]*family, error) {
	fams := map[string]*family{}
	get := func(name string) *family {
		f := fams[name]
		if f == nil {
			f = &family{labels: map[string]bool{}}
			fams[name] = f
		}
		return f
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(rest, " ")
			get(name).typ = typ
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, labels, err := parseSample(line)
		if err != nil {
			return nil, err
		}
		base := name
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suf); ok && fams[b] != nil && (fams[b].typ == "histogram" || fams[b].typ == "summary") {
				base = b
			}
		}
		f := get(base)
		for _, l := range labels {
			if (l == "le" && f.typ == "histogram") || (l == "quantile" && f.typ == "summary") {
				continue
			}
			f.labels[l] = true
		}
	}
	return fams, sc.Err()
}

// parseSample splits `name{l="v",…} value` into the name and label names.
func parseSample(line string) (string, []string, error) {
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return "", nil, fmt.Errorf("bad sample %q", line)
	}
	name := line[:i]
	if line[i] == ' ' {
		return name, nil, nil
	}
	var labels []string
	s := line[i+1:]
	for {
		s = strings.TrimLeft(s, ",")
		if strings.HasPrefix(s, "}") {
			return name, labels, nil
		}
		eq := strings.Index(s, `="`)
		if eq < 0 {
			return "", nil, fmt.Errorf("bad labels in %q", line)
		}
		labels = append(labels, s[:eq])
		s = s[eq+2:]
		j := 0
		for ; j < len(s) && s[j] != '"'; j++ {
			if s[j] == '\\' {
				j++
			}
		}
		if j >= len(s) {
			return "", nil, fmt.Errorf("unterminated label value in %q", line)
		}
		s = s[j+1:]
	}
}
