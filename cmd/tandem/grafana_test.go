package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dashboardQueries are every query of contrib/grafana/tandem.json: each
// panel's targets (rows' nested panels too), the template variables'
// label_values() metrics and the annotations, with Grafana's variables
// substituted as a user viewing the dashboard would have them.
func dashboardQueries(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../../contrib/grafana/tandem.json")
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	}
	type panel struct {
		Title   string   `json:"title"`
		Targets []target `json:"targets"`
		Panels  []panel  `json:"panels"`
	}
	var d struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
		Annotations struct {
			List []struct {
				Name string `json:"name"`
				Expr string `json:"expr"`
			} `json:"list"`
		} `json:"annotations"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("contrib/grafana/tandem.json: %v", err)
	}
	subst := strings.NewReplacer("$__rate_interval", "30s", "$__range", "5m", "$__interval", "5s", "$job", "tandem", "$group", ".*")
	q := map[string]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				q[fmt.Sprintf("panel %q %s", p.Title, tg.RefID)] = subst.Replace(tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	labelValues := regexp.MustCompile(`^label_values\((.*), *[a-z_]+\)$`)
	for _, v := range d.Templating.List {
		if m := labelValues.FindStringSubmatch(v.Definition); m != nil {
			q["variable "+v.Name] = subst.Replace(m[1])
		}
	}
	for _, a := range d.Annotations.List {
		q["annotation "+a.Name] = subst.Replace(a.Expr)
	}
	if len(q) < 20 {
		t.Fatalf("only %d queries in the dashboard", len(q))
	}
	return q
}

// promQuery runs an instant query against Prometheus' HTTP API and
// returns how many series it answered, or its error.
func promQuery(base, expr string) (int, error) {
	resp, err := http.Get(base + "/api/v1/query?" + url.Values{"query": {expr}}.Encode())
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("%s", r.Error)
	}
	return len(r.Data.Result), nil
}

// Every query of the Grafana dashboard returns data from a real
// Prometheus (Debian's) scraping a real cluster over the TCP API with the
// bearer token from a file, as docs/metrics.md tells users to, after a
// failover (node a killed, b takes over): none errors, none is empty. The
// alert rules load in that Prometheus and TandemTakeover fires.
func TestGrafanaDashboardQueriesReturnData(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-agent cluster and Prometheus")
	}
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus is not installed (Debian package prometheus; CI installs it): the dashboard's queries are not checked")
	}
	queries := dashboardQueries(t)
	c := startMetricsCluster(t)

	dir := t.TempDir()
	promPort := freePort(t, "127.0.0.1")
	rules, _ := filepath.Abs("../../contrib/prometheus/tandem.rules.yml")
	var targets []string
	for _, n := range []string{"a", "b", "w"} {
		targets = append(targets, strconv.Quote(fmt.Sprintf("%s:%d", c.ips[n], c.apiPort)))
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: tandem
    authorization: {type: Bearer, credentials_file: %q}
    static_configs:
      - targets: [%s]
`, rules, c.token, strings.Join(targets, ", "))), 0o600)
	prom := exec.Command(promBin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+fmt.Sprintf("127.0.0.1:%d", promPort), "--log.level=warn")
	promLog := &lockedBuffer{}
	prom.Stdout, prom.Stderr = promLog, promLog
	prom.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		prom.Process.Signal(syscall.SIGTERM)
		prom.Wait()
		if t.Failed() {
			t.Logf("prometheus:\n%s", promLog)
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", promPort)
	waitProm := func(what, expr string, want int) {
		t.Helper()
		var n int
		var err error
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
			if n, err = promQuery(base, expr); err == nil && n >= want {
				return
			}
		}
		t.Fatalf("%s: %s gave %d series (want %d): %v", what, expr, n, want, err)
	}
	waitProm("every agent scraped with the token", `up{job="tandem"} == 1`, 3)
	waitProm("a few scrapes", `count_over_time(up{job="tandem"}[1m]) >= 5`, 3)

	// A failover: a is killed, b takes over the group and its volume.
	syscall.Kill(-c.procs["a"].Process.Pid, syscall.SIGKILL)
	c.procs["a"].Wait()
	waitHolderOn(t, c, "b", "db", "b")
	waitProm("b's takeover scraped", `tandem_group_takeovers_total{job="tandem"} > 0`, 1)
	waitProm("the takeover alert", `ALERTS{alertname="TandemTakeover",alertstate="firing"}`, 1)
	time.Sleep(3 * time.Second) // rates over the scrapes since

	empty := 0
	for name, expr := range queries {
		n, err := promQuery(base, expr)
		switch {
		case err != nil:
			t.Errorf("%s: %s: %v", name, expr, err)
		case n == 0:
			empty++
			t.Errorf("%s: %s returned no data", name, expr)
		}
	}
	t.Logf("%d dashboard queries run against Prometheus, %d empty", len(queries), empty)

	// The rules loaded and evaluate without errors.
	resp, err := http.Get(base + "/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rr struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name, Health, LastError string
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	json.NewDecoder(resp.Body).Decode(&rr)
	nrules := 0
	for _, g := range rr.Data.Groups {
		for _, r := range g.Rules {
			nrules++
			if r.Health == "err" {
				t.Errorf("rule %s: %s", r.Name, r.LastError)
			}
		}
	}
	if nrules == 0 {
		t.Error("Prometheus loaded no tandem rules")
	}
}

// waitHolderOn waits until group runs on node, as via sees it.
func waitHolderOn(t *testing.T, c *metricsCluster, via, group, node string) {
	t.Helper()
	var last string
	cl := c.client(via) // one client: each holds its idle connections
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cl.Status(ctx)
		cancel()
		if err != nil {
			last = err.Error()
			continue
		}
		for _, g := range st.Groups {
			if g.Name == group {
				last = fmt.Sprintf("on %q running %v (%s %s)", g.Holder, g.Running, g.Phase, g.PhaseError)
				if g.Holder == node && g.Running {
					return
				}
			}
		}
	}
	t.Fatalf("group %s not running on %s: %s", group, node, last)
}
