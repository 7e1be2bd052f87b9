package main

import (
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// docMetric is one row of docs/metrics.md.
type docMetric struct {
	name, typ string
	labels    []string
	line      int
	planned   bool // under "## Planned": not served yet
}

// readMetricsDoc reads the metric tables of docs/metrics.md: rows whose
// first cell is a backticked metric name, then its type and its labels.
func readMetricsDoc(t *testing.T) []docMetric {
	t.Helper()
	b, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []docMetric
	planned := false
	for i, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "## ") {
			planned = strings.HasPrefix(line, "## Planned")
		}
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < 4 {
			t.Errorf("docs/metrics.md:%d: want | name | type | labels | meaning |", i+1)
			continue
		}
		m := docMetric{name: strings.Trim(strings.TrimSpace(cells[0]), "`"), typ: strings.TrimSpace(cells[1]), line: i + 1, planned: planned}
		for _, l := range strings.Split(cells[2], ",") {
			if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" {
				m.labels = append(m.labels, l)
			}
		}
		sort.Strings(m.labels)
		out = append(out, m)
	}
	return out
}

// docs/metrics.md documents every metric a running cluster serves, with
// its type and labels, and nothing it does not serve: a real cluster
// (a group with a replicated volume on a RAID array, a service, the TCP
// API) is scraped on every agent, and the union is compared with the
// document. /metrics over TCP needs the token, and the TCP API listens on
// the node's link address only.
func TestMetricsDocMatchesAScrape(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-agent cluster with a replicated volume")
	}
	c := startMetricsCluster(t)
	// A planned switchover and back: the handover counters move and the
	// NBD export starts again on a.
	for _, to := range []string{"b", "a"} {
		if _, stderr, err := run("failover", "--socket", c.socket("a"), "db", "--to", to); err != nil {
			t.Fatalf("failover to %s: %v\n%s", to, err, stderr)
		}
		waitHolderOn(t, c, "a", "db", to)
	}
	time.Sleep(1500 * time.Millisecond) // a monitor round on both, the status after the moves
	served := map[string]*family{}
	for _, n := range []string{"a", "b", "w"} {
		fams, err := parseExposition(c.scrape(t, n))
		if err != nil {
			t.Fatalf("scrape %s: %v", n, err)
		}
		for name, f := range fams {
			if s := served[name]; s != nil {
				for l := range f.labels {
					s.labels[l] = true
				}
			} else {
				served[name] = f
			}
		}
	}
	doc := readMetricsDoc(t)
	documented := map[string]docMetric{}
	var wildcards []string
	for _, m := range doc {
		if _, dup := documented[m.name]; dup {
			t.Errorf("docs/metrics.md:%d: %s documented twice", m.line, m.name)
		}
		documented[m.name] = m
		if p, ok := strings.CutSuffix(m.name, "*"); ok {
			wildcards = append(wildcards, p)
		}
	}
	for name, f := range served {
		m, ok := documented[name]
		if !ok {
			if slices.ContainsFunc(wildcards, func(p string) bool { return strings.HasPrefix(name, p) }) {
				continue
			}
			t.Errorf("%s (%s, labels %v) is served but not in docs/metrics.md", name, f.typ, keys(f.labels))
			continue
		}
		if m.planned {
			t.Errorf("docs/metrics.md:%d: %s is served now: move it out of Planned", m.line, name)
		}
		if m.typ != f.typ {
			t.Errorf("docs/metrics.md:%d: %s is a %s, documented as %s", m.line, name, f.typ, m.typ)
		}
		if got := keys(f.labels); !slices.Equal(got, m.labels) {
			t.Errorf("docs/metrics.md:%d: %s has labels %v, documented %v", m.line, name, got, m.labels)
		}
	}
	for _, m := range doc {
		if m.planned {
			continue
		}
		if p, ok := strings.CutSuffix(m.name, "*"); ok {
			found := false
			for name := range served {
				found = found || strings.HasPrefix(name, p)
			}
			if !found {
				t.Errorf("docs/metrics.md:%d: nothing served matches %s", m.line, m.name)
			}
			continue
		}
		if served[m.name] == nil {
			t.Errorf("docs/metrics.md:%d: %s is documented but not served", m.line, m.name)
		}
	}

	// /metrics over TCP: the token or nothing, on the link address only.
	addr := net.JoinHostPort(c.ips["a"], strconv.Itoa(c.apiPort))
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/metrics over TCP without the token: %s, want 401", resp.Status)
	}
	tok, err := os.ReadFile(c.token)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/metrics over TCP with the token: %s", resp.Status)
	}
	if conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(c.apiPort)), time.Second); err == nil {
		conn.Close()
		t.Errorf("the API answers on 127.0.0.1:%d: it must listen on the link address only", c.apiPort)
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
